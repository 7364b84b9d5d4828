"""``build_resnext_backbone``: the ResNeXt trunk as a registered detectron2 backbone.

For the paper's FPN-free C4 detector (appendix B) the backbone is stem..res4 and its ``res4``
output (stride 16, 4x RES2_OUT_CHANNELS channels) feeds the RPN and the RoI pooler; res5 is
built by ``ResNeXtRes5ROIHeads`` from the same config.
"""

from __future__ import annotations

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import ResNet

from ..config import resnext_template_from_cfg
from ..layers.norms import resolve_norm
from .trunk import trunk_from_template

__all__ = ["build_resnext_backbone"]


@BACKBONE_REGISTRY.register()
def build_resnext_backbone(cfg, input_shape: ShapeSpec) -> ResNet:
    """Build the backbone from ``cfg.MODEL.RESNEXT`` (see ``add_resnext_config``)."""
    template = resnext_template_from_cfg(cfg)  # validates, and checks the keys exist
    return trunk_from_template(
        template.replace(norm=resolve_norm(template.norm, cfg.MODEL.DEVICE)),
        in_channels=input_shape.channels,
        out_features=list(cfg.MODEL.RESNEXT.OUT_FEATURES),
        freeze_at=cfg.MODEL.RESNEXT.FREEZE_AT,
        zero_init_residual=cfg.MODEL.RESNEXT.ZERO_INIT_RESIDUAL,
    )
