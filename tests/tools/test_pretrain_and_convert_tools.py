"""The pretraining and conversion commands, as a user runs them, on the generated folder."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from pretrain.synthetic import generate_image_folder

import pytest
import torch
from tool_runs import run_tool

pytestmark = pytest.mark.slow  # pretraining, evaluation and conversion through the tools

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    result = run_tool(*args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_pretrain_resume_eval_convert(tmp_path):
    data = generate_image_folder(tmp_path / "imagenet", per_class={"train": 20, "val": 6})
    out = tmp_path / "in1k"
    common = ["tools/pretrain_imagenet.py", "--config-file", "configs/demo/imagenet_tiny.yaml"]
    run(*common, "DATA.ROOT", str(data), "OUTPUT_DIR", str(out), "SOLVER.EPOCHS", "1")
    assert (out / "model_final.pth").is_file() and (out / "metrics.json").is_file()
    assert list(out.glob("events.out.tfevents.*"))

    resumed = run(*common, "--resume", "DATA.ROOT", str(data), "OUTPUT_DIR", str(out), "SOLVER.EPOCHS", "2")
    assert "starting at epoch 1" in resumed.stdout + resumed.stderr
    assert torch.load(out / "model_final.pth", weights_only=True)["iteration"] == 9  # 2 x 100/20 - 1

    run(
        *common,
        "--eval-only",
        "DATA.ROOT",
        str(data),
        "MODEL.WEIGHTS",
        str(out / "model_final.pth"),
        "OUTPUT_DIR",
        str(tmp_path / "eval"),
        "TEST.RESIZE",
        "40",
        "TEST.CROP_SIZE",
        "36",
    )
    metrics = json.loads((tmp_path / "eval" / "final_metrics.json").read_text())
    assert 0 <= metrics["top1_err"] <= 100 and metrics["crop"] == 36

    weights = tmp_path / "d2.pth"
    converted = run(
        "tools/convert_weights.py",
        "--source",
        "pretrain",
        str(out / "model_final.pth"),
        str(weights),
        "--config-file",
        "configs/demo/faster_rcnn_tiny_C4.yaml",
    )
    assert "MODEL.PIXEL_STD [58.395,57.12,57.375]" in converted.stdout
    keys = torch.load(weights, weights_only=True)["model"]
    assert "backbone.res4.5.conv3.weight" in keys and "roi_heads.res5.2.conv3.weight" in keys
