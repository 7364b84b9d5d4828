"""``ResNeXtRes5ROIHeads``: the C4 box head whose res5 is the trunk's fifth stage.

In the C4 detector (He et al. 2016, used in the paper's appendix B) res5 runs on each pooled
14x14 RoI feature. It is built here by the same ``make_resnext_stage`` as the trunk, from
``MODEL.RESNEXT`` (cardinality, width, form, norm), so ImageNet weights' ``res5.*`` load into
``roi_heads.res5.*`` unchanged. Its RoIAlign splits the RoIs over all threads on the CPU
(``ParallelROIAlign``); everything else is detectron2's ``Res5ROIHeads``.
"""

from __future__ import annotations

from detectron2.config import configurable
from detectron2.layers import ROIAlign
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import Res5ROIHeads
from torch import nn

from ..config import resnext_template_from_cfg
from ..layers.norms import resolve_norm
from ..layers.parallel_roi_align import ParallelROIAlign
from ..template import Template
from .trunk import stack_resnext_stages

__all__ = ["ResNeXtRes5ROIHeads", "res5_head_from_template", "resnext_res5_head"]


@ROI_HEADS_REGISTRY.register()
class ResNeXtRes5ROIHeads(Res5ROIHeads):
    """detectron2's ``Res5ROIHeads`` with a ResNeXt res5 (stride 2 in its first 3x3)."""

    @configurable
    def __init__(self, **kwargs):
        # in __init__, not from_config: a LazyConfig builds the head from its arguments directly
        super().__init__(**kwargs)
        poolers = self.pooler.level_poolers
        for level, pooler in enumerate(poolers):
            if type(pooler) is ROIAlign:  # ROIAlign or ROIAlignV2; other pooler types stay as they are
                poolers[level] = ParallelROIAlign.from_roi_align(pooler)

    @classmethod
    def _build_res5_block(cls, cfg):
        template = resnext_template_from_cfg(cfg)
        template = template.replace(norm=resolve_norm(template.norm, cfg.MODEL.DEVICE))
        res5 = res5_head_from_template(
            template,
            zero_init_residual=cfg.MODEL.RESNEXT.ZERO_INIT_RESIDUAL,
            freeze=cfg.MODEL.RESNEXT.FREEZE_AT >= 5,
        )
        return res5, template.res2_out_channels * 8


def res5_head_from_template(template: Template, *, zero_init_residual: bool = False, freeze: bool = False):
    """The trunk's res5 as the C4 box head's ``res5`` module (input: res4's 4x RES2_OUT_CHANNELS
    channels; output: 8x)."""
    (blocks,) = stack_resnext_stages(
        template.imagenet_stage_blocks[3:],
        template,
        first_stage=5,
        in_channels=template.res2_out_channels * 4,
        zero_init_residual=zero_init_residual,
    )
    if freeze:
        for block in blocks:
            block.freeze()
    return nn.Sequential(*blocks)


def resnext_res5_head(
    depth: int = 50,
    cardinality: int = 32,
    bottleneck_width: int = 4,
    *,
    norm: str = "FrozenBN",
    block_form: str = "grouped",
    stem_out_channels: int = 64,
    res2_out_channels: int = 256,
    shortcuts: bool = True,
    zero_init_residual: bool = False,
    freeze: bool = False,
) -> nn.Sequential:
    """``res5_head_from_template`` from keywords, each named so that a LazyConfig file's
    override of one is checked."""
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
    return res5_head_from_template(template, zero_init_residual=zero_init_residual, freeze=freeze)
