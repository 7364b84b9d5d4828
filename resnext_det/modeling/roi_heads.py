"""``ResNeXtRes5ROIHeads``: the C4 box head whose res5 is the trunk's fifth stage.

In the C4 detector (He et al. 2016, used in the paper's appendix B) res5 runs on each pooled
14x14 RoI feature. It is built here by the same ``make_resnext_stage`` as the trunk, from
``MODEL.RESNEXT`` (cardinality, width, form, norm), so ImageNet weights' ``res5.*`` load into
``roi_heads.res5.*`` unchanged. Its RoIAlign splits the RoIs over all threads on the CPU
(``ParallelROIAlign``); everything else is detectron2's ``Res5ROIHeads``.
"""

from __future__ import annotations

from detectron2.layers import ROIAlign
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import Res5ROIHeads
from torch import nn

from ..config import resnext_template_from_cfg
from ..layers.norms import resolve_norm
from ..layers.parallel_roi_align import ParallelROIAlign
from .trunk import STAGE_BLOCKS, make_resnext_stage

__all__ = ["ResNeXtRes5ROIHeads"]


@ROI_HEADS_REGISTRY.register()
class ResNeXtRes5ROIHeads(Res5ROIHeads):
    """detectron2's ``Res5ROIHeads`` with a ResNeXt res5 (stride 2 in its first 3x3)."""

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        poolers = ret["pooler"].level_poolers
        for level, pooler in enumerate(poolers):
            if type(pooler) is ROIAlign:  # ROIAlign or ROIAlignV2; other pooler types stay as they are
                poolers[level] = ParallelROIAlign.from_roi_align(pooler)
        return ret

    @classmethod
    def _build_res5_block(cls, cfg):
        template = resnext_template_from_cfg(cfg)
        res2_out = template["res2_out_channels"]
        blocks = make_resnext_stage(
            5,
            STAGE_BLOCKS[template["depth"]][3],
            in_channels=res2_out * 4,
            cardinality=template["cardinality"],
            bottleneck_width=template["bottleneck_width"],
            res2_out_channels=res2_out,
            norm=resolve_norm(template["norm"], cfg.MODEL.DEVICE),
            block_form=template["block_form"],
            shortcuts=template["shortcuts"],
        )
        if cfg.MODEL.RESNEXT.ZERO_INIT_RESIDUAL:
            for block in blocks:
                block.zero_init_residual_()
        if cfg.MODEL.RESNEXT.FREEZE_AT >= 5:
            for block in blocks:
                block.freeze()
        return nn.Sequential(*blocks), res2_out * 8
