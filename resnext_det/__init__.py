"""resnext-det: ResNeXt (Xie et al., CVPR 2017) for detectron2, as the paper ran it.

``import resnext_det`` first makes the installed detectron2 usable (``compat.apply()``: a no-op
on an official, compiled build), then registers ``build_resnext_backbone`` in
``BACKBONE_REGISTRY`` and ``ResNeXtRes5ROIHeads`` in ``ROI_HEADS_REGISTRY``.
Import it before anything from ``detectron2.data``/``modeling``.
"""

from . import compat

compat.apply()

from .config import add_resnext_config, add_two_stage_config  # noqa: E402
from .configs_path import get_config_file  # noqa: E402
from .modeling import (  # noqa: E402
    ResNeXtBlock,
    ResNeXtClassifier,
    ResNeXtRes5ROIHeads,
    build_resnext_backbone,
    complexity_preserving_width,
    convert_block_form,
    resnet50,
    resnet101,
    resnext,
    resnext50_32x4d,
    resnext101_32x4d,
    resnext101_64x4d,
    resnext_cifar,
)

__version__ = "0.1.0"

__all__ = [
    "add_resnext_config",
    "add_two_stage_config",
    "get_config_file",
    "ResNeXtBlock",
    "ResNeXtClassifier",
    "ResNeXtRes5ROIHeads",
    "build_resnext_backbone",
    "complexity_preserving_width",
    "convert_block_form",
    "resnet50",
    "resnet101",
    "resnext",
    "resnext_cifar",
    "resnext50_32x4d",
    "resnext101_32x4d",
    "resnext101_64x4d",
]
