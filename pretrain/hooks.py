"""What runs around each pretraining step: the training step itself, the epoch-by-epoch data
stream with its seeds, the per-epoch log line, and the checkpointer that records the template.

Exact resume: each epoch's sample order comes from (SEED, epoch) and the global RNGs are re-seeded
from (SEED, epoch, rank) when the epoch starts, so a run resumed from the checkpoint of epoch k
sees the same data and augmentation as an uninterrupted one.
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext

from resnext_det.checkpoint.safe_checkpointer import SafeCheckpointer
from resnext_det.engine.trainer import SafeSteps
from resnext_det.seeding import mix_seed, seed_all

import torch
from detectron2.engine import SimpleTrainer, hooks
from detectron2.utils import comm
from torch.nn import functional as F

from .config import autocast_dtype, uses_channels_last
from .data import build_loader

__all__ = [
    "ClassificationStep",
    "ClassificationTrainer",
    "EpochLogger",
    "EpochStream",
    "MetadataCheckpointer",
    "seed_epoch",
]

logger = logging.getLogger("pretrain")


def seed_epoch(cfg, epoch: int) -> None:
    """Augmentation randomness of an epoch depends only on (SEED, epoch, rank).

    Epoch -1 seeds the weight initialisation (the same on every rank)."""
    rank = comm.get_rank() if epoch >= 0 else 0
    seed_all(mix_seed(cfg.SEED, epoch + 1, rank))


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


class ClassificationStep(SimpleTrainer):
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


class ClassificationTrainer(SafeSteps, ClassificationStep):
    """``ClassificationStep`` in the project's one engine (``resnext_det.engine.trainer``): a
    non-finite loss stops the run, naming the last good checkpoint."""


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
