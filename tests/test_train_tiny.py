"""A tiny C4 Faster R-CNN trains on the generated data and runs inference, on CPU."""

from __future__ import annotations

import math

from resnext_det import get_config_file
from resnext_det.engine import DetectionRecipe, setup_cfg, trainer_from_yaml

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor
from detectron2.evaluation import inference_on_dataset
from detectron2.utils.env import seed_all_rng

# code the two detectron2 builds differ in: CI runs this file on both (tests/README.md)
pytestmark = pytest.mark.both_builds

ITERATIONS = 30


@pytest.fixture(scope="module")
def trained(demo_root, tmp_path_factory):
    seed_all_rng(0)
    torch.manual_seed(0)
    cfg = setup_cfg(
        get_config_file("demo/faster_rcnn_tiny_C4.yaml"),
        [
            "SOLVER.MAX_ITER",
            str(ITERATIONS),
            "SOLVER.IMS_PER_BATCH",
            "2",
            "SOLVER.WARMUP_ITERS",
            "5",
            "SOLVER.STEPS",
            "()",
            "SEED",
            "0",
            "OUTPUT_DIR",
            str(tmp_path_factory.mktemp("tiny_c4")),
        ],
    )
    trainer = trainer_from_yaml(cfg)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    return cfg, trainer, before


def test_training_changes_weights_and_lowers_the_loss(trained):
    cfg, trainer, before = trained
    losses = [v for v, _ in trainer.storage.history("total_loss").values()]
    assert len(losses) == ITERATIONS and all(math.isfinite(v) for v in losses)
    # the RPN's objectness loss is the steady signal this early (the box head's swings by 3x)
    rpn = [v for v, _ in trainer.storage.history("loss_rpn_cls").values()]
    first, last = sum(rpn[:5]) / 5, sum(rpn[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    after = trainer.model.state_dict()
    assert not torch.equal(before["backbone.res4.0.conv2.weight"], after["backbone.res4.0.conv2.weight"])
    assert not torch.equal(before["roi_heads.res5.2.conv3.weight"], after["roi_heads.res5.2.conv3.weight"])


def test_inference_on_an_image(trained, demo_root):
    cfg, trainer, _ = trained
    # every box kept: after 30 iterations few scores pass the usual 0.05, and the checks below
    # need detections to check
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    predictor = DefaultPredictor(cfg)
    predictor.model.load_state_dict(trainer.model.state_dict())
    record = DatasetCatalog.get("resnext_demo_val")[0]
    image = read_image(record["file_name"], format="BGR")
    instances = predictor(image)["instances"]
    assert instances.image_size == (record["height"], record["width"])
    assert 0 < len(instances) <= cfg.TEST.DETECTIONS_PER_IMAGE
    boxes = instances.pred_boxes.tensor
    assert boxes.shape == (len(instances), 4)
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= record["width"]).all()
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= record["height"]).all()
    assert set(instances.pred_classes.tolist()) <= {0, 1, 2}
    assert ((instances.scores >= 0) & (instances.scores <= 1)).all()
    # sorted by score per image, as detectron2's fast_rcnn_inference leaves them
    assert instances.scores.tolist() == sorted(instances.scores.tolist(), reverse=True)


def test_coco_evaluation_runs_with_pycocotools(trained):
    cfg, trainer, _ = trained
    evaluator = DetectionRecipe.build_evaluator(cfg, "resnext_demo_val")
    loader = DetectionRecipe.build_test_loader(cfg, "resnext_demo_val")
    # every box kept: after 30 iterations few scores pass the usual 0.05, and pycocotools only
    # reports per-class AP when there are detections to match
    trainer.model.roi_heads.box_predictor.test_score_thresh = 0.0
    try:
        results = inference_on_dataset(trainer.model, loader, evaluator)
    finally:
        trainer.model.roi_heads.box_predictor.test_score_thresh = cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST
    assert set(results["bbox"]) >= {"AP", "AP50", "AP75", "AP-square", "AP-disc", "AP-triangle"}
    assert 0 <= results["bbox"]["AP50"] <= 100
    assert MetadataCatalog.get("resnext_demo_val").thing_classes == ["square", "disc", "triangle"]
