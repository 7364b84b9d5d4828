"""``SOLVER.MEMORY_FORMAT`` (YAML) and ``train.memory_format`` (LazyConfig) put the detector that a
training run builds in channels_last on the CPU by default, leave it contiguous when asked, and
name a value they do not know."""

from __future__ import annotations

from pathlib import Path

from resnext_det import get_config_file
from resnext_det.engine import DetectionRecipe, setup_cfg
from resnext_det.engine.lazy_config import load_lazy_config
from resnext_det.engine.lazy_train import _instantiate_model
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


def test_an_unknown_memory_format_is_named():
    cfg = load_lazy_config(LAZY_FAST_RCNN, ["train.memory_format=nhwc"])
    with pytest.raises(ConfigError, match=r"train\.memory_format is 'nhwc'; expected one of \['auto'"):
        _instantiate_model(cfg, LAZY_FAST_RCNN)
