"""ResNeXt modeling: blocks (Fig. 3), trunk (Table 1), detectron2 backbone and C4 res5 head."""

from .backbone import build_resnext_backbone
from .block import AggregatedBlock, ConcatenatedBlock, ResNeXtBlock, block_class
from .block_forms import convert_block_form, detect_block_form
from .cifar import resnext_cifar
from .classifier import (
    ResNeXtClassifier,
    resnet50,
    resnet101,
    resnext,
    resnext50_32x4d,
    resnext101_32x4d,
    resnext101_64x4d,
)
from .complexity import complexity_preserving_width, count_flops, count_params, template_params
from .roi_heads import ResNeXtRes5ROIHeads
from .trunk import build_resnext_trunk, make_resnext_stage, trunk_from_template

__all__ = [
    "build_resnext_backbone",
    "AggregatedBlock",
    "ConcatenatedBlock",
    "ResNeXtBlock",
    "block_class",
    "convert_block_form",
    "detect_block_form",
    "ResNeXtClassifier",
    "resnet50",
    "resnet101",
    "resnext",
    "resnext_cifar",
    "resnext50_32x4d",
    "resnext101_32x4d",
    "resnext101_64x4d",
    "complexity_preserving_width",
    "count_flops",
    "count_params",
    "template_params",
    "ResNeXtRes5ROIHeads",
    "build_resnext_trunk",
    "make_resnext_stage",
    "trunk_from_template",
]
