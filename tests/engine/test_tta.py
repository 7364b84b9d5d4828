"""TEST.AUG.ENABLED for the two-stage model: the views, the merge, and what it must equal."""

from __future__ import annotations

import dataclasses

from resnext_det.engine.tta import TTASettings, merge_detections, tta_views, with_test_augmentation
from resnext_det.engine.two_stage import TwoStagePredictor, load_stage_pair
from resnext_det.errors import ConfigError

import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances

# code the two detectron2 builds differ in: CI runs this file on both (tests/README.md)
pytestmark = pytest.mark.both_builds


def with_tta(stage, sizes, flip: bool):
    """``stage`` (a ``TrainedStage``) under test-time augmentation at ``sizes``."""
    aug = TTASettings(tuple(sizes), stage.max_size_test, flip)
    return dataclasses.replace(stage, test_augmentation=aug)


def test_views_and_their_inverse():
    image = np.zeros((50, 80, 3), np.uint8)
    views = tta_views(image, TTASettings((100, 200), 384, flip=True))
    assert [v.shape[:2] for v, _ in views] == [(100, 160), (100, 160), (200, 320), (200, 320)]
    box = np.array([[10.0, 5.0, 30.0, 20.0]])
    for k, (_, transform) in enumerate(views):
        mapped = transform.apply_box(box)
        if k % 2:  # the flipped view mirrors x: (10, 30) of 80 -> (50, 70), then scaled
            scale = views[k][0].shape[1] / 80
            assert mapped[0, [0, 2]] == pytest.approx([(80 - 30) * scale, (80 - 10) * scale])
        assert transform.inverse().apply_box(mapped) == pytest.approx(box)


def test_merge_keeps_one_of_the_same_detection_in_two_views(tiny_stage_dirs):
    box_predictor = load_stage_pair(*tiny_stage_dirs).fast_rcnn.build_model().roi_heads.box_predictor
    views = tta_views(np.zeros((50, 80, 3), np.uint8), TTASettings((100,), 384, flip=True))
    found = []
    for _, transform in views:  # a box of class 1 seen in both views, a little more sure in one
        view_box = transform.apply_box(np.array([[10.0, 5.0, 30.0, 20.0]]))
        instances = Instances((100, 160))
        instances.pred_boxes = Boxes(torch.as_tensor(view_box, dtype=torch.float32))
        instances.scores = torch.tensor([0.9 if not found else 0.6])
        instances.pred_classes = torch.tensor([1])
        found.append(instances)
    merged = merge_detections(found, [t for _, t in views], (50, 80), box_predictor)
    assert len(merged) == 1 and merged.scores.tolist() == pytest.approx([0.9])
    assert merged.pred_boxes.tensor.tolist()[0] == pytest.approx([10.0, 5.0, 30.0, 20.0], abs=1e-4)


def test_one_view_without_flip_is_the_plain_predictor(tiny_stage_dirs):
    pair = load_stage_pair(*tiny_stage_dirs)
    plain = TwoStagePredictor(pair.rpn, pair.fast_rcnn)
    tta = TwoStagePredictor(pair.rpn, with_tta(pair.fast_rcnn, (pair.fast_rcnn.min_size_test,), False))
    image = np.random.default_rng(0).integers(0, 255, (120, 150, 3), dtype=np.uint8)
    a, b = plain(image), tta(image)
    assert len(a) > 0 and len(a) == len(b)
    assert torch.allclose(a.pred_boxes.tensor, b.pred_boxes.tensor, atol=1e-3)
    assert torch.equal(a.pred_classes, b.pred_classes) and torch.allclose(a.scores, b.scores)


def test_with_flip_a_mirrored_image_gives_mirrored_detections(tiny_stage_dirs):
    pair = load_stage_pair(*tiny_stage_dirs)
    tta = TwoStagePredictor(pair.rpn, with_tta(pair.fast_rcnn, (128,), flip=True))
    image = np.random.default_rng(1).integers(0, 255, (120, 150, 3), dtype=np.uint8)
    a, b = tta(image), tta(np.ascontiguousarray(image[:, ::-1]))
    mirrored = b.pred_boxes.tensor.clone()
    mirrored[:, [0, 2]] = 150 - b.pred_boxes.tensor[:, [2, 0]]

    def rows(boxes, scores, classes):
        return sorted(
            zip(classes.tolist(), [round(s, 3) for s in scores.tolist()], boxes.tolist(), strict=True)
        )

    assert len(a) > 0
    ours, theirs = (
        rows(a.pred_boxes.tensor, a.scores, a.pred_classes),
        rows(mirrored, b.scores, b.pred_classes),
    )
    assert [r[:2] for r in ours] == [r[:2] for r in theirs]
    assert np.allclose([r[2] for r in ours], [r[2] for r in theirs], atol=0.15)


def test_an_rpn_has_no_tta(tiny_stage_dirs):
    rpn = load_stage_pair(*tiny_stage_dirs).rpn.build_model()
    with pytest.raises(ConfigError, match="stage 1 \\(an RPN\\) has no test-time augmentation"):
        with_test_augmentation(rpn, TTASettings((128,), 384, flip=False), "RGB")
