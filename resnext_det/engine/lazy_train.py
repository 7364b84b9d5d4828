"""A LazyConfig file's run in the tools: its set-up, its parts for the one engine, stage 1's dump.

What detectron2's ``tools/lazyconfig_train_net.py`` does (instantiate the model, optimizer,
loaders and schedule), handed to the engine (``engine.trainer``) as ``RunParts``, so a LazyConfig
run has everything a YAML run has: atomic checkpoints that never hold diverged weights, the
divergence stop, refused misfit weights and, with ``build_resumable_detection_loader`` as the
train loader (configs/lazy/ use it), an exact ``--resume``. Another loader (detectron2's
``build_detection_train_loader``) works, with a warning that a resumed run restarts its stream.
Inputs are checked in the launching process by the tools' one preflight (``cli.preflight``).

detectron2 0.6's ``default_setup`` reads YAML keys only, so ``setup_lazy_run`` does its part
(output folder, logs, config copy, seed) for a LazyConfig itself.
"""

from __future__ import annotations

import copy
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
from ..data.demo_dataset import register_named_demo_splits
from ..data.train_stream import ResumableTrainLoader
from ..errors import ConfigError, ResNeXtDetError
from ..layers.frozen_bn import fold_frozen_batchnorm
from ..layers.norms import resolve_norm
from ..proposals.handoff import write_stage1_proposals
from .defaults import apply_deterministic_mode
from .lazy_config import (
    attach_lazy_proposals,
    dataset_mapper,
    lazy_channels_last,
    load_lazy_config,
    loader_dataset_names,
    with_test_dataset,
)
from .stages import results_by_dataset
from .trained_stage import lazy_input_format
from .trainer import ResNeXtAMPTrainer, ResNeXtTrainer, RunParts, assemble_trainer
from .tta import TTASettings, with_test_augmentation
from .validation import metric_and_mode, run_validation_hooks

__all__ = [
    "dump_lazy_proposals",
    "evaluate_lazy",
    "check_lazy_model",
    "lazy_dataset_names",
    "load_tool_lazy_config",
    "scale_to_processes",
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
    register_named_demo_splits(lazy_dataset_names(cfg, with_train=training))
    if proposals_dir is not None:
        attach_lazy_proposals(cfg, proposals_dir, args.config_file, test_only)
    return cfg


def _is_training(args, test_only: bool) -> bool:
    """A tool run that trains (not eval_coco.py, not --eval-only) needs the optimizer and schedule."""
    return not (test_only or getattr(args, "eval_only", False))


def lazy_dataset_names(cfg, with_train: bool) -> list[str]:
    """The datasets of ``dataloader.test``, and of ``dataloader.train`` too ``with_train`` (where
    the file has one), each once."""
    loaders = ("train", "test") if with_train and "train" in cfg.dataloader else ("test",)
    return list(dict.fromkeys(name for loader in loaders for name in loader_dataset_names(cfg, loader)))


def check_lazy_model(cfg, path: str) -> torch.nn.Module:
    """The preflight's model check: ``train.memory_format`` and the model built on the meta
    device (no memory, no time), a wrong argument named."""
    lazy_channels_last(cfg)  # a bad train.memory_format is named here, not in a worker
    return _instantiate_model(cfg, path, device="meta")


def _instantiate_model(cfg, path: str, device: str | None = None) -> torch.nn.Module:
    """``instantiate(cfg.model)``; a wrong argument in the file is a ``ConfigError`` naming it.
    ``model.backbone.norm`` "SyncBN" is resolved for ``train.device`` and the processes
    (``layers.norms.resolve_norm``) as the YAML builders resolve ``MODEL.RESNEXT.NORM``; the res5
    head follows the backbone's norm. On the meta device (the preflight's shapes) it is kept."""
    backbone = cfg.model.get("backbone")
    norm = backbone.get("norm") if backbone is not None else None
    resolved = resolve_norm(norm, cfg.train.device) if isinstance(norm, str) and device != "meta" else norm
    try:
        if resolved != norm:
            backbone.norm = resolved
        with torch.device(device or "cpu"):
            model = instantiate(cfg.model)
    except ResNeXtDetError:
        raise
    except (TypeError, ValueError, AssertionError) as e:
        raise ConfigError(f"config file {path}: model cannot be built: {type(e).__name__}: {e}") from None
    finally:  # the config stays as written (it is saved and copied for each evaluation)
        if resolved != norm:
            backbone.norm = norm
    if device == "meta":
        return model
    model = model.to(cfg.train.device)
    return model.to(memory_format=torch.channels_last) if lazy_channels_last(cfg) else model


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
    apply_deterministic_mode(bool(cfg.train.get("deterministic", False)))
    return cfg


def scale_to_processes(cfg, processes: int, path: str = "the config"):
    """``cfg`` for ``processes`` training processes, by ``train.reference_world_size`` (the twin of
    ``SOLVER.REFERENCE_WORLD_SIZE``; 0: as written): what detectron2's
    ``DefaultTrainer.auto_scale_workers`` does to a YAML config. The batch and the learning rate
    scale with the processes (the linear scaling rule, each process keeps its images), the
    iterations, the schedule's steps and the checkpoint and evaluation periods inversely; the
    warm-up, a fraction of the run here, follows. A copy when anything changes."""
    reference = cfg.train.get("reference_world_size", 0)
    if not reference or reference == processes:
        return cfg
    batch = cfg.dataloader.train.total_batch_size
    if batch % reference:
        raise ConfigError(
            f"{path}: dataloader.train.total_batch_size {batch} is not a multiple of "
            f"train.reference_world_size {reference}: it cannot be scaled to {processes} processes"
        )
    scheduler = cfg.lr_multiplier.get("scheduler", {})
    if "milestones" not in scheduler or "num_updates" not in scheduler:
        raise ConfigError(
            f"{path}: train.reference_world_size {reference} scales the schedule's steps, which it finds in "
            "lr_multiplier.scheduler.milestones / num_updates (a WarmupParamScheduler of a "
            "MultiStepParamScheduler, as configs/lazy/common/c4.py); set train.reference_world_size=0 to "
            "train as written"
        )
    scale = processes / reference
    cfg = copy.deepcopy(cfg)
    cfg.dataloader.train.total_batch_size = int(round(batch * scale))
    cfg.optimizer.lr = cfg.optimizer.lr * scale
    train = cfg.train
    train.max_iter = int(round(train.max_iter / scale))
    train.eval_period = int(round(train.eval_period / scale))
    train.checkpointer.period = int(round(train.checkpointer.period / scale))
    scheduler = cfg.lr_multiplier.scheduler
    scheduler.milestones = [int(round(m / scale)) for m in scheduler.milestones]
    scheduler.num_updates = train.max_iter
    train.reference_world_size = processes
    logger.info(
        "scaled to %d processes (train.reference_world_size %d): total_batch_size %d, lr %g, max_iter %d, "
        "steps %s", processes, reference, cfg.dataloader.train.total_batch_size, cfg.optimizer.lr,
        train.max_iter, list(scheduler.milestones),
    )  # fmt: skip
    return cfg


def trainer_from_lazy(cfg, path: str = "the config") -> ResNeXtTrainer | ResNeXtAMPTrainer:
    """The engine's trainer (``engine.trainer``) for a LazyConfig: its model, optimizer, loader
    and schedule instantiated in the order of detectron2's ``lazyconfig_train_net.py``, scaled to
    the processes (``scale_to_processes``)."""
    cfg = scale_to_processes(cfg, comm.get_world_size(), path)
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
        evaluate=lambda: _as_detectron2_reports(evaluate_lazy(cfg, model)),
        seed=max(cfg.train.get("seed", -1) or 0, 0),
        amp=cfg.train.amp.enabled,
        ddp=dict(cfg.train.ddp),
        log_period=cfg.train.log_period,
        hooks_after_eval=lambda checkpointer: run_validation_hooks(
            model,
            checkpointer,
            test_sets=loader_dataset_names(cfg, "test"),
            validation_loader=lambda name: build_lazy_validation_loader(cfg, name),
            val_loss_period=cfg.train.get("val_loss_period", 0),
            best=metric_and_mode(cfg.train.get("best_metric", ""), isinstance(model, ProposalNetwork)),
            eval_period=cfg.train.eval_period,
        ),
    )
    return assemble_trainer(parts)


def _as_detectron2_reports(results: dict) -> dict:
    """One test set's results un-nested, as ``DefaultTrainer.test`` returns them: the metrics are
    then ``bbox/AP`` in ``metrics.json`` for a YAML and a LazyConfig run alike (what
    ``tools/plot_metrics.py`` and ``train.best_metric`` name)."""
    return next(iter(results.values())) if len(results) == 1 else results


def build_lazy_validation_loader(cfg, name: str):
    """``train.val_loss_period``'s images: ``dataloader.test`` for ``name`` (its test size, its
    proposals) with its ``DatasetMapper`` keeping the annotations (``is_train``, no flip: the
    test augmentations stay)."""
    one = with_test_dataset(cfg, name)
    needs = "train.val_loss_period (its is_train keeps the annotations the losses need)"
    dataset_mapper(one.dataloader.test, "dataloader.test", needs).is_train = True
    return instantiate(one.dataloader.test)


def train_lazy(cfg, resume: bool = False, eval_only: bool = False, path: str = "the config"):
    """Train (or only evaluate) ``cfg.model``; return (model, {test dataset: results})."""
    if eval_only:
        model = _instantiate_model(cfg, path)
        model.eval()
        SafeDetectionCheckpointer(model, save_dir=cfg.train.output_dir).resume_or_load(
            cfg.train.init_checkpoint, resume=resume
        )
        if cfg.train.get("fold_frozen_bn", True):  # as TEST.FOLD_FROZEN_BN for a YAML evaluation
            fold_frozen_batchnorm(model)
        return model, evaluate_lazy(cfg, model)
    trainer = trainer_from_lazy(cfg, path)
    trainer.resume_or_load(resume=resume)
    return trainer.checkpointer.model, results_by_dataset(loader_dataset_names(cfg, "test"), trainer.train())


def evaluate_lazy(cfg, model) -> dict:
    """{dataset: results} of ``dataloader.evaluator`` on each of ``dataloader.test``'s datasets,
    one at a time (COCOEvaluator's files in ``train.output_dir/inference/<dataset>``); with
    ``train.test_aug.enabled``, of the model under test-time augmentation, as a YAML run's
    ``TEST.AUG.ENABLED``."""
    aug = TTASettings.from_lazy(cfg)
    if aug is not None:
        model = with_test_augmentation(model, aug, lazy_input_format(cfg), key="train.test_aug.enabled")
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
