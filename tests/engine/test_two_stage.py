"""TwoStagePredictor: RPN + Fast R-CNN on a plain image, and its configuration checks."""

from __future__ import annotations

from resnext_det import get_config_file
from resnext_det.engine import TwoStagePredictor, setup_cfg

import numpy as np
import pytest

# code the two detectron2 builds differ in: CI runs this file on both (tests/README.md)
pytestmark = pytest.mark.both_builds


@pytest.fixture
def configs(demo_root):
    rpn = setup_cfg(get_config_file("demo/rpn_tiny_C4.yaml"))
    frcn = setup_cfg(
        get_config_file("demo/fast_rcnn_tiny_C4.yaml"), ["DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST", "7"]
    )
    return rpn, frcn


def test_detections_come_back_in_original_pixels(configs):
    predictor = TwoStagePredictor(*configs)
    image = np.random.default_rng(0).integers(0, 255, size=(100, 300, 3), dtype=np.uint8)
    instances = predictor(image)
    assert instances.image_size == (100, 300)
    boxes = instances.pred_boxes.tensor
    assert (boxes[:, 2] <= 300 + 1e-3).all() and (boxes[:, 3] <= 100 + 1e-3).all()


def test_stage_configs_are_checked(configs):
    rpn, frcn = configs
    with pytest.raises(ValueError, match="rpn_cfg must build a ProposalNetwork"):
        TwoStagePredictor(frcn, frcn)
    with pytest.raises(ValueError, match="PrecomputedProposals"):
        TwoStagePredictor(rpn, rpn)
    bigger = setup_cfg(get_config_file("demo/fast_rcnn_tiny_C4.yaml"), ["INPUT.MIN_SIZE_TEST", "320"])
    with pytest.raises(ValueError, match="INPUT.MIN_SIZE_TEST differs"):
        TwoStagePredictor(rpn, bigger)
