"""``benchmarks/gpu_check.py`` runs the device path end to end; here with ``--device cpu``, so that
the script a GPU session runs is known to work before it gets there."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from tool_runs import run_tool


@pytest.mark.slow  # every stage through the tools, and the speed benchmark's --quick
def test_gpu_check_runs_every_stage_on_the_cpu(gpu_check_on_cpu):
    tmp_path, run = gpu_check_on_cpu
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [s["step"] for s in report["steps"]] == [
        "pretraining, one epoch",
        "weight conversion",
        "stage 1: RPN, 20 iterations, then proposals",
        "stage 2: Fast R-CNN, 20 iterations",
        "COCO evaluation",
        "RPN + Fast R-CNN on plain images",
        "speed rows",
    ]
    assert all(s["exit"] == 0 and s["seconds"] > 0 for s in report["steps"])
    assert report["environment"]["device"] == "cpu"
    assert 0 <= report["bbox"]["AP"] <= 100 and not math.isnan(report["bbox"]["AP"])
    # every training stage ran where it was told to, for the iterations it was told
    for stage, iterations in (("rpn", 20), ("fast_rcnn", 20)):
        cfg = yaml.safe_load((tmp_path / stage / "config.yaml").read_text())
        assert cfg["MODEL"]["DEVICE"] == "cpu" and cfg["SOLVER"]["MAX_ITER"] == iterations
    speed = report["speed"]
    assert speed["environment"]["gpu"] is None and speed["environment"]["quick"]
    assert speed["environment"]["groups"] == [
        "backbones",
        "detectors",
        "classification",
        "block_forms",
        "deploy",
        "memory",
    ]
    assert {"2. C4 Faster R-CNN training iteration", "2. C4 Faster R-CNN inference"} <= {
        r["group"] for r in speed["rows"]
    }
    assert set(speed["peak_memory_mib"]) == {"ours_x50", "d2_x50", "ours_r50"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without GPUs")
def test_gpu_check_without_a_gpu_says_so(tmp_path):
    run = run_tool("benchmarks/gpu_check.py", "--output-dir", str(tmp_path))
    assert run.returncode == 1
    assert run.stderr.strip() == "error: --device cuda: this machine has no usable GPU; use --device cpu"
    assert not (tmp_path / "gpu_check.json").exists()


def test_speed_benchmark_refuses_unknown_groups_and_missing_gpus():
    run = run_tool("benchmarks/speed.py", "--only", "detectors,typo")
    assert run.returncode == 2
    assert "--only: unknown group(s) typo; the groups are backbones, detectors" in run.stderr
    if not torch.cuda.is_available():
        run = run_tool("benchmarks/speed.py", "--device", "cuda")
        assert run.returncode == 2 and "--device cuda: this machine has no usable GPU" in run.stderr
