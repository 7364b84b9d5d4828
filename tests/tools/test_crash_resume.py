"""Killed stages lose nothing: SIGKILL mid-run, --resume, and the result equals an uninterrupted run.

Real tool runs in subprocesses, on the demo data, in deterministic mode with SEED 0:

* two uninterrupted runs of the tiny pipeline (stage 1, stage 2 on its proposals, evaluation)
  give identical weights, losses, proposals and detections (determinism);
* a run killed with SIGKILL mid-way, with a half-written newer checkpoint left behind (as a kill
  during the write would), refuses to restart without --resume/--overwrite, and with --resume
  continues from the newest complete checkpoint to the same weights, losses and proposals as
  the uninterrupted run (right iteration, lr, optimizer state and data position);
* a diverging run stops with one paragraph naming the iteration, and leaves only finite,
  complete checkpoints.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from resnext_det.checkpoint.safe_checkpointer import complete_checkpoints

import numpy as np
import pytest
import torch
from test_detection_stages import ROOT, run

pytestmark = pytest.mark.slow  # kills and resumes real training runs

# stage 1 on the 40-image val split, from random weights (BN), 12 iterations, a checkpoint every 3
RPN = [
    "tools/train_rpn.py", "--config-file", "configs/demo/rpn_tiny_C4.yaml",
    "DATASETS.TRAIN", "('resnext_demo_val',)", "DATASETS.TEST", "()",
    "SOLVER.MAX_ITER", "12", "SOLVER.STEPS", "(8,)", "SOLVER.IMS_PER_BATCH", "2",
    "SOLVER.CHECKPOINT_PERIOD", "3", "MODEL.RESNEXT.NORM", "BN", "MODEL.RESNEXT.FREEZE_AT", "0",
    "SEED", "0", "DETERMINISTIC", "True",
]  # fmt: skip


def losses(output_dir: Path) -> dict[int, dict]:
    """metrics.json's loss lines by iteration (timing keys dropped)."""
    lines = [json.loads(line) for line in (output_dir / "metrics.json").read_text().splitlines()]
    return {
        line["iteration"]: {k: v for k, v in line.items() if k.startswith(("loss", "total_loss", "lr"))}
        for line in lines
        if "total_loss" in line
    }


def assert_same_weights(a: Path, b: Path) -> None:
    first = torch.load(a, weights_only=True)["model"]
    second = torch.load(b, weights_only=True)["model"]
    assert first.keys() == second.keys()
    different = [k for k in first if not torch.equal(first[k], second[k])]
    assert not different, different[:5]


def assert_same_store(a: Path, b: Path) -> None:
    for name in ("boxes", "objectness_logits", "ids", "offsets"):
        assert np.array_equal(np.load(a / f"{name}.npy"), np.load(b / f"{name}.npy")), name


def kill_when(command: list[str], tmp_path: Path, marker: Path) -> None:
    """Start a tool and SIGKILL it as soon as ``marker`` exists (it must still be running)."""
    env = {**os.environ, "DETECTRON2_DATASETS": str(tmp_path / "datasets")}
    process = subprocess.Popen(
        [sys.executable, "-W", "ignore", *command], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"


# stage 2 on stage 1's proposals for the same split, evaluated on it at the end
FAST_RCNN = [
    "tools/train_fast_rcnn.py", "--config-file", "configs/demo/fast_rcnn_tiny_C4.yaml",
    "DATASETS.TRAIN", "('resnext_demo_val',)", "SOLVER.MAX_ITER", "6", "SOLVER.IMS_PER_BATCH", "2",
    "MODEL.RESNEXT.NORM", "BN", "MODEL.RESNEXT.FREEZE_AT", "0", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
    "SEED", "0", "DETERMINISTIC", "True",
]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The tiny pipeline twice: stage 1, then stage 2 on its proposals with a final evaluation."""
    tmp = tmp_path_factory.mktemp("rpn_runs")
    outputs = []
    for name in ("a", "b"):
        result = run(tmp, *RPN, "OUTPUT_DIR", str(tmp / name))
        assert result.returncode == 0, result.stderr[-3000:]
        stage2 = [*FAST_RCNN[:3], "--proposals", str(tmp / name), *FAST_RCNN[3:]]
        result = run(tmp, *stage2, "OUTPUT_DIR", str(tmp / name / "fast_rcnn"))
        assert result.returncode == 0, result.stderr[-3000:]
        outputs.append(tmp / name)
    return tmp, outputs


@pytest.mark.both_builds  # the trainer's state and --resume differ between the builds
def test_two_runs_of_the_pipeline_are_identical(uninterrupted):
    _, (a, b) = uninterrupted
    assert losses(a) == losses(b) and 11 in losses(a)  # detectron2 logs every 20 iterations and the last
    for name in ("model_0000002.pth", "model_0000008.pth", "model_final.pth"):
        assert_same_weights(a / name, b / name)
    assert_same_store(a / "proposals_resnext_demo_val", b / "proposals_resnext_demo_val")
    assert_same_weights(a / "fast_rcnn" / "model_final.pth", b / "fast_rcnn" / "model_final.pth")
    assert losses(a / "fast_rcnn") == losses(b / "fast_rcnn")
    detections = [
        json.loads(
            (d / "fast_rcnn" / "inference" / "resnext_demo_val" / "coco_instances_results.json").read_text()
        )
        for d in (a, b)
    ]
    assert len(detections[0]) > 0 and detections[0] == detections[1]  # hence the same AP


@pytest.mark.both_builds  # the trainer's state and --resume differ between the builds
def test_killed_then_resumed_equals_uninterrupted(uninterrupted):
    tmp, (reference, _) = uninterrupted
    out = tmp / "killed"
    kill_when([*RPN, "OUTPUT_DIR", str(out)], tmp, out / "model_0000005.pth")
    assert not (out / "model_final.pth").exists()
    # what a kill during a later checkpoint write leaves: the temporary file, and (from a copy
    # tool or a file system that lost the tail) a truncated file under a newer final name
    newest = complete_checkpoints(out)[0]
    (out / "model_0000099.pth").write_bytes(newest.read_bytes()[:1000])
    (out / "model_0000102.pth.partial").write_bytes(newest.read_bytes()[:500])

    again = run(tmp, *RPN, "OUTPUT_DIR", str(out))
    assert (
        again.returncode == 1 and "holds an earlier run" in again.stderr and "pass --resume" in again.stderr
    )
    assert "Traceback" not in again.stderr

    resumed = run(tmp, *RPN[:3], "--resume", *RPN[3:], "OUTPUT_DIR", str(out))  # flags before KEY VALUE
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    start = int(newest.stem.split("_")[1]) + 1
    assert f"Starting training from iteration {start}" in resumed.stderr + resumed.stdout
    # every checkpoint after the resume point, so every step after it, matches
    later = [f"model_{i:07d}.pth" for i in range(start, 12) if (i + 1) % 3 == 0] + ["model_final.pth"]
    for name in later:
        assert_same_weights(out / name, reference / name)
    # the learning rate too (the logged losses are medians over the run's recent iterations, so
    # they differ after a resume by design; the weights above are the exact check)
    assert losses(out)[11]["lr"] == losses(reference)[11]["lr"]
    assert_same_store(out / "proposals_resnext_demo_val", reference / "proposals_resnext_demo_val")


def test_divergence_stops_with_the_iteration_and_keeps_good_checkpoints(tmp_path):
    out = tmp_path / "diverged"
    result = run(
        tmp_path, *RPN, "SOLVER.BASE_LR", "1e6", "SOLVER.CHECKPOINT_PERIOD", "1", "OUTPUT_DIR", str(out)
    )
    assert result.returncode == 1, result.stderr[-2000:]
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: training diverged"), message
    assert "the last good checkpoint is" in message and "Lower SOLVER.BASE_LR" in message
    for checkpoint in out.glob("model_*.pth"):
        weights = torch.load(checkpoint, weights_only=True)["model"]
        assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point()), checkpoint
    assert not (out / "model_final.pth").exists()


def test_pretraining_killed_then_resumed_equals_uninterrupted(tmp_path):
    from pretrain.synthetic import generate_image_folder

    data = generate_image_folder(tmp_path / "imagefolder")
    command = [
        "tools/pretrain_imagenet.py", "--config-file", "configs/demo/imagenet_tiny.yaml",
        "DATA.ROOT", str(data), "SOLVER.EPOCHS", "4", "SOLVER.STEPS", "(3,)", "DETERMINISTIC", "True",
    ]  # fmt: skip
    reference = run(tmp_path, *command, "OUTPUT_DIR", str(tmp_path / "reference"))
    assert reference.returncode == 0, reference.stderr[-3000:]
    out = tmp_path / "killed"
    kill_when([*command, "OUTPUT_DIR", str(out)], tmp_path, out / "model_0000014.pth")  # after epoch 1
    resumed = run(tmp_path, *command[:3], "--resume", *command[3:], "OUTPUT_DIR", str(out))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(out / "model_final.pth", tmp_path / "reference" / "model_final.pth")
    final = [json.loads((d / "final_metrics.json").read_text()) for d in (out, tmp_path / "reference")]
    assert final[0] == final[1]
