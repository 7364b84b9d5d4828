"""The Sec. 4 optimiser and learning-rate schedule (fb.resnet.torch's), in iterations.

SGD with Nesterov momentum and weight decay at ``BASE_LR x IMS_PER_BATCH / REFERENCE_BATCH``;
the rate is divided by ``GAMMA`` at the start of each epoch in ``SOLVER.STEPS``, as detectron2's
``LRMultiplier`` over fvcore's ``MultiStepParamScheduler``.
"""

from __future__ import annotations

import torch
from detectron2.solver import LRMultiplier
from fvcore.common.param_scheduler import MultiStepParamScheduler

__all__ = ["build_lr_scheduler", "build_optimizer", "learning_rate", "lr_steps"]


def learning_rate(cfg) -> float:
    """The linear scaling rule: ``BASE_LR`` is the rate of a batch of ``REFERENCE_BATCH``."""
    return cfg.SOLVER.BASE_LR * cfg.SOLVER.IMS_PER_BATCH / cfg.SOLVER.REFERENCE_BATCH


def lr_steps(cfg) -> list[int]:
    """The epochs of ``SOLVER.STEPS`` that fall inside the schedule."""
    return [s for s in cfg.SOLVER.STEPS if s < cfg.SOLVER.EPOCHS]


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        model.parameters(),
        lr=learning_rate(cfg),
        momentum=cfg.SOLVER.MOMENTUM,
        nesterov=cfg.SOLVER.NESTEROV,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
    )


def build_lr_scheduler(cfg, optimizer: torch.optim.Optimizer, iters_per_epoch: int) -> LRMultiplier:
    max_iter = iters_per_epoch * cfg.SOLVER.EPOCHS
    steps = lr_steps(cfg)
    return LRMultiplier(
        optimizer,
        MultiStepParamScheduler(
            values=[cfg.SOLVER.GAMMA**k for k in range(len(steps) + 1)],
            milestones=[s * iters_per_epoch for s in steps],
            num_updates=max_iter,
        ),
        max_iter,
    )
