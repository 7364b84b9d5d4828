"""--source fb-torch7: the paper's Torch7 models (facebookresearch/ResNeXt, fb.resnet.torch).

The files are written here in Torch7's format with the layout of ``models/resnext.lua``, holding
a torchvision model's tensors: converted, our classifier must compute what that model computes,
and the detector weights must equal the torchvision conversion's, tensor for tensor."""

from __future__ import annotations

import sys

from pretrain.model import load_classifier_weights
from resnext_det.checkpoint import classifier_weights_source, convert_checkpoint
from resnext_det.errors import ConfigError, WeightsMismatchError
from resnext_det.modeling import resnet50, resnext50_32x4d

import pytest
import torch
import torchvision
from test_convert import assert_same_function, randomise_bn
from torch7_files import Module, resnext_lua_network, sequential, write_t7

pytest.importorskip("torchfile")  # in the test extra; the tool names it when it is missing


@pytest.mark.parametrize(("name", "ours", "cardinality"), [("resnext50_32x4d", resnext50_32x4d, 32),
                                                           ("resnet50", resnet50, 1)])  # fmt: skip
def test_a_torch7_model_computes_what_its_weights_compute(name, ours, cardinality, tmp_path):
    torch.manual_seed(0)
    theirs = randomise_bn(getattr(torchvision.models, name)(weights=None))
    # one batch norm as nn kept it before 2016, 1 / sqrt(var + eps): the variance the file can hold
    old = theirs.layer2[1].bn2.running_var
    old.copy_((old + 1e-5).rsqrt().pow(-2) - 1e-5)
    state = theirs.state_dict()
    t7 = write_t7(
        tmp_path / f"{name}.t7", resnext_lua_network(state, cardinality, old_norm_at="layer2.1.bn2")
    )
    assert_same_function(ours(), theirs, t7, "fb-torch7")
    torch.save(state, tmp_path / "tv.pth")
    # the classification tools' MODEL.WEIGHTS takes the .t7 as it is (its source read from the
    # file), e.g. to evaluate the paper's model on ImageNet: the same classifier as torchvision's
    from_t7, from_tv = ours(), ours()
    load_classifier_weights(from_t7, str(t7))
    load_classifier_weights(from_tv, str(tmp_path / "tv.pth"))
    assert [classifier_weights_source(f) for f in (t7, tmp_path / "tv.pth")] == ["fb-torch7", "torchvision"]
    for (key, value), expected in zip(
        from_t7.state_dict().items(), from_tv.state_dict().values(), strict=True
    ):
        tolerance = 1e-6 if key.endswith("res3.1.conv2.norm.running_var") else 0
        torch.testing.assert_close(value, expected, rtol=0, atol=tolerance, msg=key)
    fb, tv = convert_checkpoint(t7, "fb-torch7"), convert_checkpoint(tmp_path / "tv.pth", "torchvision")
    assert fb["resnext_det"]["template"] == tv["resnext_det"]["template"]
    assert fb["resnext_det"]["template"]["cardinality"] == cardinality
    assert (
        fb["resnext_det"]["detectron2_cfg"] == tv["resnext_det"]["detectron2_cfg"]
    )  # RGB, ImageNet's mean/std
    assert fb["model"].keys() == tv["model"].keys()
    for key, value in tv["model"].items():
        # the pre-2016 batch norm's variance is recomputed from 1 / sqrt(var + eps)
        tolerance = 1e-6 if key.endswith("res3.1.conv2.norm.running_var") else 0
        torch.testing.assert_close(fb["model"][key], value, rtol=0, atol=tolerance, msg=key)


def test_what_is_not_such_a_model_is_named(tmp_path, monkeypatch):
    state = randomise_bn(torchvision.models.resnet50(weights=None)).state_dict()
    network = resnext_lua_network(state, 1)
    # Fig. 3's form (b): a ConcatTable of branches in place of the grouped convolution
    block = network.fields["modules"][4].fields["modules"][0]
    residual = block.fields["modules"][0].fields["modules"][0]
    residual.fields["modules"][3] = Module("nn.ConcatTable", {"modules": []})
    with pytest.raises(WeightsMismatchError, match=r"stage 1, block 1 is Fig. 3's form \(b\)"):
        convert_checkpoint(write_t7(tmp_path / "b.t7", network), "fb-torch7")
    with pytest.raises(WeightsMismatchError, match="expected the ImageNet network"):
        convert_checkpoint(write_t7(tmp_path / "other.t7", sequential(Module("nn.Linear"))), "fb-torch7")
    whole = write_t7(tmp_path / "whole.t7", resnext_lua_network(state, 1)).read_bytes()
    (tmp_path / "cut.t7").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(WeightsMismatchError, match="cut.t7 cannot be read as a Torch7 file"):
        convert_checkpoint(tmp_path / "cut.t7", "fb-torch7")
    with pytest.raises(WeightsMismatchError, match="missing.t7 does not exist"):
        convert_checkpoint(tmp_path / "missing.t7", "fb-torch7")
    monkeypatch.setitem(sys.modules, "torchfile", None)  # not installed
    with pytest.raises(ConfigError, match="pip install torchfile"):
        convert_checkpoint(tmp_path / "cut.t7", "fb-torch7")
