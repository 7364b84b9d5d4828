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
from detectron2.engine import DefaultTrainer

from ..config import check_model_config, uses_channels_last
from ..data.coco import check_dataset_files, register_checked_coco
from ..data.demo_dataset import prepare_demo_datasets
from ..data.voc import register_checked_voc
from ..errors import ConfigError, SlurmJobError, user_error_message
from ..proposals.handoff import checked_proposal_files
from .defaults import setup_cfg
from .launch import check_batch_divides, check_device, check_num_gpus, check_weights_file, launch
from .lazy_config import is_lazy_config
from .lazy_train import lazy_preflight
from .output_dir import prepare_output_dir

__all__ = [
    "add_dataset_argument",
    "add_overwrite_argument",
    "check_device",
    "check_num_gpus",
    "exit_on_user_error",
    "preflight",
    "register_datasets_from_args",
    "run_tool",
]


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
    """Check a tool's inputs in the launching process, before any worker starts.

    Registers ``--dataset``s, loads the config, generates the demo data once if it is named, checks
    the device, that ``MODEL.WEIGHTS`` exists, the ResNeXt keys (without building the model),
    that the batch divides over the processes, every dataset's files, with ``proposals_dir``
    stage 1's proposal files, and with ``stage1`` (train_rpn.py) that the model is an RPN. A
    training run (a tool with ``--overwrite``, without ``--eval-only``) also checks its
    OUTPUT_DIR (``prepare_output_dir``). Returns the cfg; user errors are ``ResNeXtDetError``s.
    A ``.py`` config is checked by ``lazy_train.lazy_preflight`` instead.
    """
    register_datasets_from_args(args)
    if is_lazy_config(args.config_file):
        return lazy_preflight(args, proposals_dir, test_only, stage1)
    cfg = setup_cfg(args.config_file, args.opts)
    prepare_demo_datasets(cfg)
    if not getattr(args, "slurm", False):  # a Slurm job's GPUs are on its nodes, not here
        check_device(cfg.MODEL.DEVICE)
    check_weights_file(cfg.MODEL.WEIGHTS)
    check_model_config(cfg)
    uses_channels_last(cfg)  # a bad SOLVER.MEMORY_FORMAT is named here, not in a worker
    if stage1 and cfg.MODEL.META_ARCHITECTURE != "ProposalNetwork":
        raise ConfigError(
            f"tools/train_rpn.py trains stage 1, a ProposalNetwork; {args.config_file} builds a "
            f"{cfg.MODEL.META_ARCHITECTURE}: use an rpn_* config"
        )
    processes = args.num_gpus * args.num_machines
    scaled = DefaultTrainer.auto_scale_workers(cfg, processes)  # what the trainer will run
    check_batch_divides("SOLVER.IMS_PER_BATCH", scaled.SOLVER.IMS_PER_BATCH, processes)
    check_dataset_files(cfg)
    if proposals_dir is not None:
        checked_proposal_files(cfg, proposals_dir, test_only)
    if hasattr(args, "overwrite") and not args.eval_only:
        prepare_output_dir(cfg.OUTPUT_DIR, args.resume, args.overwrite)
    return cfg
