"""README command 1: the demo pipeline, in its smaller variant, reaches a measured accuracy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the demo pipeline, about 1.5 minutes

ROOT = Path(__file__).resolve().parents[2]
# `tools/demo.py --quick` measured AP50 64.5 on the held-out val split (2026-11-29, 2 cores with
# AVX2, torch 2.14.1, SEED 0, pretraining in channels_last), the full demo 81.4; on 2026-12-01 a
# machine with AVX-512 measured 74.7 (full 83.5), the same on detectron2 0.6 and main.
# Float-level differences move it a lot: the same pipeline with the pretraining in the
# contiguous layout (same function, other rounding) measured 73.8, because the 4-class
# pretraining ends at another minimum (0.25% vs 1.25% top-1 error) and the detector inherits it.
# The margin covers that spread and other CPUs' rounding while staying far above an untrained or
# broken pipeline (AP50 < 20).
MEASURED_AP50 = 64.5
MIN_AP50 = 45.0


def test_quick_demo_pipeline(tmp_path):
    env = {**os.environ, "DETECTRON2_DATASETS": str(tmp_path / "datasets")}
    command = [sys.executable, "tools/demo.py", "--quick", "--output-dir", str(tmp_path / "demo")]
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1500, env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    results = json.loads((tmp_path / "demo" / "demo_results.json").read_text())
    assert results["variant"] == "quick"
    assert results["pretrain_top1_err"] < 10  # 4 classes: chance is 75%
    assert results["bbox"]["AP50"] >= MIN_AP50, results["bbox"]
    assert set(results["seconds"]) == {
        "pretrain (shape crops, the demo's ImageNet)",
        "convert to detectron2 weights",
        "stage 1: RPN, then proposals",
        "stage 2: Fast R-CNN on the proposals",
        "COCO evaluation on the held-out val split",
        "detections drawn on the val images",
    }
    pictures = sorted((tmp_path / "demo" / "vis").glob("*.png"))
    assert len(pictures) == 40 and (tmp_path / "demo" / "demo_detections.png").is_file()
    # a re-run keeps every finished stage and reports the same numbers
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count(": kept ") == 6
    rerun = json.loads((tmp_path / "demo" / "demo_results.json").read_text())
    assert rerun["bbox"] == results["bbox"] and rerun["seconds"] == {}
    # the full demo does not silently keep the quick variant's stages
    full = [sys.executable, "tools/demo.py", "--output-dir", str(tmp_path / "demo")]
    mixed = subprocess.run(full, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert mixed.returncode != 0 and "holds the 'quick' demo" in mixed.stderr
