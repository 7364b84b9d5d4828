"""Looking at a run while it trains: the loss on DATASETS.TEST, and the best checkpoint.

``ValidationLoss`` (``TEST.VAL_LOSS_PERIOD``): every N iterations, and after the last, the mean of
each training loss over every image of DATASETS.TEST, logged as ``validation/<loss>`` (so
``metrics.json``, TensorBoard and ``tools/plot_metrics.py`` show it beside the training loss).
The model computes losses only in training mode, so the pass runs in training mode without
gradients, with three guards that keep the run exactly what it would have been without it:

* batch norms are switched to eval mode for the pass (their running statistics are not moved);
* the pass draws from a forked RNG (anchor and RoI sampling use torch's generator);
* the heads' own logging (``rpn/num_pos_anchors``, ``fast_rcnn/cls_accuracy``) goes to a
  throw-away event storage, not to the training's.

Images are the test set at the test size (no flip) with their annotations, and for a Fast R-CNN
its stage-1 proposals, as in training. With several processes each takes a shard and the sums
are gathered.

``BestCheckpoint`` (``TEST.BEST_METRIC``): detectron2's ``BestCheckpointer`` after each
evaluation, writing ``model_best.pth`` through the project's atomic checkpointer without
re-tagging ``last_checkpoint``, and remembering the best value inside the file, so that a
``--resume`` continues from it instead of overwriting the best with the first value it sees.
"""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict

import torch
from detectron2.data import DatasetMapper, build_detection_test_loader, get_detection_dataset_dicts
from detectron2.data import transforms as T
from detectron2.engine.hooks import BestCheckpointer, HookBase
from detectron2.utils import comm
from detectron2.utils.events import EventStorage
from torch import nn

from ..checkpoint.safe_checkpointer import read_checkpoint_file
from ..data.checked_mapper import ImageCheckingMapper
from ..proposals.mapper import ProposalLookupMapper

__all__ = [
    "BestCheckpoint",
    "ValidationLoss",
    "best_metric",
    "build_validation_loader",
    "metric_and_mode",
    "run_validation_hooks",
    "validation_hooks",
]

logger = logging.getLogger("resnext_det")


def build_validation_loader(cfg, dataset_name: str):
    """DATASETS.TEST's ``dataset_name`` with annotations (and proposals), at the test size."""
    test_resize = [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)]
    settings = {**DatasetMapper.from_config(cfg, is_train=True), "augmentations": test_resize}
    mapper = DatasetMapper(**settings)
    proposal_files = None
    if cfg.MODEL.LOAD_PROPOSALS and cfg.PROPOSALS.STORE_DIR:
        mapper = ProposalLookupMapper(mapper, cfg.PROPOSALS.STORE_DIR, [dataset_name])
    elif cfg.MODEL.LOAD_PROPOSALS:
        index = list(cfg.DATASETS.TEST).index(dataset_name)
        proposal_files = [cfg.DATASETS.PROPOSAL_FILES_TEST[index]]
    dicts = get_detection_dataset_dicts([dataset_name], filter_empty=False, proposal_files=proposal_files)
    return build_detection_test_loader(
        dicts, mapper=ImageCheckingMapper(mapper), num_workers=cfg.DATALOADER.NUM_WORKERS
    )


class ValidationLoss(HookBase):
    """See the module docstring. ``loaders``: {dataset name: loader} of ``build_validation_loader``."""

    def __init__(self, period: int, model: nn.Module, loaders: dict):
        self.period, self.model, self.loaders = period, model, loaders

    def _losses(self) -> dict[str, float]:
        model = getattr(self.model, "module", self.model)  # no DDP synchronisation for this pass
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
        sums: dict[str, float] = defaultdict(float)
        count = 0
        try:
            for norm in norms:
                norm.eval()
            with torch.no_grad(), torch.random.fork_rng(devices=[]), EventStorage(self.trainer.iter):
                for loader in self.loaders.values():
                    for batch in loader:
                        losses = model(batch)
                        for name, value in losses.items():
                            sums[name] += float(value) * len(batch)
                        sums["total_loss"] += float(sum(losses.values())) * len(batch)
                        count += len(batch)
        finally:
            for norm in norms:
                norm.train()
        totals: dict[str, float] = defaultdict(float)
        images = 0
        for part, part_count in comm.all_gather((dict(sums), count)):
            images += part_count
            for name, value in part.items():
                totals[name] += value
        return {f"validation/{name}": value / max(images, 1) for name, value in totals.items()}

    def _validate(self):
        values = self._losses()
        self.trainer.storage.put_scalars(**values, smoothing_hint=False)
        shown = ", ".join(f"{k.split('/', 1)[1]} {v:.4f}" for k, v in sorted(values.items()))
        logger.info("validation loss at iteration %d: %s", self.trainer.iter + 1, shown)

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if next_iter % self.period == 0 or next_iter == self.trainer.max_iter:
            self._validate()


def best_metric(cfg) -> tuple[str, str]:
    """(metric key, "max" or "min") of ``TEST.BEST_METRIC`` (``metric_and_mode``)."""
    return metric_and_mode(cfg.TEST.BEST_METRIC, cfg.MODEL.META_ARCHITECTURE == "ProposalNetwork")


def metric_and_mode(name: str, proposal_network: bool) -> tuple[str, str]:
    """(metric key, "max" or "min"): by default ``bbox/AP`` for a detector with a box head,
    ``box_proposals/AR@100`` for an RPN alone; a loss is minimised."""
    if not name:
        name = "box_proposals/AR@100" if proposal_network else "bbox/AP"
    mode = "min" if "loss" in name.split("/")[-1] else "max"
    return name, mode


class BestCheckpoint(BestCheckpointer):
    """detectron2's ``BestCheckpointer`` (its periods, metric and mode) whose check writes
    ``model_best.pth`` untagged and with the best value inside, read back by ``before_train``."""

    FILE = "model_best"

    def __init__(self, period: int, checkpointer, metric: str, mode: str):
        super().__init__(period, checkpointer, metric, mode, file_prefix=self.FILE)

    def before_train(self):
        path = os.path.join(self._checkpointer.save_dir, self.FILE + ".pth")
        if os.path.isfile(path):
            saved = read_checkpoint_file(path).get("best") or {}
            if saved.get("metric") == self._val_metric:
                self.best_metric, self.best_iter = saved["value"], saved["iteration"]
                logger.info("%s: best %s so far %.4f at iteration %d", path, self._val_metric,
                            self.best_metric, self.best_iter)  # fmt: skip

    def _best_checking(self):
        latest = self.trainer.storage.latest().get(self._val_metric)
        if latest is None:
            logger.warning(
                "TEST.BEST_METRIC %s was not computed; no model_best.pth written", self._val_metric
            )
            return
        value, iteration = latest
        if not math.isfinite(value) or (
            self.best_metric is not None and not self._compare(value, self.best_metric)
        ):
            return
        self.best_metric, self.best_iter = float(value), int(iteration)
        record = {"metric": self._val_metric, "value": self.best_metric, "iteration": self.best_iter}
        self._checkpointer.save(self.FILE, tag=False, iteration=self.best_iter, best=record)
        logger.info(
            "new best %s %.4f at iteration %d: wrote %s.pth", self._val_metric, value, iteration, self.FILE
        )


def validation_hooks(cfg, model, checkpointer) -> list[HookBase]:
    """The hooks of ``TEST.VAL_LOSS_PERIOD`` and ``TEST.BEST_METRIC`` for a YAML config's run."""
    return run_validation_hooks(
        model,
        checkpointer,
        test_sets=list(cfg.DATASETS.TEST),
        validation_loader=lambda name: build_validation_loader(cfg, name),
        val_loss_period=cfg.TEST.VAL_LOSS_PERIOD,
        best=best_metric(cfg),
        eval_period=cfg.TEST.EVAL_PERIOD,
    )


def run_validation_hooks(
    model, checkpointer, *, test_sets, validation_loader, val_loss_period: int, best, eval_period: int
) -> list[HookBase]:
    """The validation loss every ``val_loss_period`` iterations (0: none) on each of
    ``test_sets`` (``validation_loader(name)``), then the best checkpoint by ``best`` (metric,
    mode), which may be chosen by that loss; the same for a YAML and a LazyConfig run."""
    hooks: list[HookBase] = []
    if val_loss_period > 0 and test_sets:
        loaders = {name: validation_loader(name) for name in test_sets}
        hooks.append(ValidationLoss(val_loss_period, model, loaders))
    metric, mode = best
    period = val_loss_period if metric.startswith("validation/") else eval_period
    if test_sets:
        hooks.append(BestCheckpoint(period, checkpointer, metric, mode))
    return hooks
