"""Ops that are not ResNeXt-specific (as ``detectron2.layers``): frozen batch norms folded into
the convolutions before them, and RoIAlign split over all CPU threads."""

from .frozen_bn import FrozenBNConv2d, conv_with_frozen_bn, fold_frozen_batchnorm, folded_weight_and_bias
from .parallel_roi_align import ParallelROIAlign

__all__ = [
    "FrozenBNConv2d",
    "ParallelROIAlign",
    "conv_with_frozen_bn",
    "fold_frozen_batchnorm",
    "folded_weight_and_bias",
]
