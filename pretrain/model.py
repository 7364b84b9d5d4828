"""The classifier that pretraining trains (the ResNeXt trunk + pool + fc), and its weights.

``build_classifier`` reads the ``MODEL.RESNEXT`` template; ``checkpoint_metadata`` is what every
checkpoint records about it, so that ``tools/convert_weights.py`` and the detection configs can
check the weights they are given.
"""

from __future__ import annotations

from resnext_det.checkpoint import classifier_weights_source, describe_mismatches, load_classifier_state_dict
from resnext_det.config import resnext_template_from_cfg
from resnext_det.engine.launch import check_device
from resnext_det.errors import WeightsMismatchError
from resnext_det.layers.norms import resolve_norm
from resnext_det.modeling import resnext

import torch

from .config import uses_channels_last

__all__ = ["build_classifier", "checkpoint_metadata", "load_classifier_weights"]


def build_classifier(cfg, network=resnext, template_from_cfg=resnext_template_from_cfg) -> torch.nn.Module:
    """``network(num_classes, zero_init_residual, **template_from_cfg(cfg).asdict())`` on ``MODEL.DEVICE``,
    in the memory format of ``SOLVER.MEMORY_FORMAT`` (the CIFAR network: ``pretrain.cifar``)."""
    check_device(cfg.MODEL.DEVICE)
    template = template_from_cfg(cfg)
    template = template.replace(norm=resolve_norm(template.norm, cfg.MODEL.DEVICE))
    model = network(
        num_classes=cfg.MODEL.NUM_CLASSES,
        zero_init_residual=cfg.MODEL.RESNEXT.ZERO_INIT_RESIDUAL,
        **template.asdict(),
    ).to(cfg.MODEL.DEVICE)
    if uses_channels_last(cfg):
        model = model.to(memory_format=torch.channels_last)
    return model


def load_classifier_weights(model: torch.nn.Module, path: str, source: str | None = None) -> None:
    """Load a classifier checkpoint strictly: every tensor present with the model's shape. The
    ``source`` (default: read from the file) may be this project's checkpoint, torchvision / timm
    weights or the paper's Torch7 model (``classifier_weights_source``)."""
    state_dict, _ = load_classifier_state_dict(path, source or classifier_weights_source(path))
    # Torch7's batch norms count no batches: the counter is bookkeeping, not a weight
    counters = {k: v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")}
    state_dict = {**counters, **state_dict}
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
        "template": resnext_template_from_cfg(cfg).asdict(),
        "num_classes": cfg.MODEL.NUM_CLASSES,
        "input": {"format": "RGB", "range": "0-1", "mean": list(cfg.INPUT.MEAN), "std": list(cfg.INPUT.STD)},
    }
