"""Shared fixtures. ``import resnext_det`` first: it prepares detectron2 and registers modules.

``tiny_stage_dirs`` / ``write_stage``: stage folders (config.yaml + model_final.pth) of random-weight
RPN / Fast R-CNN pairs, as the training tools leave them."""

from __future__ import annotations

from pathlib import Path

import resnext_det  # noqa: F401
from resnext_det import get_config_file
from resnext_det.engine import setup_cfg

import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model


@pytest.fixture(autouse=True)
def _fixed_seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """The generated demo dataset, written once per test session and registered."""
    from resnext_det.data import generate_demo_dataset, register_demo_datasets

    root = tmp_path_factory.mktemp("resnext_demo")
    generate_demo_dataset(root)
    register_demo_datasets(root)
    return root


def _randomize_frozen_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every FrozenBN a non-identity affine map, as a pretrained checkpoint would: with the
    initial identity norms, folding them would test nothing."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, FrozenBatchNorm2d):
            n = module.num_features
            module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


@pytest.fixture(scope="session")
def randomize_frozen_norms():
    return _randomize_frozen_norms


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
def tiny_pipeline(tmp_path_factory):
    """docs/detection.md's and docs/configs.md's runnable blocks (the tiny deterministic RPN ->
    Fast R-CNN pipeline, YAML and LazyConfig, and the YAML training stages once more), run once
    per session in this process: ``tests/pipelines.py``."""
    from pipelines import run_tiny_pipeline

    return run_tiny_pipeline(tmp_path_factory.mktemp("tiny_pipeline"))


@pytest.fixture(scope="session")
def gpu_check_on_cpu(tmp_path_factory):
    """``benchmarks/gpu_check.py --device cpu`` run once, in a child process: every pipeline stage
    through the tools (in that process, as on a one-GPU machine), then ``benchmarks/speed.py
    --quick`` with every group, which tests/test_speed_benchmark.py reads (no group is timed
    twice). (output dir, the run)."""
    from tool_runs import run_tool_process

    out = tmp_path_factory.mktemp("gpu_check")
    command = ["benchmarks/gpu_check.py", "--device", "cpu", "--output-dir", str(out)]
    return out, run_tool_process(*command, timeout=1500)
