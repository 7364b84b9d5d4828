"""A trained stage read from a YAML config and from its LazyConfig twin is the same stage: the
predictor, the exporter and the tools that run a stage on plain images read either. (Every
shipped twin reads as its YAML config: tests/test_lazy_configs.py.)"""

from __future__ import annotations

import dataclasses

from resnext_det import get_config_file
from resnext_det.engine import setup_cfg
from resnext_det.engine.lazy_config import load_lazy_config
from resnext_det.engine.trained_stage import (
    TrainedStage,
    load_stage_dir,
    read_trained_stage,
    stage_config_kind,
)
from resnext_det.engine.tta import TTASettings
from resnext_det.engine.two_stage import TwoStagePredictor, load_stage_pair
from resnext_det.errors import ConfigError

import pytest

# LazyConfig and detectron2's config differ between the builds: CI runs this file on both
pytestmark = pytest.mark.both_builds

#: what says where a stage came from, not what it is
ORIGIN = {"source", "kind", "config"}


def settings(stage: TrainedStage) -> dict:
    return {f.name: getattr(stage, f.name) for f in dataclasses.fields(stage) if f.name not in ORIGIN}


def test_test_time_augmentation_reads_the_same_from_both_kinds():
    yaml = setup_cfg(
        get_config_file("demo/fast_rcnn_tiny_C4.yaml"),
        ["TEST.AUG.ENABLED", "True", "TEST.AUG.MIN_SIZES", "(200, 300)", "TEST.AUG.FLIP", "False"],
    )
    lazy = load_lazy_config(
        str(get_config_file("lazy/demo/fast_rcnn_tiny_C4.py")),
        ["train.test_aug.enabled=true", "train.test_aug.min_sizes=[200,300]", "train.test_aug.flip=false"],
        training=False,
    )
    expected = TTASettings((200, 300), 4000, False)
    assert read_trained_stage(yaml).test_augmentation == expected
    assert read_trained_stage(lazy).test_augmentation == expected
    plain = load_lazy_config(str(get_config_file("lazy/demo/fast_rcnn_tiny_C4.py")), training=False)
    assert read_trained_stage(plain).test_augmentation is None


def test_a_lazy_stage_folder_is_read_and_paired(tiny_stage_dirs, lazy_fast_rcnn_dir, tmp_path):
    """A LazyConfig run's folder (its config.yaml is LazyConfig.save's dump) pairs with a YAML
    run's, and the pair predicts what the YAML pair predicts (the same weights)."""
    (rpn_dir, frcn_dir), lazy_dir = tiny_stage_dirs, lazy_fast_rcnn_dir
    assert (stage_config_kind(lazy_dir / "config.yaml"), stage_config_kind(frcn_dir / "config.yaml")) == (
        "lazy",
        "yaml",
    )
    lazy = load_stage_dir(lazy_dir, "--fast-rcnn")
    assert lazy.kind == "lazy" and lazy.weights == str(lazy_dir / "model_final.pth") and lazy.device == "cpu"
    assert settings(lazy) | {"weights": ""} == settings(load_stage_dir(frcn_dir, "--fast-rcnn")) | {
        "weights": ""
    }

    import numpy as np
    import torch

    image = np.random.default_rng(0).integers(0, 256, (120, 150, 3), dtype=np.uint8)
    mixed = TwoStagePredictor.from_stage_dirs(rpn_dir, lazy_dir)(image)
    plain = TwoStagePredictor.from_stage_dirs(rpn_dir, frcn_dir)(image)
    assert len(plain) > 0 and torch.equal(mixed.pred_boxes.tensor, plain.pred_boxes.tensor)
    assert torch.equal(mixed.scores, plain.scores) and torch.equal(mixed.pred_classes, plain.pred_classes)

    with pytest.raises(ConfigError, match="--rpn is a yaml run and --fast-rcnn a lazy run"):
        load_stage_pair(rpn_dir, lazy_dir, opts=["MODEL.DEVICE", "cpu"])
    (tmp_path / "neither").mkdir()
    (tmp_path / "neither" / "config.yaml").write_text("model: {}\n")
    (tmp_path / "neither" / "model_final.pth").write_bytes(b"")
    with pytest.raises(ConfigError, match="neither/config.yaml: expected a stage's config"):
        load_stage_dir(tmp_path / "neither", "--rpn")


def test_a_lazy_stage_needs_a_dataset_mapper_with_one_test_size():
    cfg = load_lazy_config(str(get_config_file("lazy/demo/fast_rcnn_tiny_C4.py")), training=False)
    cfg.dataloader.test.mapper.augmentations[0].short_edge_length = [200, 300]
    with pytest.raises(ConfigError, match="one ResizeShortestEdge with one short_edge_length"):
        read_trained_stage(cfg, "x.py")
    cfg.dataloader.test.mapper = {"_target_": "builtins.dict"}  # not a DatasetMapper
    with pytest.raises(ConfigError, match="x.py: running a trained stage needs dataloader.test.mapper to be"):
        read_trained_stage(cfg, "x.py")
    cfg.model._target_ = "no.such.Model"  # a dump whose model class is gone
    with pytest.raises(ConfigError, match="x.py: model._target_ 'no.such.Model' cannot be imported"):
        read_trained_stage(cfg, "x.py")
