"""A LazyConfig file's run in the tools, with the safety the YAML path has.

What detectron2's ``tools/lazyconfig_train_net.py`` does (instantiate the model, optimizer and
loaders; ``SimpleTrainer`` or ``AMPTrainer``; timer, lr schedule, periodic checkpoints,
evaluation and writers as hooks), plus what ``ResNeXtTrainer`` adds for YAML configs:

* checkpoints written atomically, never holding diverged weights, the newest complete one taken
  by ``--resume`` (``SafeDetectionCheckpointer``), with the optimizer's state (and AMP's scaler);
* a non-finite loss stops the run with ``TrainingDivergedError``, before that step is applied;
* resnext_det weights that do not fit the model are refused instead of partly loaded;
* with ``build_resumable_detection_loader`` as the train loader (configs/lazy/ use it), an exact
  ``--resume``: the data stream and the model's sampling continue where they stopped. Another
  loader (detectron2's ``build_detection_train_loader``) works, with a warning that a resumed run
  restarts its stream;
* inputs checked in the launching process (``lazy_preflight``), errors as one paragraph.

detectron2 0.6's ``default_setup`` reads YAML keys only, so ``setup_lazy_run`` does its part
(output folder, logs, config copy, seed) for a LazyConfig itself.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.modeling.meta_arch import ProposalNetwork
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from .. import compat
from ..atomic_files import atomic_path
from ..checkpoint.safe_checkpointer import SafeDetectionCheckpointer
from ..config import channels_last_for
from ..data.coco import check_datasets
from ..data.demo_dataset import DEMO_SPLITS, prepare_demo_splits, register_demo_datasets
from ..data.train_stream import ResumableTrainLoader
from ..errors import ConfigError, ResNeXtDetError
from ..proposals.handoff import write_stage1_proposals
from .launch import check_batch_divides, check_device, check_weights_file
from .lazy_config import (
    attach_lazy_proposals,
    load_lazy_config,
    loader_dataset_names,
    with_test_dataset,
)
from .output_dir import prepare_output_dir
from .trainer import ResNeXtAMPTrainer, ResNeXtTrainer, RunParts, assemble_trainer

__all__ = [
    "dump_lazy_proposals",
    "evaluate_lazy",
    "lazy_preflight",
    "load_tool_lazy_config",
    "setup_lazy_run",
    "train_lazy",
    "trainer_from_lazy",
]

logger = logging.getLogger("resnext_det")


def load_tool_lazy_config(args, proposals_dir: str | None = None, test_only: bool = False):
    """The tool's LazyConfig with its overrides, its datasets registered (the demo's without
    writing), and with ``proposals_dir`` stage 1's checked proposals attached."""
    training = _is_training(args, test_only)
    cfg = load_lazy_config(args.config_file, args.opts, training=training)
    names = _dataset_names(cfg, training)
    if any(name in DEMO_SPLITS for name in names):
        register_demo_datasets()
    if proposals_dir is not None:
        attach_lazy_proposals(cfg, proposals_dir, args.config_file, test_only)
    return cfg


def _is_training(args, test_only: bool) -> bool:
    """A tool run that trains (not eval_coco.py, not --eval-only) needs the optimizer and schedule."""
    return not (test_only or getattr(args, "eval_only", False))


def _dataset_names(cfg, training: bool) -> list[str]:
    loaders = ("train", "test") if training else ("test",)
    return list(dict.fromkeys(name for loader in loaders for name in loader_dataset_names(cfg, loader)))


def lazy_preflight(args, proposals_dir: str | None = None, test_only: bool = False, stage1: bool = False):
    """``cli.preflight`` for a LazyConfig: the config and overrides, the demo data generated once
    if named, every dataset's files, stage 1's proposals, the device, ``train.init_checkpoint``,
    the model (built on the meta device: no memory, no time; with ``stage1`` it must be a
    ``ProposalNetwork``), the batch over the processes and, for a training run, its output folder."""
    training = _is_training(args, test_only)
    cfg = load_tool_lazy_config(args, test_only=test_only)
    names = _dataset_names(cfg, training)
    prepare_demo_splits(names)  # writes only when a demo split is named
    check_datasets(names)
    if proposals_dir is not None:  # after the datasets' checks: the coverage check reads them
        attach_lazy_proposals(cfg, proposals_dir, args.config_file, test_only)
    if not getattr(args, "slurm", False):  # a Slurm job's GPUs are on its nodes, not here
        check_device(cfg.train.device, "train.device", fix="add train.device=cpu to the command line")
        if training and cfg.train.amp.enabled and not str(cfg.train.device).startswith("cuda"):
            raise ConfigError("train.amp.enabled needs a GPU (CUDA); add train.amp.enabled=false")
    _uses_channels_last(cfg)  # a bad train.memory_format is named here, not in a worker
    check_weights_file(cfg.train.init_checkpoint, "train.init_checkpoint")
    model = _instantiate_model(cfg, args.config_file, device="meta")
    if stage1 and not isinstance(model, ProposalNetwork):
        raise ConfigError(
            f"tools/train_rpn.py trains stage 1, a ProposalNetwork; {args.config_file} builds a "
            f"{type(model).__name__}: use an rpn_*.py config"
        )
    if training:
        processes = args.num_gpus * args.num_machines
        batch = cfg.dataloader.train.get("total_batch_size")
        if isinstance(batch, int):
            check_batch_divides("dataloader.train.total_batch_size", batch, processes)
        if hasattr(args, "overwrite"):
            prepare_output_dir(cfg.train.output_dir, args.resume, args.overwrite)
    return cfg


def _instantiate_model(cfg, path: str, device: str | None = None) -> torch.nn.Module:
    """``instantiate(cfg.model)``; a wrong argument in the file is a ``ConfigError`` naming it."""
    try:
        with torch.device(device or "cpu"):
            model = instantiate(cfg.model)
    except ResNeXtDetError:
        raise
    except (TypeError, ValueError, AssertionError) as e:
        raise ConfigError(f"config file {path}: model cannot be built: {type(e).__name__}: {e}") from None
    if device == "meta":
        return model
    model = model.to(cfg.train.device)
    return model.to(memory_format=torch.channels_last) if _uses_channels_last(cfg) else model


def _uses_channels_last(cfg) -> bool:
    """``train.memory_format`` (the YAML configs' ``SOLVER.MEMORY_FORMAT``; "auto" where a file
    predates the key) on ``train.device``."""
    memory_format = cfg.train.get("memory_format", "auto")
    return channels_last_for(memory_format, cfg.train.device, key="train.memory_format")


def setup_lazy_run(args, proposals_dir: str | None = None, test_only: bool = False):
    """In each process: the config (``load_tool_lazy_config``), then the output folder, logs, a
    copy of the config (``config.yaml``, as detectron2 writes) and the seed (``train.seed``)."""
    cfg = load_tool_lazy_config(args, proposals_dir, test_only)
    output_dir = cfg.train.output_dir
    rank = comm.get_rank()
    if comm.is_main_process():
        os.makedirs(output_dir, exist_ok=True)
    comm.synchronize()
    for name in ("fvcore", "detectron2", "resnext_det"):
        setup_logger(output_dir, distributed_rank=rank, name=name)
    logger.info("rank %d of %d; command line arguments: %s", rank, comm.get_world_size(), args)
    if compat.APPLIED:
        logger.info("detectron2 compatibility fixes applied: %s", "; ".join(compat.APPLIED))
    if comm.is_main_process():
        path = Path(output_dir, "config.yaml")
        with atomic_path(path) as partial:
            LazyConfig.save(cfg, str(partial))
        logger.info("LazyConfig %s with its overrides saved to %s", args.config_file, path)
    seed = cfg.train.get("seed", -1)
    seed_all_rng(None if seed is None or seed < 0 else seed + rank)
    torch.backends.cudnn.benchmark = bool(cfg.train.get("cudnn_benchmark", False))
    return cfg


def trainer_from_lazy(cfg, path: str = "the config") -> ResNeXtTrainer | ResNeXtAMPTrainer:
    """The engine's trainer (``engine.trainer``) for a LazyConfig: its model, optimizer, loader
    and schedule instantiated in the order of detectron2's ``lazyconfig_train_net.py``."""
    model = _instantiate_model(cfg, path)
    cfg.optimizer.params.model = model
    try:
        optimizer = instantiate(cfg.optimizer)
    finally:  # the config stays plain data (it is copied for each evaluation)
        del cfg.optimizer.params["model"]
    loader = instantiate(cfg.dataloader.train)
    if not isinstance(loader, ResumableTrainLoader):
        logger.warning(
            "dataloader.train is not resnext_det's build_resumable_detection_loader: a --resume of this "
            "run restarts the data stream at its beginning instead of where it stopped"
        )
    parts = RunParts(
        model=model,
        optimizer=optimizer,
        train_loader=loader,
        lr_scheduler=instantiate(cfg.lr_multiplier),
        max_iter=cfg.train.max_iter,
        output_dir=cfg.train.output_dir,
        weights=cfg.train.init_checkpoint,
        checkpointing=dict(cfg.train.checkpointer),
        eval_period=cfg.train.eval_period,
        evaluate=lambda: evaluate_lazy(cfg, model),
        seed=max(cfg.train.get("seed", -1) or 0, 0),
        amp=cfg.train.amp.enabled,
        ddp=dict(cfg.train.ddp),
        log_period=cfg.train.log_period,
    )
    return assemble_trainer(parts)


def train_lazy(cfg, resume: bool = False, eval_only: bool = False, path: str = "the config"):
    """Train (or only evaluate) ``cfg.model``; return (model, {test dataset: results})."""
    if eval_only:
        model = _instantiate_model(cfg, path)
        model.eval()
        SafeDetectionCheckpointer(model, save_dir=cfg.train.output_dir).resume_or_load(
            cfg.train.init_checkpoint, resume=resume
        )
        return model, evaluate_lazy(cfg, model)
    trainer = trainer_from_lazy(cfg, path)
    trainer.resume_or_load(resume=resume)
    return trainer.checkpointer.model, dict(trainer.train())


def evaluate_lazy(cfg, model) -> dict:
    """{dataset: results} of ``dataloader.evaluator`` on each of ``dataloader.test``'s datasets,
    one at a time (COCOEvaluator's files in ``train.output_dir/inference/<dataset>``)."""
    results = {}
    for name in loader_dataset_names(cfg, "test"):
        one = with_test_dataset(cfg, name, os.path.join(cfg.train.output_dir, "inference", name))
        loader, evaluator = instantiate(one.dataloader.test), instantiate(one.dataloader.evaluator)
        results[name] = inference_on_dataset(model, loader, evaluator)
        if comm.is_main_process():
            logger.info("evaluation on %s:", name)
            print_csv_format(results[name])
    return results


def dump_lazy_proposals(cfg, model) -> dict[str, Path]:
    """Stage 1's proposals for every train and test dataset (``write_stage1_proposals``), each
    kept as the RPN's own training / test top-k (``post_nms_topk``, ``pre_nms_topk``) say."""
    rpn = cfg.model.get("proposal_generator")
    if rpn is None or "post_nms_topk" not in rpn:
        raise ConfigError("tools/train_rpn.py needs a model with an RPN (model.proposal_generator)")
    (post_train, post_test), (pre_train, pre_test) = rpn.post_nms_topk, rpn.pre_nms_topk
    plan = [(n, post_train, pre_train) for n in loader_dataset_names(cfg, "train")]
    plan += [(n, post_test, pre_test) for n in loader_dataset_names(cfg, "test")]

    def test_loader(name):
        return instantiate(with_test_dataset(cfg, name).dataloader.test)

    return write_stage1_proposals(model, plan, test_loader, cfg.train.output_dir)
