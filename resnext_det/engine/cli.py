"""How every tool starts: its shared flags, the inputs checked in the launching process
(``preflight``), ``launch``, and user errors reported as one paragraph.

A mistake in the command (a missing dataset, a config key that does not exist, an OUTPUT_DIR
that holds an earlier run ...) is found by ``preflight`` before any worker process or data
loader starts, and printed as one paragraph (``error: ...``, exit status 1). The same holds for
the user errors that can only appear later (an unreadable image, a diverged loss), also when
they happen in a worker process. Bugs keep their traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from detectron2.data import DatasetCatalog

from ..data.coco import check_datasets, register_checked_coco
from ..data.demo_dataset import prepare_demo_splits
from ..data.voc import register_checked_voc
from ..errors import ConfigError, SlurmJobError, user_error_message
from .launch import check_batch_divides, check_device, check_num_gpus, check_weights_file, launch
from .output_dir import prepare_output_dir
from .run_config import LazyRun, read_run_config

__all__ = [
    "add_dataset_argument",
    "add_overwrite_argument",
    "check_device",
    "check_num_gpus",
    "exit_on_user_error",
    "give_back_overrides",
    "preflight",
    "register_datasets_from_args",
    "run_tool",
]


def _is_override(token: str) -> bool:
    """A config override (YAML's KEY / VALUE pairs are upper case; LazyConfig's are key=value)."""
    return "=" in token or (token == token.upper() and any(c.isalpha() for c in token))


def give_back_overrides(args, dest: str):
    """``--flag 1 2 MODEL.WEIGHTS w.pth``: argparse gives every token after a ``nargs="+"`` flag to
    it, the config overrides that follow included; those, from the first key on, go back to
    ``args.opts`` (detectron2's remainder)."""
    values = getattr(args, dest) or []
    for i, token in enumerate(values):
        if _is_override(token):
            args.opts = [*values[i:], *args.opts]
            setattr(args, dest, values[:i])
            break
    return args


def add_dataset_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--dataset",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "JSON", "IMAGE_ROOT"),
        help="register a COCO-format dataset under NAME (repeatable); use NAME in DATASETS.TRAIN/TEST",
    )
    parser.add_argument(
        "--voc-dataset",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "DIR", "SPLIT"),
        help="register a Pascal VOC-layout folder's split under NAME (repeatable); evaluated with VOC's mAP",
    )
    return parser


def register_datasets_from_args(args) -> list[str]:
    """Register every ``--dataset NAME JSON IMAGE_ROOT`` and ``--voc-dataset NAME DIR SPLIT``
    (idempotent, once per process)."""
    names = []
    for name, json_file, image_root in getattr(args, "dataset", []) or []:
        if name not in DatasetCatalog.list():
            register_checked_coco(name, json_file, image_root)
        names.append(name)
    for name, dirname, split in getattr(args, "voc_dataset", []) or []:
        if name not in DatasetCatalog.list():
            register_checked_voc(name, dirname, split)
        names.append(name)
    return names


def add_overwrite_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start again in an OUTPUT_DIR holding an earlier run (its checkpoints and metrics are removed)",
    )
    return parser


@contextmanager
def exit_on_user_error():
    """A user error inside (from any process) exits with ``error: <message>`` and status 1;
    anything else keeps its traceback."""
    try:
        yield
    except Exception as e:
        message = user_error_message(e)
        if message is None:
            raise
        sys.exit(f"error: {message}")


def run_tool(main: Callable, args, preflight: Callable[[], object] | None = None):
    """``preflight()``, then ``launch(main, ...)`` with the tool's arguments, under
    ``exit_on_user_error``; with ``--slurm``, the job is submitted instead (``engine.slurm``)."""
    with exit_on_user_error():
        if getattr(args, "slurm", False):
            return submit_to_slurm(main, args, preflight)
        check_num_gpus(args.num_gpus)  # before preflight, which may generate the demo data
        if preflight is not None:
            preflight()
        return launch(main, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url, args=(args,))


def submit_to_slurm(main: Callable, args, preflight: Callable[[], object] | None = None):
    """Check what can be checked here (not the GPUs: they are on the nodes), submit, and with
    ``--slurm-wait`` wait for the job: its failure is this tool's, with the job's error."""
    try:
        import submitit
    except ImportError:
        raise ConfigError(
            "--slurm submits through submitit: pip install submitit (or resnext-det[slurm])"
        ) from None

    from .slurm import job_failure, slurm_processes, submit

    if args.slurm_nodes < 1 or args.slurm_gpus_per_node < 1:
        raise ConfigError(
            f"--slurm-nodes and --slurm-gpus-per-node must be at least 1, got {args.slurm_nodes} and "
            f"{args.slurm_gpus_per_node}"
        )
    slurm_processes(args)
    if preflight is not None:
        preflight()
    job = submit(main, args, job_name=Path(sys.argv[0]).stem)
    print(f"submitted job {job.job_id}: {args.slurm_nodes} node(s) x {args.slurm_gpus_per_node} GPU(s); "
          f"logs {job.paths.stdout} and {job.paths.stderr}", flush=True)  # fmt: skip
    if not args.slurm_wait:
        return job
    try:
        return job.result()
    except submitit.core.utils.FailedJobError:
        raise SlurmJobError(
            f"job {job.job_id} failed ({job_failure(job)}); its log: {job.paths.stderr}"
        ) from None


def preflight(args, proposals_dir: str | None = None, test_only: bool = False, stage1: bool = False):
    """Check a tool's inputs in the launching process, before any worker starts; the same checks
    for a YAML and a LazyConfig file (``engine.run_config``).

    Registers ``--dataset``s, loads the config with its overrides, generates the demo data once if
    it is named, checks the device (and that AMP has a GPU), that the weights file exists, the
    model's keys (a LazyConfig's model is built on the meta device), with ``stage1``
    (train_rpn.py) that the model is an RPN, every dataset's files (the test sets' alone for
    ``test_only``), with ``proposals_dir`` stage 1's proposals, and for a training run (a tool
    with ``--overwrite``, without ``--eval-only``) that the batch divides over the processes and
    the output folder (``prepare_output_dir``). Returns the cfg; user errors are
    ``ResNeXtDetError``s.
    """
    register_datasets_from_args(args)
    training = not (test_only or getattr(args, "eval_only", False))
    run = read_run_config(args, test_only=test_only)
    names = run.dataset_names(test_only)
    prepare_demo_splits(names)  # writes only when a demo split is named
    if not getattr(args, "slurm", False):  # a Slurm job's GPUs are on its nodes, not here
        fix = f"add {_override(run, run.device.key, 'cpu')} to the command line"
        check_device(run.device.value, run.device.key, fix=fix)
        if training and run.amp.value and not str(run.device.value).startswith("cuda"):
            raise ConfigError(f"{run.amp.key} needs a GPU (CUDA); add {_override(run, run.amp.key, 'false')}")
    check_weights_file(run.weights.value, run.weights.key)
    run.check_model(stage1)
    check_datasets(names)
    if proposals_dir is not None:  # after the datasets' checks: the coverage check reads them
        run.check_proposals(proposals_dir, test_only)
    if training:
        processes = args.num_gpus * args.num_machines
        batch = run.total_batch(processes)
        if isinstance(batch.value, int):
            check_batch_divides(batch.key, batch.value, processes)
        if hasattr(args, "overwrite"):
            prepare_output_dir(run.output_dir, args.resume, args.overwrite)
    return run.cfg


def _override(run, key: str, value: str) -> str:
    """How to set ``key`` on this config's command line: ``KEY VALUE`` (YAML) or ``key=value``."""
    return f"{key}={value}" if isinstance(run, LazyRun) else f"`{key} {value}`"
