"""Model complexity as the paper counts it (Sec. 3.3, Tables 1, 2, 5).

FLOPs are multiply-adds (one multiply-add = one FLOP), counted by fvcore's tracer at 224x224,
which is the paper's convention. The "template" is the conv2 block of Table 2, whose parameters
``C * (256*d + 3*3*d*d + d*256)`` stay near 70k as cardinality C grows and width d shrinks.
"""

from __future__ import annotations

import math

import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

__all__ = [
    "template_params",
    "complexity_preserving_width",
    "count_params",
    "count_flops",
]

RESNET50_TEMPLATE_PARAMS = 256 * 64 + 3 * 3 * 64 * 64 + 64 * 256  # 69,632


def template_params(cardinality: int, bottleneck_width: int, in_out_channels: int = 256) -> int:
    """Weights of one conv2 block's three convolutions (Sec. 3.3, Eq. 4)."""
    c, d = cardinality, bottleneck_width
    return c * (in_out_channels * d + 3 * 3 * d * d + d * in_out_channels)


def complexity_preserving_width(
    cardinality: int, reference_params: int = RESNET50_TEMPLATE_PARAMS, in_out_channels: int = 256
) -> int:
    """Width d that keeps the conv2 template at ResNet-50's ~70k parameters (Table 2).

    Solves ``C*(2*256*d + 9*d^2) = reference`` for d and rounds to the nearest integer:
    C = 1, 2, 4, 8, 32 -> d = 64, 40, 24, 14, 4.
    """
    if cardinality < 1:
        raise ValueError(f"cardinality must be a positive integer, got {cardinality!r}")
    a, b, c = 9 * cardinality, 2 * in_out_channels * cardinality, -reference_params
    return round((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a))


def count_params(model: nn.Module) -> int:
    """Number of learnable parameters (BN affine included, running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_size: tuple[int, int] = (224, 224)) -> int:
    """Multiply-adds of one forward pass on a single image, counted by fvcore."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analysis = FlopCountAnalysis(model, torch.zeros(1, 3, *input_size))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(analysis.total())
    finally:
        model.train(was_training)
