"""ImageNet classification training and evaluation on detectron2's trainer, hooks and checkpointer.

``train(cfg, resume)`` runs the Sec. 4 recipe epoch by epoch: detectron2's ``SimpleTrainer`` loop
(iteration counter, metric reduction across processes), its ``LRScheduler``,
``PeriodicCheckpointer`` (one checkpoint per epoch), ``EvalHook`` (top-1/top-5 error per epoch) and
``PeriodicWriter`` (console progress with ETA, ``metrics.json`` lines, TensorBoard). The pieces
live beside it: ``model`` (the classifier and its weights), ``schedule`` (optimiser and learning
rate), ``hooks`` (the step, the seeded epoch stream, the log line, the checkpointer).
Checkpoints also carry the RNG states (``resnext_det.seeding.RNGState``).
"""

from __future__ import annotations

import logging
import os

from resnext_det.atomic_files import atomic_write_text
from resnext_det.engine.trainer import wrap_for_processes
from resnext_det.errors import ConfigError
from resnext_det.seeding import RNGState

import numpy as np
import torch
from detectron2.engine import hooks
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter

from .config import uses_channels_last
from .data import build_datasets, build_loader
from .hooks import ClassificationTrainer, EpochLogger, EpochStream, MetadataCheckpointer, seed_epoch
from .model import build_classifier, checkpoint_metadata, load_classifier_weights
from .schedule import build_lr_scheduler, build_optimizer, learning_rate, lr_steps

__all__ = ["build_classifier", "load_classifier_weights", "evaluate", "train", "checkpoint_metadata"]

logger = logging.getLogger("pretrain")


@torch.no_grad()
def evaluate(cfg, model, dataset) -> dict[str, float]:
    """Single-crop top-1 / top-5 error (%) over the whole val set, summed over processes."""
    model_was_training = model.training
    model.eval()
    correct1 = correct5 = total = 0
    channels_last = uses_channels_last(cfg)
    subset = getattr(dataset, "logit_indices", None)  # TEST.CLASS_SUBSET: only these classes compete
    for images, labels in build_loader(cfg, dataset, train=False):
        images = images.to(cfg.MODEL.DEVICE)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        logits = model(images)
        if subset is not None:
            logits = logits[:, torch.as_tensor(subset, device=logits.device)]
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices.cpu()
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


def train(cfg, resume: bool = False, *, datasets=None, build_model=None, metadata=None) -> dict[str, float]:
    """Train (or continue, with ``resume``) and return the final validation errors.

    ImageNet by default; another task passes its ``datasets`` ({"train", "val"}), its
    ``build_model(cfg)`` and the ``metadata`` its checkpoints record (``tools/train_cifar.py``)."""
    datasets = datasets if datasets is not None else build_datasets(cfg)
    if comm.is_main_process():
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        classes = getattr(datasets["train"], "classes", None)
        if classes:  # the model's classes in index order (TEST.CLASS_SUBSET reads it)
            atomic_write_text(os.path.join(cfg.OUTPUT_DIR, "classes.txt"), "".join(f"{c}\n" for c in classes))
    iters_per_epoch = len(datasets["train"]) // cfg.SOLVER.IMS_PER_BATCH
    if iters_per_epoch == 0:
        raise ConfigError(
            f"SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH} is larger than the training set "
            f"({len(datasets['train'])} images in {cfg.DATA.ROOT}/{cfg.DATA.TRAIN_SPLIT})"
        )
    max_iter = iters_per_epoch * cfg.SOLVER.EPOCHS
    lr, steps = learning_rate(cfg), lr_steps(cfg)

    seed_epoch(cfg, -1)
    model = (build_model or build_classifier)(cfg)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer, iters_per_epoch)
    stream = EpochStream(cfg, datasets["train"])
    ddp_model = wrap_for_processes(model, broadcast_buffers=False)
    trainer = ClassificationTrainer(cfg, ddp_model, stream, optimizer)
    checkpointer = MetadataCheckpointer(
        model,
        cfg.OUTPUT_DIR,
        metadata if metadata is not None else checkpoint_metadata(cfg),
        iters_per_epoch,
        optimizer=optimizer,
        scheduler=scheduler,
        rng=RNGState(),
    )
    trainer.checkpointer = checkpointer  # the divergence stop names its newest file
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
    trainer.train(start_iter, max_iter)
    return last
