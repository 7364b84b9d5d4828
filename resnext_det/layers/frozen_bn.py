"""Frozen batch norms folded into the convolutions before them: in training, and once for inference.

The paper fine-tunes detectors with BN frozen (``FrozenBN``): each norm is a fixed per-channel
affine map ``y = a * x + b`` after a convolution. detectron2's ``Conv2d`` runs it as a separate
step, and while gradients are needed ``FrozenBatchNorm2d`` computes ``x * a + b`` as two
out-of-place passes over the activation map, plus one more pass for the gradient. But
``a * (W * x) + b`` is one convolution with weights ``a * W`` and bias ``b``: scaling the weights
costs one pass over the (small) weight tensor, and the convolution adds the bias while it writes
its output. The gradient reaching ``W`` is the same, only rounded differently, because autograd
differentiates through the scaling.

In training (``FrozenBNConv2d``) nothing is rewritten: the module keeps ``weight`` and ``norm``
exactly as detectron2's ``Conv2d`` does, so checkpoints, ``freeze()`` (which swaps BN for
FrozenBN later) and weight loading are unchanged. Any other norm (BN, SyncBN, GN) runs the
ordinary way.

For inference, ``fold_frozen_batchnorm`` rewrites a model once: each such convolution gets the
folded weights and a bias, and its norm is dropped, which also saves the small per-call scaling.
Only after loading weights: the folded convolution has a bias where the checkpoint has a norm,
so never train or save the folded model.
"""

from __future__ import annotations

import torch
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from torch import nn
from torch.nn import functional as F

__all__ = [
    "FrozenBNConv2d",
    "conv_with_frozen_bn",
    "fold_frozen_batchnorm",
    "folded_weight_and_bias",
    "frozen_bn_affine",
]


def frozen_bn_affine(norm: FrozenBatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel ``(scale, shift)`` with ``norm(x) == x * scale + shift``."""
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
    return scale, norm.bias - norm.running_mean * scale


def folded_weight_and_bias(conv: Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The weights and bias of one convolution equal to ``conv`` followed by its
    ``FrozenBatchNorm2d`` norm; differentiable with respect to ``conv.weight``."""
    scale, shift = frozen_bn_affine(conv.norm)
    weight = conv.weight * scale.to(conv.weight.dtype).view(-1, 1, 1, 1)
    bias = shift if conv.bias is None else conv.bias * scale + shift
    return weight, bias.to(conv.weight.dtype)


def conv_with_frozen_bn(conv: Conv2d, x: torch.Tensor) -> torch.Tensor:
    """What detectron2's ``conv(x)`` computes, with a ``FrozenBatchNorm2d`` norm folded on the fly.

    Without a norm (folded for inference) it is the plain convolution: detectron2's
    ``Conv2d.forward`` would only add its empty-batch check, a branch on ``x.numel()`` that
    ``torch.export`` cannot trace when the batch is the RoI count.
    """
    if conv.norm is None:
        x = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        return x if conv.activation is None else conv.activation(x)
    if not isinstance(conv.norm, FrozenBatchNorm2d):
        return Conv2d.forward(conv, x)
    weight, bias = folded_weight_and_bias(conv)
    x = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return x if conv.activation is None else conv.activation(x)


class FrozenBNConv2d(Conv2d):
    """detectron2's ``Conv2d`` (same arguments, parameters and state dict) that folds a
    ``FrozenBatchNorm2d`` norm into the convolution at every call; see the module docstring."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_with_frozen_bn(self, x)


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
