"""``SOLVER.MEMORY_FORMAT`` (YAML) and ``train.memory_format`` (LazyConfig) put the detector that a
training run builds in channels_last on the CPU by default, leave it contiguous when asked, and
name a value they do not know."""

from __future__ import annotations

from pathlib import Path

from resnext_det import get_config_file
from resnext_det.engine import DetectionRecipe, setup_cfg
from resnext_det.engine.lazy_config import load_lazy_config
from resnext_det.engine.lazy_train import _instantiate_model
from resnext_det.engine.trained_stage import read_trained_stage
from resnext_det.errors import ConfigError

import pytest
import torch

# code the two detectron2 builds differ in (trainer, LazyConfig): CI runs this file on both
pytestmark = pytest.mark.both_builds

LAZY_FAST_RCNN = str(
    Path(__file__).resolve().parents[2] / "configs" / "lazy" / "demo" / "fast_rcnn_tiny_C4.py"
)


def stem_weight(model: torch.nn.Module) -> torch.Tensor:
    return model.backbone.stem.conv1.weight


@pytest.mark.parametrize(("memory_format", "channels_last"), [("auto", True), ("contiguous", False)])
def test_a_yaml_run_builds_its_detector_in_the_memory_format(demo_root, memory_format, channels_last):
    cfg = setup_cfg(get_config_file("demo/fast_rcnn_tiny_C4.yaml"), ["SOLVER.MEMORY_FORMAT", memory_format])
    weight = stem_weight(DetectionRecipe.build_model(cfg))
    assert weight.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert weight.is_contiguous() != channels_last


@pytest.mark.parametrize(("memory_format", "channels_last"), [("auto", True), ("contiguous", False)])
def test_a_lazy_run_builds_its_detector_in_the_memory_format(memory_format, channels_last):
    cfg = load_lazy_config(LAZY_FAST_RCNN, [f"train.memory_format={memory_format}"])
    weight = stem_weight(_instantiate_model(cfg, LAZY_FAST_RCNN))
    assert weight.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert weight.is_contiguous() != channels_last


@pytest.mark.parametrize(("memory_format", "channels_last"), [("auto", True), ("contiguous", False)])
def test_a_trained_stage_runs_in_the_memory_format_and_exports_contiguous(
    demo_root, memory_format, channels_last
):
    """Eager inference (TwoStagePredictor, predict.py, eval_coco.py --images) runs each stage in its
    config's layout, channels_last on the CPU by default (0.83 of the contiguous time, docs/speed.md);
    the exporter traces the contiguous model, whatever the stage says."""
    from resnext_det.deploy import build_graph
    from resnext_det.engine.two_stage import StagePair, TwoStagePredictor

    yaml = read_trained_stage(
        setup_cfg(get_config_file("demo/rpn_tiny_C4.yaml"), ["SOLVER.MEMORY_FORMAT", memory_format])
    )
    lazy = read_trained_stage(
        load_lazy_config(LAZY_FAST_RCNN, [f"train.memory_format={memory_format}"], training=False)
    )
    assert (yaml.channels_last, lazy.channels_last) == (channels_last, channels_last)
    predictor = TwoStagePredictor(yaml, lazy)
    for model in (predictor.rpn, predictor.fast_rcnn):
        assert stem_weight(model).is_contiguous(memory_format=torch.channels_last) == channels_last
    graph = build_graph(StagePair(yaml, lazy, None, None))
    assert graph.rpn_backbone.stem.conv1.weight.is_contiguous()


def test_an_unknown_memory_format_is_named():
    cfg = load_lazy_config(LAZY_FAST_RCNN, ["train.memory_format=nhwc"])
    with pytest.raises(ConfigError, match=r"train\.memory_format is 'nhwc'; expected one of \['auto'"):
        _instantiate_model(cfg, LAZY_FAST_RCNN)
