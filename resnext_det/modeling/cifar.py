"""ResNeXt-29 for CIFAR (appendix A, Table 7): the same block on 32x32 images.

A 3x3 stem of 64 filters (stride 1, no pooling), three stages of ``(depth - 2) / 9`` bottleneck
blocks whose outputs are 32x32, 16x16 and 8x8 (stride 2 in the first 3x3 of stages 2 and 3),
global average pooling and an fc. As in the ImageNet template, the grouped width ``C*d`` and the
output width double at each stage: 8x64d has grouped widths 512, 1024, 2048 and outputs 256,
512, 1024 (34.4M parameters for CIFAR-10, the paper's count; 16x64d: 68.1M).

The stages are built by the ImageNet trunk's own ``stack_resnext_stages`` and named ``res2`` ..
``res4`` inside detectron2's ``ResNet`` container, so the block forms, norms, shortcut ablation
and weight conversion work here unchanged.
"""

from __future__ import annotations

import torch
from detectron2.layers import CNNBlockBase, get_norm
from torch.nn import functional as F

from ..layers.frozen_bn import FrozenBNConv2d
from ..template import Template
from .block import he_init_
from .classifier import ResNeXtClassifier
from .trunk import stack_resnext_stages

__all__ = ["CifarStem", "resnext_cifar"]


class CifarStem(CNNBlockBase):
    """3x3 convolution (stride 1), norm, ReLU: CIFAR's images are too small to downsample first."""

    def __init__(self, in_channels: int = 3, out_channels: int = 64, norm: str = "BN"):
        super().__init__(in_channels, out_channels, 1)
        self.conv1 = FrozenBNConv2d(
            in_channels, out_channels, 3, padding=1, bias=False, norm=get_norm(norm, out_channels)
        )
        he_init_(self.conv1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu_(self.conv1(x))


def resnext_cifar(
    depth: int = 29,
    cardinality: int = 8,
    bottleneck_width: int = 64,
    num_classes: int = 10,
    *,
    block_form: str = "grouped",
    norm: str = "BN",
    stem_out_channels: int = 64,
    res2_out_channels: int = 256,
    shortcuts: bool = True,
    zero_init_residual: bool = False,
) -> ResNeXtClassifier:
    """ResNeXt-{depth} ({cardinality}x{bottleneck_width}d) for 32x32 images; returns logits.

    ``res2_out_channels`` is the first stage's output width (4x the stem's, as in the paper);
    smaller stems and widths make the small networks that the tests train."""
    template = Template(
        depth,
        cardinality,
        bottleneck_width,
        block_form,
        norm,
        stem_out_channels,
        res2_out_channels,
        shortcuts,
    )
    stages = stack_resnext_stages(
        template.cifar_stage_blocks,
        template,
        in_channels=stem_out_channels,
        zero_init_residual=zero_init_residual,
    )
    return ResNeXtClassifier(CifarStem(3, stem_out_channels, norm), stages, num_classes=num_classes)
