"""Every shipped config builds a model; full-size ones have the classifier's trunk exactly."""

from __future__ import annotations

from pathlib import Path

from resnext_det import add_resnext_config, get_config_file
from resnext_det.modeling import ResNeXtRes5ROIHeads, count_params, resnext
from resnext_det.template import STAGE_BLOCKS

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

CONFIG_ROOT = Path(__file__).resolve().parents[1] / "configs"
DETECTION_CONFIGS = sorted(
    str(p.relative_to(CONFIG_ROOT))
    for p in [*CONFIG_ROOT.glob("COCO-Detection/*.yaml"), *CONFIG_ROOT.glob("demo/*C4.yaml")]
)
IMAGENET_CONFIGS = sorted(str(p.relative_to(CONFIG_ROOT)) for p in CONFIG_ROOT.glob("ImageNet/[!B]*.yaml"))
PAPER_PARAMS_M = {"R50": 25.5, "X50_32x4d": 25.0, "R101": 44.5, "X101_32x4d": 44.2, "X101_64x4d": 83.6}
PAPER_MODELS = {
    "COCO-Detection/faster_rcnn_R50_C4.yaml": (50, 1, 64),
    "COCO-Detection/faster_rcnn_X50_32x4d_C4.yaml": (50, 32, 4),
    "COCO-Detection/faster_rcnn_R101_C4.yaml": (101, 1, 64),
    "COCO-Detection/faster_rcnn_X101_32x4d_C4.yaml": (101, 32, 4),
    "COCO-Detection/faster_rcnn_X101_64x4d_C4.yaml": (101, 64, 4),
}


def load(relative_path):
    """The one documented call readies every shipped detection config (docs/configs.md)."""
    cfg = get_cfg()
    add_resnext_config(cfg)
    cfg.merge_from_file(get_config_file(relative_path))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def test_every_paper_model_has_a_config():
    assert set(PAPER_MODELS) <= set(DETECTION_CONFIGS)


@pytest.mark.parametrize("relative_path", DETECTION_CONFIGS)
def test_config_builds_a_c4_model(relative_path):
    cfg = load(relative_path)
    model = build_model(cfg)
    assert list(model.backbone.output_shape()) == ["res4"]
    assert model.backbone.output_shape()["res4"].stride == 16
    if cfg.MODEL.META_ARCHITECTURE == "ProposalNetwork":
        assert not hasattr(model, "roi_heads")
        return
    assert isinstance(model.roi_heads, ResNeXtRes5ROIHeads)
    assert len(model.roi_heads.res5) == STAGE_BLOCKS[cfg.MODEL.RESNEXT.DEPTH][3]

    if relative_path in PAPER_MODELS:
        depth, cardinality, width = PAPER_MODELS[relative_path]
        r = cfg.MODEL.RESNEXT
        assert (r.DEPTH, r.CARDINALITY, r.BOTTLENECK_WIDTH, r.NORM) == (depth, cardinality, width, "FrozenBN")
        assert list(cfg.DATASETS.TRAIN) == ["coco_2014_train", "coco_2014_valminusminival"]
        assert list(cfg.DATASETS.TEST) == ["coco_2014_minival"]
        # backbone (stem..res4) + res5 head hold exactly the ImageNet classifier's trunk tensors
        classifier = resnext(depth, cardinality, width)
        trunk_numel = sum(
            v.numel()
            for k, v in classifier.state_dict().items()
            if not k.startswith("linear.") and not k.endswith("num_batches_tracked")
        )
        detector_numel = sum(v.numel() for v in model.backbone.state_dict().values()) + sum(
            v.numel() for v in model.roi_heads.res5.state_dict().values()
        )
        assert detector_numel == trunk_numel
        frozen = count_params(model.backbone.stem) + count_params(model.backbone.res2)
        trainable = sum(p.numel() for p in model.backbone.parameters() if p.requires_grad)
        assert trainable == count_params(model.backbone) - frozen  # FREEZE_AT 2


def test_get_config_file_errors_name_the_path():
    with pytest.raises(FileNotFoundError, match="no_such.yaml"):
        get_config_file("COCO-Detection/no_such.yaml")


def test_every_config_is_tested():
    """(the ImageNet study's subfolders: tests/test_paper_experiments.py; CIFAR:
    tests/pretrain/test_cifar.py)"""
    every = {str(p.relative_to(CONFIG_ROOT)) for p in CONFIG_ROOT.glob("*/*.yaml")}
    cifar = {str(p.relative_to(CONFIG_ROOT)) for p in CONFIG_ROOT.glob("CIFAR/*.yaml")}
    assert len(cifar) == 5  # the base and the four of Table 7
    assert every == {
        *DETECTION_CONFIGS,
        *IMAGENET_CONFIGS,
        *cifar,
        "ImageNet/Base-ImageNet.yaml",
        "demo/imagenet_tiny.yaml",
        "demo/pretrain_shapes_tiny.yaml",
        "demo/cifar_tiny.yaml",
    }


def test_demo_pretraining_config_fits_the_demo_detectors():
    """The shape-crop classifier starts as identity blocks and converts into the demo's detectors."""
    from pretrain.config import get_pretrain_cfg
    from pretrain.engine import build_classifier
    from resnext_det.data.demo_dataset import DEMO_CLASSIFICATION_CLASSES

    cfg = get_pretrain_cfg()
    cfg.merge_from_file(get_config_file("demo/pretrain_shapes_tiny.yaml"))
    assert cfg.MODEL.NUM_CLASSES == len(DEMO_CLASSIFICATION_CLASSES)
    assert cfg.MODEL.RESNEXT.ZERO_INIT_RESIDUAL and cfg.MODEL.RESNEXT.NORM == "BN"
    classifier = build_classifier(cfg)
    assert all(torch.count_nonzero(b.conv3.norm.weight) == 0 for s in classifier.stages for b in s)
    detector = build_model(load("demo/fast_rcnn_tiny_C4.yaml"))
    trunk = {k: v.shape for k, v in classifier.state_dict().items() if not k.startswith("linear.")}
    detector_trunk = {
        k.removeprefix("backbone.").removeprefix("roi_heads."): v.shape
        for k, v in detector.state_dict().items()
        if k.startswith(("backbone.", "roi_heads.res5."))
    }
    assert {k: v for k, v in trunk.items() if not k.endswith("num_batches_tracked")} == detector_trunk


@pytest.mark.parametrize("relative_path", IMAGENET_CONFIGS)
def test_imagenet_config_builds_the_paper_classifier(relative_path):
    from pretrain.config import get_pretrain_cfg
    from pretrain.engine import build_classifier

    cfg = get_pretrain_cfg()
    cfg.merge_from_file(get_config_file(relative_path))
    cfg.MODEL.DEVICE = "cpu"
    assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR, cfg.SOLVER.EPOCHS) == (256, 0.1, 90)
    assert tuple(cfg.SOLVER.STEPS) == (30, 60, 80) and cfg.SOLVER.NESTEROV
    name = relative_path.split("/")[1].removesuffix(".yaml")
    params = count_params(build_classifier(cfg)) / 1e6
    if name in PAPER_PARAMS_M:  # the others (Table 4) are checked in tests/test_paper_experiments.py
        assert params == pytest.approx(PAPER_PARAMS_M[name], rel=0.01)


@pytest.mark.parametrize(
    "model_name", sorted(name.split("_", 2)[2].removesuffix("_C4.yaml") for name in PAPER_MODELS)
)
def test_paper_two_stage_schedule(model_name):
    """Appendix B: RPN 16 images, 256 anchors, lr 0.02 for 120k then 0.002 for 60k; Fast R-CNN
    8 images, 64 RoIs, lr 0.005 for 120k then 0.0005 for 60k; both wd 1e-4, momentum 0.9."""
    rpn = load(f"COCO-Detection/rpn_{model_name}_C4.yaml")
    frcn = load(f"COCO-Detection/fast_rcnn_{model_name}_C4.yaml")
    assert rpn.MODEL.META_ARCHITECTURE == "ProposalNetwork" and rpn.MODEL.RPN.BATCH_SIZE_PER_IMAGE == 256
    assert (rpn.SOLVER.IMS_PER_BATCH, rpn.SOLVER.BASE_LR, rpn.SOLVER.STEPS, rpn.SOLVER.MAX_ITER) == (
        16,
        0.02,
        (120000,),
        180000,
    )
    assert frcn.MODEL.LOAD_PROPOSALS and frcn.MODEL.PROPOSAL_GENERATOR.NAME == "PrecomputedProposals"
    assert frcn.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE == 64
    assert (frcn.SOLVER.IMS_PER_BATCH, frcn.SOLVER.BASE_LR, frcn.SOLVER.STEPS, frcn.SOLVER.MAX_ITER) == (
        8,
        0.005,
        (120000,),
        180000,
    )
    for cfg in (rpn, frcn):
        assert (cfg.SOLVER.WEIGHT_DECAY, cfg.SOLVER.MOMENTUM, cfg.SOLVER.GAMMA) == (1e-4, 0.9, 0.1)
        assert cfg.SOLVER.REFERENCE_WORLD_SIZE == 8
        assert (rpn.MODEL.RESNEXT.DEPTH, rpn.MODEL.RESNEXT.CARDINALITY) == (
            frcn.MODEL.RESNEXT.DEPTH,
            frcn.MODEL.RESNEXT.CARDINALITY,
        )
    assert (
        rpn.MODEL.RPN.POST_NMS_TOPK_TRAIN,
        rpn.MODEL.RPN.POST_NMS_TOPK_TEST,
        rpn.MODEL.RPN.NMS_THRESH,
    ) == (2000, 1000, 0.7)


def test_an_earlier_runs_proposal_topk_keys_load_where_they_equal_the_rpns(tmp_path):
    """PROPOSALS.*_NMS_TOPK once set the proposal files' top-k apart from MODEL.RPN's (the
    shipped configs gave both the same numbers): an earlier run's config.yaml still loads, and a
    value that differs from the RPN's, which the files no longer follow, is refused by name."""
    from resnext_det.engine import setup_cfg
    from resnext_det.errors import ConfigError

    earlier = tmp_path / "config.yaml"  # as an earlier stage 1 wrote it: the RPN's numbers twice
    earlier.write_text(
        f"_BASE_: {get_config_file('demo/rpn_tiny_C4.yaml')}\n"
        "PROPOSALS:\n  TRAIN_PRE_NMS_TOPK: 1000\n  TRAIN_POST_NMS_TOPK: 200\n"
        "  TEST_PRE_NMS_TOPK: 500\n  TEST_POST_NMS_TOPK: 100\n"
    )
    cfg = setup_cfg(str(earlier))
    assert (cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN, cfg.MODEL.RPN.POST_NMS_TOPK_TEST) == (200, 100)
    expected = r"PROPOSALS\.TEST_POST_NMS_TOPK is 50 but MODEL\.RPN\.POST_NMS_TOPK_TEST is 100: "
    with pytest.raises(ConfigError, match=expected + r".*set MODEL\.RPN\.POST_NMS_TOPK_TEST 50 instead"):
        setup_cfg(str(earlier), ["PROPOSALS.TEST_POST_NMS_TOPK", "50"])


def test_without_the_documented_call_detectron2_names_the_missing_key():
    """docs/troubleshooting.md: a plain ``get_cfg()`` does not know the plugin's keys, and the
    plugin leaves detectron2's merge as it is, so yacs names the first one it meets."""
    with pytest.raises(KeyError, match="Non-existent config key: MODEL.RESNEXT"):
        get_cfg().merge_from_file(get_config_file("COCO-Detection/rpn_X50_32x4d_C4.yaml"))
