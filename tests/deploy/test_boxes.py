"""The export-friendly box functions compute what detectron2's do, on the same inputs."""

from __future__ import annotations

from resnext_det.deploy.boxes import apply_box_deltas, batched_nms, clip_boxes, grid_anchors, nonempty
from resnext_det.deploy.graph import resized_size

import numpy as np
import pytest
import torch
from detectron2.data import transforms as T
from detectron2.layers import batched_nms as d2_batched_nms
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes


def random_boxes(n: int, seed: int = 0, size: float = 200.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 2 + 1
    return torch.cat((xy, xy + wh), dim=1)


def test_grid_anchors_match_detectron2s_generator():
    generator = DefaultAnchorGenerator(
        sizes=[[32, 64, 128]], aspect_ratios=[[0.5, 1.0, 2.0]], strides=[16], offset=0.0
    )
    feature = torch.zeros(1, 8, 5, 7)
    (expected,) = generator([feature])
    cell = next(iter(generator.cell_anchors.buffers()))
    ours = grid_anchors(cell, 5, 7, 16, 0.0)
    assert ours.shape == (5 * 7 * 9, 4)
    torch.testing.assert_close(ours, expected.tensor, rtol=0, atol=0)
    assert generator.num_anchors == [9]


def test_box_deltas_match_box2box_transform_including_the_clamp():
    weights, clamp = (10.0, 10.0, 5.0, 5.0), float(np.log(1000.0 / 16))
    boxes = random_boxes(50)
    deltas = torch.randn(50, 4 * 3) * 2
    deltas[0, 2] = 100.0  # exp would overflow without the clamp
    expected = Box2BoxTransform(weights, scale_clamp=clamp).apply_deltas(deltas, boxes)
    torch.testing.assert_close(apply_box_deltas(deltas, boxes, weights, clamp), expected, rtol=0, atol=0)


def test_clip_and_nonempty_match_boxes():
    boxes = random_boxes(40, size=300) - 50
    expected = Boxes(boxes.clone())
    expected.clip((120, 150))
    clipped = clip_boxes(boxes, 120, 150)
    torch.testing.assert_close(clipped, expected.tensor, rtol=0, atol=0)
    assert torch.equal(nonempty(clipped), expected.nonempty())
    assert nonempty(clipped).sum() < len(clipped)  # the case is exercised: some boxes became empty


@pytest.mark.parametrize("count", [0, 1, 2, 300])
def test_batched_nms_keeps_what_detectron2_keeps(count):
    boxes = random_boxes(count, seed=count)
    g = torch.Generator().manual_seed(count + 1)
    scores = torch.rand(count, generator=g)
    classes = torch.randint(0, 4, (count,), generator=g)
    ours = batched_nms(boxes, scores, classes, 0.5)
    expected = d2_batched_nms(boxes, scores, classes, 0.5)
    assert torch.equal(ours, expected)
    if count == 300:
        assert 0 < len(ours) < count


def test_resized_size_is_resize_shortest_edge():
    resize = T.ResizeShortestEdge([800, 800], 1333)
    rng = np.random.default_rng(0)
    sizes = [(480, 640), (640, 480), (100, 1000), (1333, 800), (801, 799), (32, 8192)]
    sizes += [tuple(int(v) for v in rng.integers(32, 3000, size=2)) for _ in range(300)]
    for height, width in sizes:
        expected = resize.get_output_shape(height, width, 800, 1333)
        assert resized_size(height, width, 800, 1333) == expected, (height, width)
