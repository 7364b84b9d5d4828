"""The ResNeXt trunk (Table 1): a stem and four stages of ``ResNeXtBlock``.

The trunk is detectron2's own ``ResNet`` container (stem + named stages ``res2``..``res5``,
``freeze``, ``output_shape``, optional classifier) filled with this project's blocks, so the
detection backbone, the C4 res5 head and the ImageNet classifier share module names and one
checkpoint serves all three. See docs/design.md ("Why detectron2's ResNet container") for the choice.

Template "C x d" (Sec. 3.1, Table 1): C = cardinality, d = bottleneck width per group in conv2.
The grouped width C*d and the output width double at each downsampling stage; 1x64d is ResNet.
"""

from __future__ import annotations

import torch
from detectron2.modeling.backbone import BasicStem, ResNet
from torch.nn import functional as F

from ..layers.frozen_bn import conv_with_frozen_bn
from ..template import STAGE_NAMES, Template, validate_out_features
from .block import ResNeXtBlock, block_class

__all__ = [
    "ResNeXtStem",
    "make_resnext_stage",
    "stack_resnext_stages",
    "build_resnext_trunk",
    "trunk_from_template",
]


class ResNeXtStem(BasicStem):
    """detectron2's ``BasicStem`` (7x7 stride-2 conv, norm, ReLU, 3x3 stride-2 max pool; same
    parameters, names and initialisation) whose frozen norm is folded into the convolution at each
    call, as in ``ResNeXtBlock`` (see ``resnext_det.layers.frozen_bn``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(conv_with_frozen_bn(self.conv1, x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


def make_resnext_stage(
    stage_index: int, num_blocks: int, template: Template, *, in_channels: int
) -> list[ResNeXtBlock]:
    """Blocks of stage ``res{stage_index}`` (2..5); the first block of res3-res5 has stride 2."""
    scale = 2 ** (stage_index - 2)
    return ResNet.make_stage(
        block_class(template.block_form),
        num_blocks,
        stride_per_block=[1 if stage_index == 2 else 2] + [1] * (num_blocks - 1),
        in_channels=in_channels,
        out_channels=template.res2_out_channels * scale,
        bottleneck_channels=template.cardinality * template.bottleneck_width * scale,
        cardinality=template.cardinality,
        norm=template.norm,
        with_shortcut=template.shortcuts,
    )


def stack_resnext_stages(
    blocks_per_stage,
    template: Template,
    *,
    in_channels: int,
    zero_init_residual: bool = False,
    first_stage: int = 2,
) -> list[list[ResNeXtBlock]]:
    """Stages res{first_stage}, ... of ``blocks_per_stage[k]`` blocks each, every stage taking the
    last one's output (the ImageNet trunk: Table 1's counts; the CIFAR network: three stages of n;
    the C4 box head: res5 alone). ``zero_init_residual`` starts every block as identity
    (``zero_init_residual_``)."""
    stages = []
    for stage_index, num_blocks in enumerate(blocks_per_stage, start=first_stage):
        stage = make_resnext_stage(stage_index, num_blocks, template, in_channels=in_channels)
        if zero_init_residual:
            for block in stage:
                block.zero_init_residual_()
        stages.append(stage)
        in_channels = stage[-1].out_channels
    return stages


def trunk_from_template(
    template: Template,
    *,
    in_channels: int = 3,
    out_features: list[str] | None = None,
    num_classes: int | None = None,
    freeze_at: int = 0,
    zero_init_residual: bool = False,
    resnet_class: type[ResNet] = ResNet,
) -> ResNet:
    """``build_resnext_trunk`` for a ``Template`` already read (the registered backbone's)."""
    if num_classes is None and not out_features:
        raise ValueError("build_resnext_trunk needs out_features (e.g. ['res4']) or num_classes")
    if out_features is not None:
        validate_out_features(out_features)
    last_stage = (
        5
        if num_classes is not None
        else max([1] + [STAGE_NAMES.index(f) + 2 for f in out_features if f in STAGE_NAMES])
    )
    stem = ResNeXtStem(in_channels=in_channels, out_channels=template.stem_out_channels, norm=template.norm)
    stages = stack_resnext_stages(
        template.imagenet_stage_blocks[: last_stage - 1],
        template,
        in_channels=template.stem_out_channels,
        zero_init_residual=zero_init_residual,
    )
    return resnet_class(stem, stages, num_classes=num_classes, out_features=out_features, freeze_at=freeze_at)


def build_resnext_trunk(
    depth: int = 50,
    cardinality: int = 32,
    bottleneck_width: int = 4,
    *,
    stem_out_channels: int = 64,
    res2_out_channels: int = 256,
    norm: str = "BN",
    block_form: str = "grouped",
    shortcuts: bool = True,
    in_channels: int = 3,
    out_features: list[str] | None = None,
    num_classes: int | None = None,
    freeze_at: int = 0,
    zero_init_residual: bool = False,
    resnet_class: type[ResNet] = ResNet,
) -> ResNet:
    """A detectron2 ``ResNet`` whose blocks are ResNeXt blocks of the given template.

    Every argument is named, so that a LazyConfig override of one is checked
    (``model.backbone.norm=BN``); the template is made once and passed whole
    (``trunk_from_template``). Stages are built up to the deepest of ``out_features`` (all four
    for a classifier), so a C4 backbone with ``out_features=["res4"]`` has no res5: that stage
    lives in the ROI head. ``shortcuts=False`` builds the plain stack without any shortcut
    (Sec. 5.1); ``zero_init_residual`` starts every block as identity.
    """
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
    return trunk_from_template(
        template,
        in_channels=in_channels,
        out_features=out_features,
        num_classes=num_classes,
        freeze_at=freeze_at,
        zero_init_residual=zero_init_residual,
        resnet_class=resnet_class,
    )
