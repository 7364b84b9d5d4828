"""--slurm: the training tools submit the same job through submitit; run here with its local
executor on 2 CPU processes (gloo), torch.distributed set up from the job's environment."""

from __future__ import annotations

import argparse

from resnext_det.engine.slurm import SlurmTask, _port, add_slurm_arguments

import pytest
import torch
from tool_runs import run_tool

CONFIG = "configs/demo/rpn_tiny_C4.yaml"


def test_requeue_resumes_and_the_port_is_per_job():
    args = add_slurm_arguments(argparse.ArgumentParser()).parse_args(["--slurm", "--slurm-nodes", "2"])
    args.resume = False
    requeued = SlurmTask(print, args).checkpoint()
    assert requeued.function.args.resume is True and args.resume is False  # the original is untouched
    assert _port("123") == _port("123") != _port("124") and 20_000 <= _port("123") < 40_000
    assert (args.slurm_nodes, args.slurm_gpus_per_node, args.slurm_time) == (2, 8, 4320)


@pytest.mark.slow  # a 2-process RPN job, a few iterations
@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU (gloo) path runs where CUDA is absent")
def test_train_rpn_as_a_local_submitit_job_on_two_processes(tmp_path):
    out = tmp_path / "rpn"
    env_datasets = ["DATASETS.TRAIN", "('resnext_demo_train',)", "DATASETS.TEST", "('resnext_demo_val',)"]
    done = run_tool(
        "tools/train_rpn.py", "--config-file", CONFIG,
        "--slurm", "--slurm-local", "--slurm-wait", "--slurm-gpus-per-node", "2",
        "--slurm-folder", str(tmp_path / "jobs" / "%j"), *env_datasets,
        "SOLVER.MAX_ITER", "4", "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "0", "MODEL.WEIGHTS", "",
        "OUTPUT_DIR", str(out),
        env={"DETECTRON2_DATASETS": str(tmp_path / "datasets")},  # the demo data, generated
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "submitted job" in done.stdout and "1 node(s) x 2 GPU(s)" in done.stdout
    assert (out / "model_final.pth").is_file()
    assert (out / "proposals_resnext_demo_val" / "boxes.npy").is_file()
    log = (out / "log.txt").read_text()
    assert "World size: 2" in log  # the job's two processes formed one process group
    assert list((tmp_path / "jobs").glob("*/*_log.out"))  # submitit's per-job logs


def test_bad_slurm_arguments_are_one_error():
    done = run_tool(
        "tools/train_rpn.py",
        "--config-file",
        "configs/demo/rpn_tiny_C4.yaml",
        "--slurm",
        "--slurm-nodes",
        "0",
    )
    assert (
        done.returncode == 1 and "--slurm-nodes and --slurm-gpus-per-node must be at least 1" in done.stderr
    )
    assert "Traceback" not in done.stderr


def test_a_failed_jobs_reason_is_its_last_error_line(tmp_path):
    from types import SimpleNamespace

    from resnext_det.engine.slurm import job_failure

    log = tmp_path / "0_log.err"
    log.write_text("WARNING: something\nTraceback (most recent call last):\n  File x\nValueError: boom\n\n")
    job = SimpleNamespace(paths=SimpleNamespace(stderr=log))
    assert job_failure(job) == "ValueError: boom"
    log.write_text("just a line\n")
    assert job_failure(job) == "just a line"
    missing = SimpleNamespace(paths=SimpleNamespace(stderr=tmp_path / "none"))
    assert job_failure(missing) == "no message in the log"
