"""ImageNet classification training and evaluation on detectron2's trainer, hooks and checkpointer.

``train(cfg, resume)`` runs the Sec. 4 recipe epoch by epoch: detectron2's ``SimpleTrainer`` loop
(iteration counter, metric reduction across processes), its ``LRScheduler``,
``PeriodicCheckpointer`` (one checkpoint per epoch), ``EvalHook`` (top-1/top-5 error per epoch) and
``PeriodicWriter`` (console progress with ETA, ``metrics.json`` lines, TensorBoard).

Exact resume: each epoch's sample order comes from (SEED, epoch) and the global RNGs are re-seeded
from (SEED, epoch, rank) when the epoch starts, so a run resumed from the checkpoint of epoch k
sees the same data and augmentation as an uninterrupted one. Checkpoints also carry the RNG states.
"""

from __future__ import annotations

import logging
import os
import random
import time
from contextlib import nullcontext

from resnext_det.checkpoint import WeightsMismatchError, describe_mismatches, load_classifier_state_dict
from resnext_det.checkpoint.safe_checkpointer import SafeCheckpointer
from resnext_det.config import resnext_template_from_cfg
from resnext_det.engine.launch import check_device
from resnext_det.errors import diverged
from resnext_det.modeling import resnext

import numpy as np
import torch
from detectron2.engine import SimpleTrainer, create_ddp_model, hooks
from detectron2.solver import LRMultiplier
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter
from fvcore.common.param_scheduler import MultiStepParamScheduler
from torch.nn import functional as F

from .config import autocast_dtype, uses_channels_last
from .data import build_datasets, build_loader

__all__ = ["build_classifier", "load_classifier_weights", "evaluate", "train", "checkpoint_metadata"]

logger = logging.getLogger("pretrain")


def build_classifier(cfg) -> torch.nn.Module:
    check_device(cfg.MODEL.DEVICE)
    template = resnext_template_from_cfg(cfg)
    model = resnext(
        num_classes=cfg.MODEL.NUM_CLASSES,
        zero_init_residual=cfg.MODEL.RESNEXT.ZERO_INIT_RESIDUAL,
        **template,
    ).to(cfg.MODEL.DEVICE)
    if uses_channels_last(cfg):
        model = model.to(memory_format=torch.channels_last)
    return model


def load_classifier_weights(model: torch.nn.Module, path: str, source: str = "pretrain") -> None:
    """Load a classifier checkpoint strictly: every tensor present with the model's shape."""
    state_dict, _ = load_classifier_state_dict(path, source)
    problems = describe_mismatches(
        {k: tuple(v.shape) for k, v in model.state_dict().items()},
        {k: tuple(v.shape) for k, v in state_dict.items()},
    )
    if problems:
        raise WeightsMismatchError(f"{path} does not fit the classifier of this config: {problems}")
    model.load_state_dict(state_dict)


def checkpoint_metadata(cfg) -> dict:
    """Stored in every checkpoint: what the weights are and what input they expect."""
    return {
        "template": resnext_template_from_cfg(cfg),
        "num_classes": cfg.MODEL.NUM_CLASSES,
        "input": {"format": "RGB", "range": "0-1", "mean": list(cfg.INPUT.MEAN), "std": list(cfg.INPUT.STD)},
    }


class RNGState:
    """A checkpointable bundle of the Python, numpy and torch RNG states."""

    def state_dict(self) -> dict:
        return {
            "python": random.getstate(),
            "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
            "numpy_pos": np.random.get_state()[2],
            "torch": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        random.setstate(state["python"])
        np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"]))
        torch.set_rng_state(state["torch"])


def seed_epoch(cfg, epoch: int) -> None:
    """Augmentation randomness of an epoch depends only on (SEED, epoch, rank).

    Epoch -1 seeds the weight initialisation (the same on every rank)."""
    rank = comm.get_rank() if epoch >= 0 else 0
    seed = (cfg.SEED * 100_003 + (epoch + 1) * 1_009 + rank) % 2**31
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class EpochStream:
    """Endless (images, labels) batches, epoch after epoch, starting at ``start_epoch``."""

    def __init__(self, cfg, dataset):
        self.cfg, self.dataset = cfg, dataset
        self.start_epoch = 0

    def __iter__(self):
        epoch = self.start_epoch
        while True:
            seed_epoch(self.cfg, epoch)
            yield from build_loader(self.cfg, self.dataset, train=True, epoch=epoch)
            epoch += 1


class ClassificationTrainer(SimpleTrainer):
    """One SGD step on a batch: cross-entropy, optional autocast and channels_last."""

    def __init__(self, cfg, model, stream, optimizer):
        super().__init__(model, stream, optimizer)
        self.device = torch.device(cfg.MODEL.DEVICE)
        self.channels_last = uses_channels_last(cfg)
        self.amp_dtype = autocast_dtype(cfg)
        self.scaler = None
        if self.amp_dtype is torch.float16:
            self.scaler = torch.amp.GradScaler(self.device.type)

    def run_step(self):
        start = time.perf_counter()
        images, labels = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = labels.to(self.device, non_blocking=True)
        autocast = (
            torch.autocast(self.device.type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else nullcontext()
        )
        with autocast:
            logits = self.model(images)
        loss = F.cross_entropy(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        # before the update: a non-finite loss stops training with the weights still finite
        self._write_metrics({"loss_cls": loss.detach()}, data_time)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()


@torch.no_grad()
def evaluate(cfg, model, dataset) -> dict[str, float]:
    """Single-crop top-1 / top-5 error (%) over the whole val set, summed over processes."""
    model_was_training = model.training
    model.eval()
    correct1 = correct5 = total = 0
    channels_last = uses_channels_last(cfg)
    for images, labels in build_loader(cfg, dataset, train=False):
        images = images.to(cfg.MODEL.DEVICE)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        top5 = model(images).topk(min(5, cfg.MODEL.NUM_CLASSES), dim=1).indices.cpu()
        hits = top5 == labels.view(-1, 1)
        correct1 += int(hits[:, 0].sum())
        correct5 += int(hits.any(dim=1).sum())
        total += len(labels)
    counts = np.sum(comm.all_gather((correct1, correct5, total)), axis=0)
    model.train(model_was_training)
    return {
        "top1_err": float(100 * (1 - counts[0] / counts[2])),
        "top5_err": float(100 * (1 - counts[1] / counts[2])),
    }


class MetadataCheckpointer(SafeCheckpointer):
    """The atomic, weights-only ``SafeCheckpointer`` that stores ``checkpoint_metadata`` and the
    number of completed epochs in every file."""

    def __init__(self, model, save_dir, metadata, iters_per_epoch, **checkpointables):
        super().__init__(model, save_dir, save_to_disk=comm.is_main_process(), **checkpointables)
        self.metadata, self.iters_per_epoch = metadata, iters_per_epoch

    def save(self, name: str, **kwargs) -> None:
        if "iteration" in kwargs:
            kwargs["epoch"] = (kwargs["iteration"] + 1) // self.iters_per_epoch
        super().save(name, resnext_det=self.metadata, **kwargs)


class EpochLogger(hooks.HookBase):
    """A line per epoch: images/s, and the latest validation error."""

    def __init__(self, iters_per_epoch: int, images_per_iter: int):
        self.iters_per_epoch, self.images_per_iter = iters_per_epoch, images_per_iter

    def before_step(self):
        if self.trainer.iter % self.iters_per_epoch == 0:
            self._epoch_start = time.perf_counter()

    def after_step(self):
        if (self.trainer.iter + 1) % self.iters_per_epoch:
            return
        seconds = time.perf_counter() - self._epoch_start
        epoch = (self.trainer.iter + 1) // self.iters_per_epoch
        self.trainer.storage.put_scalar("images_per_s", self.iters_per_epoch * self.images_per_iter / seconds)
        logger.info(
            "epoch %d done in %.1fs (%.1f images/s)",
            epoch,
            seconds,
            self.iters_per_epoch * self.images_per_iter / seconds,
        )


def train(cfg, resume: bool = False) -> dict[str, float]:
    """Train (or continue, with ``resume``) and return the final validation errors."""
    datasets = build_datasets(cfg)
    if comm.is_main_process():
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    iters_per_epoch = len(datasets["train"]) // cfg.SOLVER.IMS_PER_BATCH
    if iters_per_epoch == 0:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH} is larger than the training set "
            f"({len(datasets['train'])} images in {cfg.DATA.ROOT}/{cfg.DATA.TRAIN_SPLIT})"
        )
    max_iter = iters_per_epoch * cfg.SOLVER.EPOCHS
    lr = cfg.SOLVER.BASE_LR * cfg.SOLVER.IMS_PER_BATCH / cfg.SOLVER.REFERENCE_BATCH

    seed_epoch(cfg, -1)
    model = build_classifier(cfg)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=lr,
        momentum=cfg.SOLVER.MOMENTUM,
        nesterov=cfg.SOLVER.NESTEROV,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
    )
    steps = [s for s in cfg.SOLVER.STEPS if s < cfg.SOLVER.EPOCHS]
    scheduler = LRMultiplier(
        optimizer,
        MultiStepParamScheduler(
            values=[cfg.SOLVER.GAMMA**k for k in range(len(steps) + 1)],
            milestones=[s * iters_per_epoch for s in steps],
            num_updates=max_iter,
        ),
        max_iter,
    )
    stream = EpochStream(cfg, datasets["train"])
    trainer = ClassificationTrainer(cfg, create_ddp_model(model, broadcast_buffers=False), stream, optimizer)
    checkpointer = MetadataCheckpointer(
        model,
        cfg.OUTPUT_DIR,
        checkpoint_metadata(cfg),
        iters_per_epoch,
        optimizer=optimizer,
        scheduler=scheduler,
        rng=RNGState(),
    )
    start_iter = checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=resume).get("iteration", -1) + 1
    if start_iter % iters_per_epoch:
        raise RuntimeError(f"checkpoint at iteration {start_iter - 1} is not at an epoch boundary")
    stream.start_epoch = start_iter // iters_per_epoch
    logger.info(
        "ImageNet recipe: %d epochs x %d iterations, total batch %d over %d process(es), lr %.4g "
        "(BASE_LR %.4g x %d/%d), steps at epochs %s; starting at epoch %d",
        cfg.SOLVER.EPOCHS,
        iters_per_epoch,
        cfg.SOLVER.IMS_PER_BATCH,
        comm.get_world_size(),
        lr,
        cfg.SOLVER.BASE_LR,
        cfg.SOLVER.IMS_PER_BATCH,
        cfg.SOLVER.REFERENCE_BATCH,
        steps,
        stream.start_epoch,
    )

    last = {}

    def evaluate_and_remember():
        last.update(evaluate(cfg, model, datasets["val"]))
        logger.info("validation: top-1 error %.2f%%, top-5 error %.2f%%", last["top1_err"], last["top5_err"])
        return last

    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(optimizer, scheduler),
            EpochLogger(iters_per_epoch, cfg.SOLVER.IMS_PER_BATCH),
            hooks.EvalHook(iters_per_epoch, evaluate_and_remember),
            hooks.PeriodicCheckpointer(checkpointer, iters_per_epoch, max_iter=max_iter),
            *(
                [
                    hooks.PeriodicWriter(
                        [
                            CommonMetricPrinter(max_iter),
                            JSONWriter(os.path.join(cfg.OUTPUT_DIR, "metrics.json")),
                            TensorboardXWriter(cfg.OUTPUT_DIR),
                        ],
                        period=cfg.LOG_PERIOD,
                    )
                ]
                if comm.is_main_process()
                else []
            ),
        ]
    )
    try:
        trainer.train(start_iter, max_iter)
    except FloatingPointError as e:
        raise diverged(e, trainer.iter, checkpointer.get_checkpoint_file()) from None
    return last
