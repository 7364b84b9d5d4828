"""Tables 1, 2 and 5: parameters, FLOPs (fvcore, multiply-adds at 224x224) and template widths."""

from __future__ import annotations

import re

from resnext_det.modeling import (
    complexity_preserving_width,
    count_flops,
    count_params,
    resnet50,
    resnet101,
    resnext50_32x4d,
    resnext101_32x4d,
    resnext101_64x4d,
    template_params,
)

import pytest
import torchvision

# (constructor, paper params in millions, paper GFLOPs)
PAPER_COMPLEXITY = [
    (resnet50, 25.5, 4.1),
    (resnext50_32x4d, 25.0, 4.2),
    (resnet101, 44.5, 7.8),
    (resnext101_32x4d, 44.2, 8.0),
    (resnext101_64x4d, 83.6, 15.5),
]


@pytest.mark.parametrize(
    "constructor, params_m, gflops", PAPER_COMPLEXITY, ids=[c[0].__name__ for c in PAPER_COMPLEXITY]
)
def test_classifier_matches_paper_complexity(constructor, params_m, gflops):
    model = constructor()
    assert count_params(model) / 1e6 == pytest.approx(params_m, rel=0.01)
    assert count_flops(model, (224, 224)) / 1e9 == pytest.approx(gflops, rel=0.03)


def test_table2_complexity_preserving_widths():
    widths = {c: complexity_preserving_width(c) for c in (1, 2, 4, 8, 32)}
    assert widths == {1: 64, 2: 40, 4: 24, 8: 14, 32: 4}
    for c, d in widths.items():
        assert template_params(c, d) == pytest.approx(70_000, rel=0.03), (c, d)
    assert template_params(1, 64) == 69_632 and template_params(32, 4) == 70_144


def test_conv2_block_parameters_match_template():
    """The first conv2 block's three convolutions are the Table 2 template (no BN, no shortcut)."""
    model = resnext50_32x4d()
    block = model.res2[1]  # identity shortcut
    conv_params = sum(block.get_submodule(n).weight.numel() for n in ("conv1", "conv2", "conv3"))
    assert conv_params == template_params(32, 4)


def torchvision_name(name: str) -> str:
    """Our parameter name -> torchvision's (stem.conv1 -> conv1, res2 -> layer1, ...)."""
    name = re.sub(r"^stem\.conv1\.norm\.", "bn1.", name)
    name = re.sub(r"^stem\.", "", name)
    name = re.sub(r"^res(\d)", lambda m: f"layer{int(m[1]) - 1}", name)
    name = re.sub(r"conv(\d)\.norm\.", r"bn\1.", name)
    name = name.replace("shortcut.norm.", "downsample.1.").replace("shortcut.", "downsample.0.")
    return name.replace("linear.", "fc.")


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (resnet50, torchvision.models.resnet50),
        (resnext50_32x4d, torchvision.models.resnext50_32x4d),
        (resnet101, torchvision.models.resnet101),
    ],
)
def test_layer_shapes_equal_torchvision(ours, theirs):
    """1x64d is plain ResNet: every tensor has torchvision's shape under the corresponding name."""
    mine = {torchvision_name(k): tuple(v.shape) for k, v in ours().state_dict().items()}
    reference = {k: tuple(v.shape) for k, v in theirs(weights=None).state_dict().items()}
    assert mine == reference


def test_complexity_preserving_width_rejects_bad_cardinality():
    with pytest.raises(ValueError, match="cardinality"):
        complexity_preserving_width(0)
