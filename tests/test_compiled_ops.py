"""With an official detectron2 (compiled ops present), the project uses them, and they work.

These run in CI's second leg (detectron2 main built from ``../shared/third_party``); on the
pure-Python fallback ``tests/test_compat.py`` checks the clear errors that replace them.
"""

from __future__ import annotations

import math

from resnext_det import compat

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import Boxes, BoxMode, Instances

pytestmark = [
    pytest.mark.both_builds,
    pytest.mark.skipif(
        not compat.has_compiled_ops(),
        reason="needs detectron2._C (an official build); runs in the official-detectron2 leg of .ci/run",
    ),
]


def test_the_project_leaves_the_compiled_ops_in_place():
    import detectron2._C

    assert not getattr(detectron2._C, "is_resnext_det_stand_in", False)
    assert not any("stand-in" in fix for fix in compat.APPLIED), compat.APPLIED


def test_rotated_iou_and_nms():
    from detectron2.layers import nms_rotated
    from detectron2.structures import RotatedBoxes, pairwise_iou_rotated

    square = [5.0, 5.0, 4.0, 4.0, 0.0]
    boxes = torch.tensor(
        [square, [5.0, 5.0, 4.0, 4.0, 90.0], [7.0, 5.0, 4.0, 4.0, 0.0], [5.0, 5.0, 4.0, 4.0, 45.0]]
    )
    iou = pairwise_iou_rotated(RotatedBoxes(boxes[:1]), RotatedBoxes(boxes))[0]
    # a square turned by 90 degrees is itself; shifted by half its width: 8 / (16 + 16 - 8);
    # turned by 45: the octagon of area 32 (sqrt(2) - 1), over 32 minus it
    octagon = 32 * (math.sqrt(2) - 1)
    expected = torch.tensor([1.0, 1.0, 1 / 3, octagon / (32 - octagon)])
    assert torch.allclose(iou, expected, atol=1e-4), iou
    keep = nms_rotated(boxes[:3], torch.tensor([0.9, 0.8, 0.7]), 0.5)
    assert keep.tolist() == [0, 2]  # the turned copy overlaps the first fully; the shifted one by 1/3


def test_roi_align_rotated_at_angle_zero_is_roi_align():
    from detectron2.layers import ROIAlignRotated
    from torchvision.ops import roi_align

    features = torch.arange(2 * 16 * 16, dtype=torch.float32).reshape(1, 2, 16, 16).sin()
    x1, y1, x2, y2 = 2.0, 3.0, 11.0, 9.0
    rotated = torch.tensor([[0.0, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, 0.0]])
    pooled = ROIAlignRotated((4, 4), spatial_scale=1.0, sampling_ratio=2)(features, rotated)
    axis_aligned = roi_align(features, torch.tensor([[0.0, x1, y1, x2, y2]]), (4, 4), 1.0, 2, aligned=True)
    assert torch.allclose(pooled, axis_aligned, atol=1e-5)


def noisy_detections(records, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Detections as a half-trained detector makes them: each object found with a jittered box
    (sometimes with the wrong class, sometimes missed), plus background boxes, random scores."""
    rng = np.random.default_rng(seed)
    inputs, outputs = [], []
    for record in records:
        boxes, scores, classes = [], [], []
        for annotation in record["annotations"]:
            x1, y1, x2, y2 = BoxMode.convert(annotation["bbox"], annotation["bbox_mode"], BoxMode.XYXY_ABS)
            if rng.random() < 0.15:
                continue
            w, h = x2 - x1, y2 - y1
            jitter = rng.normal(0, 0.12, 4) * [w, h, w, h]
            boxes.append([x1, y1, x2, y2] + jitter)
            classes.append(annotation["category_id"] if rng.random() < 0.85 else int(rng.integers(0, 3)))
            scores.append(rng.uniform(0.3, 1.0))
        for _ in range(int(rng.integers(0, 4))):
            x, y = rng.uniform(0, record["width"] - 20), rng.uniform(0, record["height"] - 20)
            size = rng.uniform(10, 40)
            boxes.append([x, y, x + size, y + size])
            classes.append(int(rng.integers(0, 3)))
            scores.append(rng.uniform(0.05, 0.6))
        instances = Instances((record["height"], record["width"]))
        instances.pred_boxes = Boxes(torch.tensor(np.array(boxes), dtype=torch.float32).reshape(-1, 4))
        instances.scores = torch.tensor(scores, dtype=torch.float32)
        instances.pred_classes = torch.tensor(classes, dtype=torch.int64)
        inputs.append({"image_id": record["image_id"]})
        outputs.append({"instances": instances})
    return inputs, outputs


def test_fast_cocoeval_gives_pycocotools_ap_on_the_demo_val_split(demo_root, tmp_path):
    inputs, outputs = noisy_detections(DatasetCatalog.get("resnext_demo_val"))
    results = {}
    for fast in (True, False):
        evaluator = COCOEvaluator(
            "resnext_demo_val", output_dir=str(tmp_path / str(fast)), use_fast_impl=fast
        )
        evaluator.reset()
        evaluator.process(inputs, outputs)
        results[fast] = evaluator.evaluate()["bbox"]
    fast, reference = results[True], results[False]
    assert 20 < reference["AP"] < 95, reference  # a mixed result, not a trivial 0 or 100
    assert set(fast) == set(reference)
    for metric, value in reference.items():
        if math.isnan(value):  # no object of that size or class: both say so
            assert math.isnan(fast[metric]), (metric, fast[metric])
        else:
            assert abs(fast[metric] - value) <= 0.01, (metric, fast[metric], value)
