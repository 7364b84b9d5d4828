"""Fig. 3: the three block forms, their structure and their equivalence."""

from __future__ import annotations

import math

from resnext_det.modeling import ResNeXtBlock, block_class, convert_block_form, resnext
from resnext_det.modeling.block_forms import detect_block_form

import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d


def make_block(form, norm="BN", stride=1, in_channels=64, out_channels=256):
    return block_class(form)(
        in_channels,
        out_channels,
        bottleneck_channels=32,
        cardinality=8,
        stride=stride,
        norm=norm,
    )


def randomise_norm_statistics(module):
    """Non-trivial running statistics and affine parameters, so eval-mode equality means something."""
    for m in module.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, FrozenBatchNorm2d)):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)


def test_grouped_form_structure_stride_in_3x3_and_projection():
    block = make_block("grouped", stride=2)
    assert block.conv1.stride == (1, 1) and block.conv1.kernel_size == (1, 1)
    assert block.conv2.stride == (2, 2) and block.conv2.groups == 8
    assert tuple(block.conv2.weight.shape) == (32, 4, 3, 3)
    assert tuple(block.conv3.weight.shape) == (256, 32, 1, 1)
    assert block.shortcut is not None and block.shortcut.stride == (2, 2)
    y = block(torch.randn(2, 64, 16, 16))
    assert tuple(y.shape) == (2, 256, 8, 8)
    assert (y >= 0).all()  # ReLU after the shortcut add


def test_identity_shortcut_when_shape_is_kept():
    block = ResNeXtBlock(256, 256, bottleneck_channels=32, cardinality=8)
    assert block.shortcut is None


def test_he_initialisation_std():
    """fb.resnet.torch's MSRA init: std = sqrt(2 / (k*k*n_out)), the grouped width for branches."""
    torch.manual_seed(0)
    big = ResNeXtBlock(256, 256, bottleneck_channels=512, cardinality=32)
    expected = math.sqrt(2 / (3 * 3 * 512))
    assert big.conv2.weight.std().item() == pytest.approx(expected, rel=0.05)
    branched = block_class("concat")(256, 256, bottleneck_channels=512, cardinality=32)
    stds = torch.cat([b.conv2.weight.flatten() for b in branched.branches]).std().item()
    assert stds == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("target", ["concat", "aggregated"])
@pytest.mark.parametrize("train", [False, True])
def test_forms_compute_the_same_function(target, train):
    torch.manual_seed(1)
    grouped = make_block("grouped", stride=2)
    randomise_norm_statistics(grouped)
    other = make_block(target, stride=2)
    other.load_state_dict(convert_block_form(grouped.state_dict(), target), strict=True)
    grouped.train(train)
    other.train(train)
    x = torch.randn(4, 64, 16, 16)
    diff = (grouped(x) - other(x)).abs().max().item()
    assert diff <= 1e-4
    if train:  # batch statistics updated identically
        back = convert_block_form(other.state_dict(), "grouped")
        for key, value in grouped.state_dict().items():
            torch.testing.assert_close(back[key], value, rtol=1e-5, atol=1e-5)


def test_form_conversion_round_trip_is_exact_and_detected():
    sd = make_block("grouped").state_dict()
    for target in ("concat", "aggregated"):
        converted = convert_block_form(sd, target)
        assert detect_block_form(converted) == target
        back = convert_block_form(converted, "grouped")
        assert set(back) == set(sd)
        for key in sd:
            assert torch.equal(back[key], sd[key]), key
    assert "branches.7.conv2.weight" in convert_block_form(sd, "concat")
    assert "aggregate_norm.running_var" in convert_block_form(sd, "aggregated")


def test_whole_classifier_in_each_form_gives_the_same_logits():
    torch.manual_seed(2)
    kwargs = dict(
        depth=50,
        cardinality=4,
        bottleneck_width=4,
        num_classes=10,
        stem_out_channels=16,
        res2_out_channels=32,
    )
    grouped = resnext(**kwargs).eval()
    randomise_norm_statistics(grouped)
    x = torch.randn(2, 3, 64, 64)
    reference = grouped(x)
    for form in ("concat", "aggregated"):
        model = resnext(block_form=form, **kwargs).eval()
        model.load_state_dict(convert_block_form(grouped.state_dict(), form, cardinality=4))
        assert (model(x) - reference).abs().max().item() <= 1e-4


def test_conversion_rejects_wrong_cardinality_and_unknown_form():
    sd = make_block("grouped").state_dict()
    with pytest.raises(ValueError, match="cardinality 8, expected 32"):
        convert_block_form(sd, "concat", cardinality=32)
    with pytest.raises(ValueError, match="target_form must be one of"):
        convert_block_form(sd, "x")
    with pytest.raises(ValueError, match="no ResNeXt blocks"):
        convert_block_form({"fc.weight": torch.zeros(2)}, "concat")


def test_block_argument_errors():
    with pytest.raises(ValueError, match="block_form must be one of"):
        make_block("x")
    with pytest.raises(ValueError, match="must split into cardinality=3"):
        ResNeXtBlock(64, 256, bottleneck_channels=32, cardinality=3)


def test_frozen_norm_form_equivalence():
    grouped = make_block("grouped", norm="FrozenBN")
    randomise_norm_statistics(grouped)
    aggregated = make_block("aggregated", norm="FrozenBN")
    aggregated.load_state_dict(convert_block_form(grouped.state_dict(), "aggregated"))
    x = torch.randn(2, 64, 8, 8)
    assert (grouped(x) - aggregated(x)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("form", ["grouped", "concat", "aggregated"])
def test_zero_init_residual_starts_the_block_as_identity(form):
    block = make_block(form, in_channels=256)  # identity shortcut
    x = torch.randn(2, 256, 8, 8)
    assert not torch.allclose(block(x), torch.relu(x))
    block.zero_init_residual_()
    torch.testing.assert_close(block(x), torch.relu(x), rtol=0, atol=0)


def test_zero_init_residual_needs_a_learnable_norm():
    with pytest.raises(ValueError, match="learnable scale .* FrozenBatchNorm2d"):
        make_block("grouped", norm="FrozenBN").zero_init_residual_()
