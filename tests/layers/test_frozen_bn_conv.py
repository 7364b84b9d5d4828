"""FrozenBN folded into the convolution during training: same outputs and gradients as detectron2's
separate norm, within float rounding, and the norm module itself is no longer run."""

from __future__ import annotations

from resnext_det import get_config_file
from resnext_det.config import add_resnext_config
from resnext_det.layers.frozen_bn import FrozenBNConv2d

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import Conv2d, FrozenBatchNorm2d, ShapeSpec, get_norm
from detectron2.modeling import build_backbone
from torch.nn import functional as F


def conv_pair(norm, *, bias, groups=1):
    """(detectron2's Conv2d, FrozenBNConv2d) with identical weights and norm."""
    plain = Conv2d(16, 32, 3, padding=1, groups=groups, bias=bias, norm=get_norm(norm, 32), activation=F.relu)
    fused = FrozenBNConv2d(16, 32, 3, padding=1, groups=groups, bias=bias, norm=get_norm(norm, 32),
                           activation=F.relu)  # fmt: skip
    fused.load_state_dict(plain.state_dict())
    return plain, fused


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_one_convolution_same_output_and_gradients(bias, channels_last, randomize_frozen_norms):
    plain, fused = conv_pair("FrozenBN", bias=bias, groups=4)
    randomize_frozen_norms(plain)
    fused.load_state_dict(plain.state_dict())
    x = torch.randn(2, 16, 12, 10)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        plain, fused = (m.to(memory_format=torch.channels_last) for m in (plain, fused))
    grad_out = torch.randn(2, 32, 12, 10)
    results = []
    for module in (plain, fused):
        x_ = x.clone().requires_grad_()
        out = module(x_)
        out.backward(grad_out)
        grads = [x_.grad, module.weight.grad] + ([module.bias.grad] if bias else [])
        results.append((out, *grads))
    for got, expected in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert results[1][0].min() >= 0  # the activation still runs


def test_other_norms_run_exactly_as_detectron2s():
    plain, fused = conv_pair("BN", bias=False)
    x = torch.randn(4, 16, 8, 8)
    assert torch.equal(fused(x), plain(x))  # same ops in the same order, training-mode BN
    assert torch.equal(fused.norm.running_mean, plain.norm.running_mean)


def c4_backbone(builder: str):
    cfg = get_cfg()
    add_resnext_config(cfg)
    cfg.merge_from_file(get_config_file("COCO-Detection/faster_rcnn_X50_32x4d_C4.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    if builder == "detectron2":
        cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
        resnets = cfg.MODEL.RESNETS
        resnets.DEPTH, resnets.NUM_GROUPS, resnets.WIDTH_PER_GROUP, resnets.STRIDE_IN_1X1 = 50, 32, 4, False
        resnets.NORM, resnets.OUT_FEATURES = "FrozenBN", ["res4"]
    return build_backbone(cfg, ShapeSpec(channels=3)).train()


def test_c4_trunk_trains_like_detectron2s_resnext(randomize_frozen_norms):
    """Our X50 C4 trunk with detectron2's built-in ResNeXt's weights: the same res4 and the same
    gradient for every trainable weight, while none of our FrozenBN modules runs."""
    ours, theirs = c4_backbone("ours"), c4_backbone("detectron2")
    randomize_frozen_norms(ours)
    incompatible = theirs.load_state_dict(ours.state_dict(), strict=True)
    assert not incompatible.missing_keys and not incompatible.unexpected_keys
    norm_calls = []
    for module in ours.modules():
        if isinstance(module, FrozenBatchNorm2d):
            module.register_forward_hook(lambda *_: norm_calls.append(1))
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in ours.modules()) == 1 + 10 + 13 + 19  # stem, res2-4

    images = torch.randn(1, 3, 96, 128) * 50
    outputs = {}
    for name, model in (("ours", ours), ("theirs", theirs)):
        res4 = model(images)["res4"]
        (res4 * torch.linspace(-1, 1, res4.numel()).view_as(res4)).sum().backward()
        outputs[name] = res4.detach()
    assert norm_calls == []
    scale = float(outputs["theirs"].abs().max())
    torch.testing.assert_close(outputs["ours"], outputs["theirs"], rtol=1e-4, atol=1e-5 * scale)
    trainable = [(n, p) for n, p in ours.named_parameters() if p.requires_grad]
    assert len(trainable) == 13 + 19  # res3 and res4 convs (stem, res2 frozen: FREEZE_AT 2)
    their_params = dict(theirs.named_parameters())
    for name, param in trainable:
        expected = their_params[name].grad
        torch.testing.assert_close(param.grad, expected, rtol=1e-3, atol=1e-4 * float(expected.abs().max()))
