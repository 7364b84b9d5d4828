"""The ``Template``: checked once when made, read once from the config, passed whole."""

from __future__ import annotations

import dataclasses

from resnext_det import add_resnext_config, get_config_file
from resnext_det.config import resnext_template_from_cfg
from resnext_det.modeling import AggregatedBlock, ConcatenatedBlock, ResNeXtBlock, block_class, resnext
from resnext_det.template import Template, TemplateError

import pytest
from detectron2.config import get_cfg


def test_a_template_is_checked_when_made_and_cannot_change():
    template = Template(depth=101, cardinality=64, bottleneck_width=4)
    assert template.imagenet_stage_blocks == (3, 4, 23, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        template.depth = 50
    with pytest.raises(TemplateError, match="cardinality must be a positive integer, got 0"):
        Template(cardinality=0)
    with pytest.raises(TemplateError, match="block_form must be one of"):
        template.replace(block_form="stacked")
    # a CIFAR depth is a template, but not of an ImageNet network (and the reverse)
    assert Template(depth=29, cardinality=8, bottleneck_width=64).cifar_stage_blocks == (3, 3, 3)
    with pytest.raises(TemplateError, match=r"depth must be one of \[50, 101, 152, 200\], got 29"):
        _ = Template(depth=29).imagenet_stage_blocks
    with pytest.raises(TemplateError, match="got 50"):
        _ = Template(depth=50).cifar_stage_blocks


def test_the_config_gives_the_template_every_builder_uses():
    cfg = get_cfg()
    add_resnext_config(cfg)
    cfg.merge_from_file(get_config_file("demo/faster_rcnn_tiny_C4.yaml"))
    cfg.merge_from_list(["MODEL.RESNEXT.BLOCK_FORM", "concat"])
    template = resnext_template_from_cfg(cfg)
    r = cfg.MODEL.RESNEXT
    assert template.asdict() == {
        "depth": r.DEPTH, "cardinality": r.CARDINALITY, "bottleneck_width": r.BOTTLENECK_WIDTH,
        "block_form": "concat", "norm": r.NORM, "stem_out_channels": r.STEM_OUT_CHANNELS,
        "res2_out_channels": r.RES2_OUT_CHANNELS, "shortcuts": r.SHORTCUTS,
    }  # fmt: skip
    model = resnext(num_classes=4, **template.asdict())
    blocks = [m for m in model.modules() if isinstance(m, (ResNeXtBlock, ConcatenatedBlock, AggregatedBlock))]
    assert len(blocks) == sum(template.imagenet_stage_blocks)
    assert {type(b) for b in blocks} == {ConcatenatedBlock}
    assert blocks[0].cardinality == template.cardinality


def test_one_block_class_per_form():
    assert [block_class(f).block_form for f in ("grouped", "concat", "aggregated")] == [
        "grouped", "concat", "aggregated"
    ]  # fmt: skip
    assert (block_class("grouped"), block_class("concat"), block_class("aggregated")) == (
        ResNeXtBlock, ConcatenatedBlock, AggregatedBlock
    )  # fmt: skip
    with pytest.raises(ValueError, match="block_form must be one of"):
        block_class("x")
