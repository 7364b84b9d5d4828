"""The C4 res5 head is the trunk's res5: same blocks, same keys, same function."""

from __future__ import annotations

from resnext_det import add_resnext_config, get_config_file
from resnext_det.modeling import resnext

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

# code the two detectron2 builds differ in: CI runs this file on both (tests/README.md)
pytestmark = pytest.mark.both_builds


def tiny_detector_cfg(**resnext_keys):
    cfg = get_cfg()
    add_resnext_config(cfg)
    cfg.merge_from_file(get_config_file("demo/faster_rcnn_tiny_C4.yaml"))
    for key, value in resnext_keys.items():
        cfg.MODEL.RESNEXT[key] = value
    return cfg


@pytest.mark.parametrize("form", ["grouped", "aggregated"])
def test_classifier_weights_fill_backbone_and_res5_head(form):
    cfg = tiny_detector_cfg(BLOCK_FORM=form)
    model = build_model(cfg).eval()
    classifier = resnext(
        50, 4, 4, num_classes=10, block_form=form, stem_out_channels=16, res2_out_channels=32
    ).eval()
    detector_keys = {
        k: v for k, v in model.state_dict().items() if k.startswith(("backbone.", "roi_heads.res5."))
    }
    mapped = {
        ("roi_heads." if k.startswith("res5.") else "backbone.") + k: v
        for k, v in classifier.state_dict().items()
        if not k.startswith("linear.")
    }
    assert {k: tuple(v.shape) for k, v in mapped.items()} == {
        k: tuple(v.shape) for k, v in detector_keys.items()
    }
    model.load_state_dict(mapped, strict=False)
    x = torch.randn(1, 32 * 4, 7, 7)  # a pooled res4 feature
    torch.testing.assert_close(model.roi_heads.res5(x), classifier.res5(x))


def test_res5_first_block_strides_in_3x3():
    model = build_model(tiny_detector_cfg())
    first = model.roi_heads.res5[0]
    assert first.conv1.stride == (1, 1) and first.conv2.stride == (2, 2)
    assert first.conv2.groups == 4
    assert len(model.roi_heads.res5) == 3
