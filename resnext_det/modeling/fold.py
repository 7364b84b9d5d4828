"""Fold frozen batch norms into the convolutions before them: the same function, fewer passes.

A detector fine-tuned the paper's way keeps BN frozen (``FrozenBN``): at inference, and during
training too, each norm is a fixed per-channel affine map ``y = a * x + b`` after a
convolution. ``conv -> y = a * (W * x) + b`` equals one convolution with weights ``a * W`` and
bias ``b``, which saves a full read and write of every activation map. Only for inference: the
folded convolution has a bias where the checkpoint has a norm, so fold after loading weights and
never train or save the folded model. (Training gets the same saving without rewriting anything
from ``frozen_bn_conv.FrozenBNConv2d``, which scales the weights at every call; folding once
also saves that small per-call cost.)
"""

from __future__ import annotations

import torch
from detectron2.layers import FrozenBatchNorm2d
from torch import nn

from .frozen_bn_conv import folded_weight_and_bias

__all__ = ["fold_frozen_batchnorm"]


@torch.no_grad()
def fold_frozen_batchnorm(model: nn.Module) -> int:
    """Fold every ``FrozenBatchNorm2d`` that is a convolution's ``.norm`` (detectron2's ``Conv2d``)
    into that convolution, in place; return how many were folded."""
    folded = 0
    for module in model.modules():
        norm = getattr(module, "norm", None)
        if not isinstance(module, nn.Conv2d) or not isinstance(norm, FrozenBatchNorm2d):
            continue
        weight, bias = folded_weight_and_bias(module)
        module.weight.copy_(weight)
        module.bias = nn.Parameter(bias, requires_grad=False)
        module.norm = None
        folded += 1
    return folded
