"""Killed stages lose nothing: SIGKILL mid-run, --resume, and the result equals an uninterrupted run.

On the shared tiny pipeline (``tiny_pipeline``: docs/detection.md's block, deterministic, SEED 0):

* two uninterrupted runs of it (stage 1, stage 2 on its proposals with a final evaluation) give
  identical weights, losses, proposals and detections (determinism);
* its stage 1, killed with SIGKILL mid-way (a child process: the kill is what is tested), with a
  half-written newer checkpoint left behind (as a kill during the write would), refuses to
  restart without --resume/--overwrite, and with --resume continues from the newest complete
  checkpoint to the same weights, losses and proposals as the uninterrupted run (right
  iteration, lr, optimizer state and data position);
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
from pipelines import with_output
from tool_runs import ROOT, run_tool

pytestmark = pytest.mark.slow  # kills and resumes real training runs


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


def kill_when(command: list[str], marker: Path, env: dict, cwd: Path = ROOT) -> None:
    """Start a tool in a child process and SIGKILL it as soon as ``marker`` exists (it must still
    be running)."""
    process = subprocess.Popen(
        [sys.executable, "-W", "ignore", *command], cwd=cwd, env={**os.environ, **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"


def with_flag(command: list[str], flag: str) -> list[str]:
    """``command`` with ``flag`` after its ``--config-file FILE`` (flags before the overrides)."""
    return [*command[:3], flag, *command[3:]]


@pytest.mark.both_builds  # the trainer's state and --resume differ between the builds
def test_two_runs_of_the_pipeline_are_identical(tiny_pipeline):
    a, b = tiny_pipeline.yaml, tiny_pipeline.again
    assert losses(a / "rpn") == losses(b / "rpn") and 11 in losses(a / "rpn")  # logged every 20 and the last
    for name in ("model_0000002.pth", "model_0000008.pth", "model_final.pth"):
        assert_same_weights(a / "rpn" / name, b / "rpn" / name)
    assert_same_store(a / "rpn" / "proposals_resnext_demo_val", b / "rpn" / "proposals_resnext_demo_val")
    assert_same_weights(a / "frcn" / "model_final.pth", b / "frcn" / "model_final.pth")
    assert losses(a / "frcn") == losses(b / "frcn")
    detections = [
        json.loads(
            (d / "frcn" / "inference" / "resnext_demo_val" / "coco_instances_results.json").read_text()
        )
        for d in (a, b)
    ]
    assert len(detections[0]) > 0 and detections[0] == detections[1]  # hence the same AP


@pytest.mark.both_builds  # the trainer's state and --resume differ between the builds
@pytest.mark.parametrize("kind", ["yaml", "lazy"])  # one engine: the same behaviour from either config
def test_killed_then_resumed_equals_uninterrupted(kind, tiny_pipeline, tmp_path):
    reference = getattr(tiny_pipeline, kind) / "rpn"
    out = tmp_path / "killed"
    rpn = with_output(tiny_pipeline.commands[kind][0], out)
    kill_when(rpn, out / "model_0000005.pth", tiny_pipeline.env, cwd=tiny_pipeline.root)
    assert not (out / "model_final.pth").exists()
    assert ("dataloader:" in (out / "config.yaml").read_text()) == (kind == "lazy")  # LazyConfig's dump
    # what a kill during a later checkpoint write leaves: the temporary file, and (from a copy
    # tool or a file system that lost the tail) a truncated file under a newer final name
    newest = complete_checkpoints(out)[0]
    (out / "model_0000099.pth").write_bytes(newest.read_bytes()[:1000])
    (out / "model_0000102.pth.partial").write_bytes(newest.read_bytes()[:500])

    again = tiny_pipeline.run(*rpn)
    assert (
        again.returncode == 1 and "holds an earlier run" in again.stderr and "pass --resume" in again.stderr
    )
    assert "Traceback" not in again.stderr

    resumed = tiny_pipeline.run(*with_flag(rpn, "--resume"))  # flags before KEY VALUE
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
    # the optimizer's momentum and the stream's seed are in every checkpoint: what an exact resume needs
    trainer_state = torch.load(out / "model_0000005.pth", weights_only=True)["trainer"]
    assert trainer_state["optimizer"]["state"] and trainer_state["stream_seed"] == 0


@pytest.mark.both_builds  # the trainer's hooks differ between the builds
def test_divergence_stops_with_the_iteration_and_keeps_good_checkpoints(tiny_pipeline, tmp_path):
    out = tmp_path / "diverged"
    rpn = with_output(tiny_pipeline.commands["yaml"][0], out)
    result = tiny_pipeline.run(*rpn, "SOLVER.BASE_LR", "1e6", "SOLVER.CHECKPOINT_PERIOD", "1")
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
    env = {"DETECTRON2_DATASETS": str(tmp_path / "datasets")}
    reference = run_tool(*command, "OUTPUT_DIR", str(tmp_path / "reference"), env=env)
    assert reference.returncode == 0, reference.stderr[-3000:]
    out = tmp_path / "killed"
    kill_when([*command, "OUTPUT_DIR", str(out)], out / "model_0000014.pth", env)  # after epoch 1
    resumed = run_tool(*with_flag(command, "--resume"), "OUTPUT_DIR", str(out), env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(out / "model_final.pth", tmp_path / "reference" / "model_final.pth")
    final = [json.loads((d / "final_metrics.json").read_text()) for d in (out, tmp_path / "reference")]
    assert final[0] == final[1]
