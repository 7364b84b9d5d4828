"""What the classification tools (``tools/pretrain_imagenet.py``, ``tools/train_cifar.py``) share:
reading their config, setting up a run, and the preflight before any worker starts.

Each tool passes its own defaults (``get_pretrain_cfg`` / ``get_cifar_cfg``), template check and
dataset builder; the checks and their order are the same for both.
"""

from __future__ import annotations

from resnext_det.engine.defaults import apply_deterministic_mode, merge_config
from resnext_det.engine.launch import check_batch_divides, check_device, check_weights_file
from resnext_det.engine.output_dir import prepare_output_dir

from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from .config import autocast_dtype, uses_channels_last

__all__ = ["load_tool_cfg", "preflight_classification", "setup_run"]


def load_tool_cfg(args, defaults):
    """``defaults()`` merged with ``--config-file`` and the ``KEY VALUE`` overrides, frozen."""
    cfg = defaults()
    merge_config(cfg, args.config_file, args.opts)
    cfg.freeze()
    autocast_dtype(cfg), uses_channels_last(cfg)  # a bad SOLVER.AMP / MEMORY_FORMAT fails here, named
    return cfg


def setup_run(cfg, args) -> None:
    """detectron2's ``default_setup`` (output dir, config dump, seed), deterministic mode, logging."""
    default_setup(cfg, args)
    apply_deterministic_mode(cfg.get("DETERMINISTIC", False))
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="pretrain")


def preflight_classification(args, cfg, template_from_cfg, build_datasets) -> None:
    """The device (not for a Slurm job: its GPUs are on its nodes), MODEL.WEIGHTS, the template's
    keys, the batches over the processes, the dataset's files and OUTPUT_DIR."""
    if not args.slurm:
        check_device(cfg.MODEL.DEVICE)
    check_weights_file(cfg.MODEL.WEIGHTS)
    template_from_cfg(cfg)  # the template's keys, named, before anything is built
    processes = args.num_gpus * args.num_machines
    for key in ("SOLVER.IMS_PER_BATCH", "TEST.IMS_PER_BATCH"):
        section, name = key.split(".")
        check_batch_divides(key, cfg[section][name], processes)
    build_datasets(cfg, with_train=not args.eval_only)
    if not args.eval_only:
        prepare_output_dir(cfg.OUTPUT_DIR, args.resume, args.overwrite)
