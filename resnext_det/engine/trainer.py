"""The one training engine: detectron2's ``SimpleTrainer`` / ``AMPTrainer`` and hooks, with this
project's safety added once, for every run (a YAML or LazyConfig detector, the ImageNet classifier).

A run is described by its parts (``RunParts``: model, optimizer, loader, schedule, evaluation,
periods), which ``engine.defaults.trainer_from_yaml`` reads from a YAML config and
``engine.lazy_train.trainer_from_lazy`` from a LazyConfig; ``assemble_trainer`` turns them
into a trainer with detectron2's hooks in detectron2's order. What the project adds to
detectron2's trainer (``SafeSteps``):

* a non-finite loss stops the run with ``TrainingDivergedError`` (iteration, losses, the last good
  checkpoint), before the optimizer applies that step;
* the resumable stream's seed travels in every checkpoint, and the model's own random draws are
  seeded per iteration (``SeedEachIteration``), so ``--resume`` continues exactly;
* weights that do not fit the model are refused (no partial load), and ``--resume`` takes the
  newest complete checkpoint (``SafeDetectionCheckpointer``: atomic, never diverged);
* several processes on CPUs: detectron2's ``create_ddp_model`` asks DDP for GPU ids, which a CPU
  module refuses; ``wrap_for_processes`` passes none for a CPU model. This is the project's own
  code path: detectron2's function is left as it is for everyone else.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from detectron2.engine import AMPTrainer, SimpleTrainer, TrainerBase, hooks
from detectron2.engine.defaults import create_ddp_model, default_writers
from detectron2.utils import comm

from ..checkpoint import check_weights_file_fits
from ..checkpoint.safe_checkpointer import SafeDetectionCheckpointer
from ..data.train_stream import ResumableTrainLoader
from ..errors import diverged
from ..seeding import mix_seed, seed_all

__all__ = [
    "ResNeXtAMPTrainer",
    "ResNeXtTrainer",
    "RunParts",
    "SafeSteps",
    "SeedEachIteration",
    "assemble_trainer",
    "wrap_for_processes",
]

logger = logging.getLogger("resnext_det")


def wrap_for_processes(model: torch.nn.Module, **ddp_kwargs) -> torch.nn.Module:
    """detectron2's ``create_ddp_model`` (the model itself in one process), with no device ids
    for a model on the CPU: detectron2 passes ``[local_rank]``, which DDP rejects for a CPU module."""
    first = next(model.parameters(), None)
    if comm.get_world_size() > 1 and first is not None and first.device.type == "cpu":
        ddp_kwargs.setdefault("device_ids", None)
    return create_ddp_model(model, **ddp_kwargs)


class SeedEachIteration(hooks.HookBase):
    """The model's own random draws (the RPN's and ROI heads' sampling of anchors and proposals)
    come from generators seeded by (stream seed, iteration, rank) before each step, so they repeat
    after ``--resume`` too."""

    def before_step(self):
        seed_all(mix_seed(self.trainer.stream_seed, self.trainer.iter, comm.get_rank(), 1))


class SafeSteps:
    """What this project adds to a detectron2 trainer (put it first among the bases): the
    divergence stop, the stream seed in the checkpoint, and a resume that refuses misfit weights.

    ``checkpointer``, ``weights`` (the file a fresh run starts from), ``max_iter`` and ``seed``
    (for the model's sampling when the loader is not resumable) are set by ``assemble_trainer``;
    ``last_results`` holds the latest evaluation."""

    checkpointer: SafeDetectionCheckpointer | None = None
    weights: str = ""
    seed: int = 0
    start_iter: int = 0
    max_iter: int = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.last_results: dict = {}

    @property
    def stream_seed(self) -> int:
        loader = self.data_loader
        return loader.stream.seed if isinstance(loader, ResumableTrainLoader) else self.seed

    def resume_or_load(self, resume: bool = True) -> None:
        """The newest complete checkpoint of the output folder with ``resume``, else ``weights``
        (checked to fit the model first); the run then starts after the checkpoint's iteration."""
        resuming = resume and self.checkpointer.has_checkpoint()
        if not resuming:
            check_weights_file_fits(self.checkpointer.model, self.weights)
        self.checkpointer.resume_or_load(self.weights, resume=resume)
        self.start_iter = self.iter + 1 if resuming else 0
        if isinstance(self.data_loader, ResumableTrainLoader):
            self.data_loader.start_iter = self.start_iter

    def train(self, start_iter: int | None = None, max_iter: int | None = None) -> dict:
        """Train from ``start_iter`` (``resume_or_load``'s) to ``max_iter``; the last evaluation."""
        start_iter = self.start_iter if start_iter is None else start_iter
        super().train(start_iter, self.max_iter if max_iter is None else max_iter)
        return self.last_results

    def run_step(self):
        try:
            super().run_step()
        except FloatingPointError as e:
            last = self.checkpointer.get_checkpoint_file() if self.checkpointer is not None else ""
            raise diverged(e, self.iter, last) from None

    def state_dict(self):
        state = super().state_dict()  # iteration, hooks, the optimizer (and AMP's grad scaler)
        if isinstance(self.data_loader, ResumableTrainLoader):
            state["stream_seed"] = self.data_loader.stream.seed
        return state

    def load_state_dict(self, state):
        # checkpoints of the earlier DefaultTrainer-based runs nest the optimizer in "_trainer"
        state = {**state, **state.get("_trainer", {})}
        if "optimizer" in state:
            super().load_state_dict(state)
        else:  # detectron2 0.6's DefaultTrainer wrote no optimizer state
            TrainerBase.load_state_dict(self, state)
            logger.warning(
                "the checkpoint has no optimizer state (written by detectron2 0.6's DefaultTrainer?): "
                "resuming at iteration %d with the optimizer's momentum starting from zero",
                self.iter,
            )
        if isinstance(self.data_loader, ResumableTrainLoader) and "stream_seed" in state:
            self.data_loader.stream.seed = int(state["stream_seed"])


class ResNeXtTrainer(SafeSteps, SimpleTrainer):
    """detectron2's ``SimpleTrainer`` with ``SafeSteps``."""


class ResNeXtAMPTrainer(SafeSteps, AMPTrainer):
    """detectron2's ``AMPTrainer`` with ``SafeSteps``."""


@dataclass
class RunParts:
    """Everything a training run is made of, whichever config described it.

    ``checkpointing`` holds ``PeriodicCheckpointer``'s arguments (``period``, ``max_to_keep``);
    ``evaluate()`` returns {dataset: results} or detectron2's un-nested results of one dataset;
    ``hooks_after_eval(checkpointer)`` adds hooks right after the evaluation (the validation loss
    and the best checkpoint read it); ``precise_bn`` is detectron2's hook where the config asks."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    train_loader: object
    lr_scheduler: object
    max_iter: int
    output_dir: str
    weights: str
    checkpointing: dict
    eval_period: int
    evaluate: Callable[[], dict]
    seed: int = 0
    amp: bool = False
    ddp: dict = field(default_factory=dict)
    log_period: int = 20
    precise_bn: Callable[[], hooks.HookBase | None] | None = None
    hooks_after_eval: Callable[[SafeDetectionCheckpointer], list[hooks.HookBase]] | None = None


def assemble_trainer(parts: RunParts) -> ResNeXtTrainer | ResNeXtAMPTrainer:
    """The trainer of ``parts`` with detectron2's hooks in ``DefaultTrainer``'s order (seeding
    first, this project's validation hooks right after the evaluation). Then ``resume_or_load``
    and ``train()``."""
    model = parts.model
    trainer_class = ResNeXtAMPTrainer if parts.amp else ResNeXtTrainer
    trainer = trainer_class(wrap_for_processes(model, **parts.ddp), parts.train_loader, parts.optimizer)
    trainer.checkpointer = SafeDetectionCheckpointer(model, parts.output_dir, trainer=weakref.proxy(trainer))
    trainer.weights, trainer.max_iter, trainer.seed = parts.weights, parts.max_iter, parts.seed

    def evaluate_and_keep():
        trainer.last_results = parts.evaluate()
        return trainer.last_results

    main = comm.is_main_process()
    trainer.register_hooks(
        [
            SeedEachIteration(),
            hooks.IterationTimer(),
            hooks.LRScheduler(parts.optimizer, parts.lr_scheduler),
            parts.precise_bn() if parts.precise_bn is not None else None,
            hooks.PeriodicCheckpointer(trainer.checkpointer, **parts.checkpointing) if main else None,
            hooks.EvalHook(parts.eval_period, evaluate_and_keep),
            *(parts.hooks_after_eval(trainer.checkpointer) if parts.hooks_after_eval else []),
            hooks.PeriodicWriter(default_writers(parts.output_dir, parts.max_iter), period=parts.log_period)
            if main
            else None,
        ]
    )
    return trainer
