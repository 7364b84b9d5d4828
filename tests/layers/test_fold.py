"""Folding FrozenBN into the convolutions changes nothing but the speed (exactness within float
tolerance), for the C4 trunk and the res5 head of the paper's detector."""

from __future__ import annotations

from resnext_det import get_config_file
from resnext_det.engine import setup_cfg
from resnext_det.layers.frozen_bn import fold_frozen_batchnorm

import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model


@pytest.mark.parametrize("form", ["grouped", "concat"])
def test_folded_c4_model_computes_the_same(form, randomize_frozen_norms):
    cfg = setup_cfg(
        get_config_file("demo/Base-Pretrained-tiny-C4.yaml"),
        ["MODEL.RESNEXT.BLOCK_FORM", form, "DATASETS.TRAIN", "()", "DATASETS.TEST", "()"],
    )
    model = build_model(cfg).eval()
    randomize_frozen_norms(model)
    images = torch.randn(2, 3, 128, 160) * 50
    with torch.no_grad():
        features = model.backbone(images)["res4"]
        head = model.roi_heads.res5(features[:, :, :7, :7])
        folded = fold_frozen_batchnorm(model)
        assert not any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
        features_folded = model.backbone(images)["res4"]
        head_folded = model.roi_heads.res5(features_folded[:, :, :7, :7])
    assert folded > 50
    # float32 rounding differs after ~50 layers; relative to the activations' scale it is tiny
    for got, expected in ((features_folded, features), (head_folded, head)):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
