"""Ops that are not ResNeXt-specific (as ``detectron2.layers``): frozen batch norms folded into
the convolutions before them, RoIAlign split over all CPU threads, and SyncBN's fallback where it
cannot run."""

from .frozen_bn import FrozenBNConv2d, conv_with_frozen_bn, fold_frozen_batchnorm, folded_weight_and_bias
from .norms import resolve_norm
from .parallel_roi_align import ParallelROIAlign

__all__ = [
    "FrozenBNConv2d",
    "ParallelROIAlign",
    "conv_with_frozen_bn",
    "fold_frozen_batchnorm",
    "folded_weight_and_bias",
    "resolve_norm",
]
