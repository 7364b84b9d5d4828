"""The ImageNet classifier of Table 1: ResNeXt trunk + global average pool + 1000-d fc.

A plain PyTorch API in the style of torchvision (``resnext50_32x4d()`` ...), for use outside
detectron2 and for ImageNet pretraining (``pretrain/``). Its parameter names (``stem``,
``res2``..``res5``, ``linear``) are the detection backbone's and the C4 res5 head's, so a
classifier checkpoint converts to detection weights by prefixing, never by guessing.
"""

from __future__ import annotations

import torch
from detectron2.modeling.backbone import ResNet
from torch import nn

from .trunk import build_resnext_trunk

__all__ = [
    "ResNeXtClassifier",
    "resnext",
    "resnext50_32x4d",
    "resnext101_32x4d",
    "resnext101_64x4d",
    "resnet50",
    "resnet101",
]


class ResNeXtClassifier(ResNet):
    """detectron2's ``ResNet`` with a classifier head whose ``forward`` returns the logits.

    The fc layer is initialised as in fb.resnet.torch (the paper's code base, Sec. 4): PyTorch's
    default uniform weights and a zero bias.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.linear.reset_parameters()
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)["linear"]


def resnext(
    depth: int = 50,
    cardinality: int = 32,
    bottleneck_width: int = 4,
    num_classes: int = 1000,
    block_form: str = "grouped",
    norm: str = "BN",
    **trunk_kwargs,
) -> ResNeXtClassifier:
    """ResNeXt-{depth} ({cardinality}x{bottleneck_width}d) classifier, Table 1.

    ``cardinality=1, bottleneck_width=64`` is ResNet-{depth}. ``block_form`` picks a Fig. 3 form
    ("grouped" (c), "concat" (b), "aggregated" (a)); all three compute the same function.
    Extra keyword arguments go to ``build_resnext_trunk`` (e.g. ``stem_out_channels``).
    """
    return build_resnext_trunk(
        depth,
        cardinality,
        bottleneck_width,
        num_classes=num_classes,
        norm=norm,
        block_form=block_form,
        resnet_class=ResNeXtClassifier,
        **trunk_kwargs,
    )


def resnext50_32x4d(**kwargs) -> ResNeXtClassifier:
    """ResNeXt-50 (32x4d): 25.0M parameters, 4.2 GFLOPs (Table 1)."""
    return resnext(50, 32, 4, **kwargs)


def resnext101_32x4d(**kwargs) -> ResNeXtClassifier:
    """ResNeXt-101 (32x4d): 44.2M parameters, 8.0 GFLOPs (Table 5)."""
    return resnext(101, 32, 4, **kwargs)


def resnext101_64x4d(**kwargs) -> ResNeXtClassifier:
    """ResNeXt-101 (64x4d): 83.6M parameters, 15.5 GFLOPs (Table 5)."""
    return resnext(101, 64, 4, **kwargs)


def resnet50(**kwargs) -> ResNeXtClassifier:
    """ResNet-50 as the 1x64d template: 25.5M parameters, 4.1 GFLOPs (Table 1)."""
    return resnext(50, 1, 64, **kwargs)


def resnet101(**kwargs) -> ResNeXtClassifier:
    """ResNet-101 as the 1x64d template: 44.5M parameters, 7.8 GFLOPs (Table 5)."""
    return resnext(101, 1, 64, **kwargs)
