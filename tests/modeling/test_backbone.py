"""The registered backbone and ROI head: config keys, shapes, freezing, norms, errors."""

from __future__ import annotations

from resnext_det import add_resnext_config
from resnext_det.modeling import resnext
from resnext_det.template import TemplateError

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, ROI_HEADS_REGISTRY, build_backbone

# code the two detectron2 builds differ in: CI runs this file on both (tests/README.md)
pytestmark = pytest.mark.both_builds


def tiny_cfg(**resnext_keys):
    cfg = get_cfg()
    add_resnext_config(cfg)
    cfg.MODEL.BACKBONE.NAME = "build_resnext_backbone"
    cfg.MODEL.RESNEXT.CARDINALITY = 4
    cfg.MODEL.RESNEXT.BOTTLENECK_WIDTH = 8
    cfg.MODEL.RESNEXT.STEM_OUT_CHANNELS = 16
    cfg.MODEL.RESNEXT.RES2_OUT_CHANNELS = 32
    for key, value in resnext_keys.items():
        cfg.MODEL.RESNEXT[key] = value
    return cfg


def test_paper_defaults():
    cfg = add_resnext_config(get_cfg())
    r = cfg.MODEL.RESNEXT
    assert (r.DEPTH, r.CARDINALITY, r.BOTTLENECK_WIDTH, r.BLOCK_FORM) == (50, 32, 4, "grouped")
    assert (r.NORM, r.FREEZE_AT, list(r.OUT_FEATURES)) == ("FrozenBN", 2, ["res4"])
    assert (r.STEM_OUT_CHANNELS, r.RES2_OUT_CHANNELS) == (64, 256)
    assert r.ZERO_INIT_RESIDUAL is False  # fb.resnet.torch did not; only for training from scratch


def test_registered():
    assert "build_resnext_backbone" in BACKBONE_REGISTRY
    assert "ResNeXtRes5ROIHeads" in ROI_HEADS_REGISTRY


def test_c4_backbone_output_shape_and_features():
    cfg = tiny_cfg(NORM="BN")
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    assert backbone.output_shape() == {"res4": ShapeSpec(channels=128, stride=16)}
    assert not hasattr(backbone, "res5")  # res5 belongs to the ROI head in C4
    out = backbone(torch.randn(1, 3, 64, 96))
    assert tuple(out["res4"].shape) == (1, 128, 4, 6)


def test_all_out_features_report_true_strides_and_channels():
    cfg = tiny_cfg(NORM="BN", OUT_FEATURES=["stem", "res2", "res3", "res4", "res5"])
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    out = backbone(torch.randn(1, 3, 64, 64))
    for name, spec in backbone.output_shape().items():
        assert out[name].shape[1] == spec.channels, name
        assert 64 // out[name].shape[-1] == spec.stride, name
    assert [s.stride for s in backbone.output_shape().values()] == [4, 4, 8, 16, 32]
    assert [s.channels for s in backbone.output_shape().values()] == [16, 32, 64, 128, 256]


@pytest.mark.parametrize("freeze_at", [0, 1, 2, 3])
def test_freeze_at(freeze_at):
    backbone = build_backbone(tiny_cfg(NORM="BN", FREEZE_AT=freeze_at), ShapeSpec(channels=3))
    parts = ["stem", "res2", "res3", "res4"]
    for index, part in enumerate(parts):
        frozen = index < freeze_at
        module = getattr(backbone, part)
        assert all(p.requires_grad != frozen for p in module.parameters()), part
        has_frozen_bn = any(isinstance(m, FrozenBatchNorm2d) for m in module.modules())
        assert has_frozen_bn == frozen, part


@pytest.mark.parametrize(
    "norm, norm_type",
    [
        ("FrozenBN", FrozenBatchNorm2d),
        ("BN", torch.nn.BatchNorm2d),
        ("SyncBN", torch.nn.BatchNorm2d),  # one CPU process: SyncBN falls back (tests/layers/test_norms.py)
        ("GN", torch.nn.GroupNorm),
    ],
)
def test_norms(norm, norm_type):
    cfg = tiny_cfg(NORM=norm, FREEZE_AT=0, STEM_OUT_CHANNELS=32, RES2_OUT_CHANNELS=64)
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    assert type(backbone.res3[0].conv2.norm) is norm_type


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("DEPTH", 77, r"MODEL\.RESNEXT\.DEPTH: depth must be one of \[50, 101, 152, 200\]"),
        ("BLOCK_FORM", "x", r"MODEL\.RESNEXT\.BLOCK_FORM: block_form must be one of"),
        ("CARDINALITY", 0, r"MODEL\.RESNEXT\.CARDINALITY: cardinality must be a positive integer"),
        ("BOTTLENECK_WIDTH", -4, r"MODEL\.RESNEXT\.BOTTLENECK_WIDTH"),
        ("NORM", "LayerNorm", r"MODEL\.RESNEXT\.NORM: norm must be one of"),
        ("RES2_OUT_CHANNELS", 0, r"MODEL\.RESNEXT\.RES2_OUT_CHANNELS: res2_out_channels must be"),
    ],
)
def test_bad_template_values_fail_naming_the_key(key, value, message):
    with pytest.raises(TemplateError, match=message):
        build_backbone(tiny_cfg(**{key: value}), ShapeSpec(channels=3))


def test_gn_needs_grouped_width_multiple_of_32_and_grouped_form():
    with pytest.raises(TemplateError, match="multiple of 32"):
        build_backbone(tiny_cfg(NORM="GN", CARDINALITY=3, BOTTLENECK_WIDTH=4), ShapeSpec(channels=3))
    with pytest.raises(TemplateError, match="'stem_out_channels': 16"):
        build_backbone(tiny_cfg(NORM="GN"), ShapeSpec(channels=3))
    with pytest.raises(TemplateError, match="block_form='grouped'"):
        build_backbone(tiny_cfg(NORM="GN", BLOCK_FORM="concat"), ShapeSpec(channels=3))


@pytest.mark.parametrize("features", [["res6"], []])
def test_bad_out_features(features):
    with pytest.raises(ValueError, match="OUT_FEATURES"):
        build_backbone(tiny_cfg(OUT_FEATURES=features), ShapeSpec(channels=3))


def test_missing_add_resnext_config_is_explained():
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_resnext_backbone"
    with pytest.raises(KeyError, match="add_resnext_config"):
        build_backbone(cfg, ShapeSpec(channels=3))


@pytest.mark.parametrize("form", ["grouped", "concat", "aggregated"])
def test_backbone_keys_equal_classifier_trunk_keys(form):
    """A classifier checkpoint's stem..res4 tensors fit the backbone exactly, in every form."""
    cfg = tiny_cfg(NORM="BN", BLOCK_FORM=form, FREEZE_AT=0)
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    classifier = resnext(
        50, 4, 8, num_classes=10, block_form=form, stem_out_channels=16, res2_out_channels=32
    )
    trunk = {k: v for k, v in classifier.state_dict().items() if not k.startswith(("res5.", "linear."))}
    result = backbone.load_state_dict(trunk, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_zero_init_residual_reaches_backbone_and_res5_head():
    from detectron2.modeling import build_model

    cfg = tiny_cfg(NORM="BN", ZERO_INIT_RESIDUAL=True)
    cfg.MODEL.ROI_HEADS.NAME = "ResNeXtRes5ROIHeads"
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    last_norms = [m.conv3.norm.weight for m in model.modules() if type(m).__name__ == "ResNeXtBlock"]
    assert len(last_norms) == 16 and all(torch.count_nonzero(w) == 0 for w in last_norms)


def test_zero_init_residual_with_frozen_norm_fails_naming_the_key():
    with pytest.raises(ValueError, match="cfg.MODEL.RESNEXT.ZERO_INIT_RESIDUAL needs a learnable norm"):
        build_backbone(tiny_cfg(NORM="FrozenBN", ZERO_INIT_RESIDUAL=True))
