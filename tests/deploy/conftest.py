"""Stage folders (config.yaml + model_final.pth) of random-weight RPN / Fast R-CNN pairs."""

from __future__ import annotations

from pathlib import Path

from resnext_det import get_config_file
from resnext_det.engine import setup_cfg

import pytest
import torch
from detectron2.modeling import build_model


def _write_stage(directory: Path, config: str, opts: list[str], randomize_frozen_norms, seed: int) -> Path:
    """A finished stage's OUTPUT_DIR as the training tools leave it, with random weights (and
    non-identity frozen norms, so that folding them is exercised)."""
    cfg = setup_cfg(get_config_file(config), ["MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(directory), *opts])
    torch.manual_seed(seed)
    model = build_model(cfg)
    randomize_frozen_norms(model, seed)
    directory.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "iteration": 0}, directory / "model_final.pth")
    (directory / "config.yaml").write_text(cfg.dump())
    return directory


@pytest.fixture(scope="session")
def tiny_stage_dirs(tmp_path_factory, demo_root, randomize_frozen_norms):
    """(rpn_dir, fast_rcnn_dir) of the demo's tiny template, random weights."""
    root = tmp_path_factory.mktemp("tiny_stages")
    rpn = _write_stage(root / "rpn", "demo/rpn_tiny_C4.yaml", [], randomize_frozen_norms, seed=1)
    frcn = _write_stage(root / "fast_rcnn", "demo/fast_rcnn_tiny_C4.yaml", [], randomize_frozen_norms, seed=2)
    return rpn, frcn


@pytest.fixture
def write_stage(randomize_frozen_norms):
    """``write_stage(directory, config, opts)``: one more random-weight stage folder."""
    return lambda directory, config, opts, seed=3: _write_stage(
        directory, config, opts, randomize_frozen_norms, seed
    )


@pytest.fixture(scope="session")
def onnx_dir(tiny_stage_dirs, tmp_path_factory):
    """The tiny pair exported to ONNX (about 10 s)."""
    from resnext_det.deploy import export_stage_pair

    return export_stage_pair(*tiny_stage_dirs, tmp_path_factory.mktemp("export") / "onnx", "onnx")
