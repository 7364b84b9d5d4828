"""Weight import: torchvision / timm / our pretraining -> detectron2, exact and strict."""

from __future__ import annotations

from resnext_det import add_resnext_config, get_config_file
from resnext_det.checkpoint import (
    WeightsMismatchError,
    check_weights_fit,
    convert_checkpoint,
    infer_template,
    load_classifier_state_dict,
    torchvision_to_resnext_names,
)
from resnext_det.modeling import resnet50, resnext, resnext50_32x4d
from tools import convert_weights

import pytest
import torch
import torchvision
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model

# code the two detectron2 builds differ in: CI runs this file on both (tests/README.md)
pytestmark = pytest.mark.both_builds


def randomise_bn(model):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def trunk_features(model, x):
    """res2..res5 outputs and logits of our classifier."""
    features, x = [], model.stem(x)
    for stage in model.stages:
        x = stage(x)
        features.append(x)
    return features, model.linear(torch.flatten(model.avgpool(x), 1))


def reference_features(model, x):
    """layer1..layer4 outputs and logits of a torchvision/timm ResNet."""
    features = []
    hooks = [
        getattr(model, f"layer{i}").register_forward_hook(lambda m, i, o: features.append(o))
        for i in (1, 2, 3, 4)
    ]
    logits = model(x)
    for h in hooks:
        h.remove()
    return features, logits


def assert_same_function(ours, theirs, path, source):
    state_dict, _ = load_classifier_state_dict(path, source)
    ours.load_state_dict(state_dict, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        (f_ours, l_ours), (f_ref, l_ref) = trunk_features(ours.eval(), x), reference_features(theirs, x)
    for a, b in zip(f_ours, f_ref, strict=True):
        assert (a - b).abs().max().item() <= 1e-4
    assert (l_ours - l_ref).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name, ours", [("resnet50", resnet50), ("resnext50_32x4d", resnext50_32x4d)])
def test_torchvision_weights_give_torchvisions_features_and_logits(name, ours, tmp_path):
    theirs = randomise_bn(getattr(torchvision.models, name)(weights=None))
    torch.save(theirs.state_dict(), tmp_path / "tv.pth")
    assert_same_function(ours(), theirs, tmp_path / "tv.pth", "torchvision")


def test_timm_weights_give_timms_features_and_logits(tmp_path):
    timm = pytest.importorskip("timm")
    theirs = randomise_bn(timm.create_model("resnext50_32x4d", pretrained=False))
    torch.save(theirs.state_dict(), tmp_path / "timm.pth")
    assert_same_function(resnext50_32x4d(), theirs, tmp_path / "timm.pth", "timm")


@pytest.mark.parametrize(
    "name, template",
    [("resnet152", (152, 1, 64)), ("resnext101_32x8d", (101, 32, 8)), ("resnext101_64x4d", (101, 64, 4))],
)
def test_template_is_inferred_from_tensors(name, template):
    with torch.device("meta"):
        state_dict = getattr(torchvision.models, name)(weights=None).state_dict()
    inferred = infer_template(torchvision_to_resnext_names(state_dict))
    assert (inferred["depth"], inferred["cardinality"], inferred["bottleneck_width"]) == template
    assert inferred["stem_out_channels"] == 64 and inferred["res2_out_channels"] == 256


def detector(opts=(), config="COCO-Detection/faster_rcnn_X50_32x4d_C4.yaml"):
    cfg = get_cfg()
    add_resnext_config(cfg)
    cfg.merge_from_file(get_config_file(config))
    cfg.merge_from_list(list(opts))
    cfg.MODEL.DEVICE = "cpu"
    return build_model(cfg)


def test_converted_torchvision_weights_load_into_the_c4_detector(tmp_path):
    theirs = randomise_bn(torchvision.models.resnext50_32x4d(weights=None))
    torch.save(theirs.state_dict(), tmp_path / "tv.pth")
    converted = convert_checkpoint(tmp_path / "tv.pth", "torchvision")
    info = converted["resnext_det"]
    assert info["template"] == {
        "depth": 50,
        "cardinality": 32,
        "bottleneck_width": 4,
        "block_form": "grouped",
        "stem_out_channels": 64,
        "res2_out_channels": 256,
        "shortcuts": True,
    }
    assert info["detectron2_cfg"] == {
        "INPUT.FORMAT": "RGB",
        "MODEL.PIXEL_MEAN": [123.675, 116.28, 103.53],
        "MODEL.PIXEL_STD": [58.395, 57.12, 57.375],
    }
    model = detector()
    check_weights_fit(model, converted["model"])
    result = model.load_state_dict(converted["model"], strict=False)
    assert not result.unexpected_keys
    assert not [k for k in result.missing_keys if k.startswith(("backbone.", "roi_heads.res5."))]
    # through detectron2's own checkpointer, as MODEL.WEIGHTS is loaded
    torch.save(converted, tmp_path / "d2.pth")
    fresh = detector()
    DetectionCheckpointer(fresh).load(str(tmp_path / "d2.pth"))
    torch.testing.assert_close(fresh.roi_heads.res5[2].conv3.weight, theirs.layer4[2].conv3.weight)
    torch.testing.assert_close(
        fresh.backbone.res4[5].conv2.norm.running_var, theirs.layer3[5].bn2.running_var
    )


def test_weights_fed_another_input_than_they_were_trained_on_are_refused(tmp_path):
    """A converted file records its input convention; a detector normalising otherwise (here
    detectron2's BGR Caffe defaults) is refused before training, naming the keys to set."""
    from resnext_det.checkpoint import check_weights_file_fits

    torch.save(torchvision.models.resnext50_32x4d(weights=None).state_dict(), tmp_path / "tv.pth")
    torch.save(convert_checkpoint(tmp_path / "tv.pth", "torchvision"), tmp_path / "d2.pth")
    check_weights_file_fits(detector(), str(tmp_path / "d2.pth"))  # the shipped configs: RGB
    bgr = detector(
        [
            "INPUT.FORMAT",
            "BGR",
            "MODEL.PIXEL_MEAN",
            "[103.53, 116.28, 123.675]",
            "MODEL.PIXEL_STD",
            "[1, 1, 1]",
        ]
    )
    with pytest.raises(WeightsMismatchError) as refused:
        check_weights_file_fits(bgr, str(tmp_path / "d2.pth"))
    message = str(refused.value)
    assert "expect RGB in 0-1, mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]" in message
    assert (
        "INPUT.FORMAT is BGR; MODEL.PIXEL_MEAN is [103.53, 116.28, 123.675]; MODEL.PIXEL_STD is [1, 1, 1]"
        in message
    )
    wanted = (
        "INPUT.FORMAT RGB MODEL.PIXEL_MEAN [123.675, 116.28, 103.53] MODEL.PIXEL_STD [58.395, 57.12, 57.375]"
    )
    assert f"set {wanted}" in message
    only_std = detector(["MODEL.PIXEL_STD", "[1, 1, 1]"])
    with pytest.raises(WeightsMismatchError, match=r"otherwise \(MODEL.PIXEL_STD is \[1, 1, 1\]\)"):
        check_weights_file_fits(only_std, str(tmp_path / "d2.pth"))


def test_weights_of_another_architecture_are_refused(tmp_path):
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    converted = convert_checkpoint(tmp_path / "r50.pth", "torchvision")
    with pytest.raises(
        WeightsMismatchError, match=r"shape mismatches, first: backbone\.res2\.0\.conv1\.weight"
    ):
        check_weights_fit(detector(), converted["model"], source="r50.pth")


def test_truncated_and_wrong_files_are_explained(tmp_path):
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    data = (tmp_path / "r50.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsMismatchError, match="cut.pth cannot be read as a checkpoint"):
        convert_checkpoint(tmp_path / "cut.pth", "torchvision")
    with pytest.raises(WeightsMismatchError, match="no stem convolution found; with --source pretrain"):
        convert_checkpoint(tmp_path / "r50.pth", "pretrain")
    with pytest.raises(FileNotFoundError, match="missing.pth does not exist"):
        convert_checkpoint(tmp_path / "missing.pth", "torchvision")


def test_convert_tool(tmp_path, capsys):
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    out = tmp_path / "r50_d2.pth"
    args = ["--source", "torchvision", str(tmp_path / "r50.pth"), str(out)]
    assert (
        convert_weights.main(
            [*args, "--config-file", get_config_file("COCO-Detection/faster_rcnn_R50_C4.yaml")]
        )
        == 0
    )
    assert "MODEL.PIXEL_MEAN [123.675,116.28,103.53]" in capsys.readouterr().out
    # a user error is one `error: ...` paragraph, exit status 1 (SystemExit with the message)
    before = out.read_bytes()
    with pytest.raises(SystemExit, match=r"^error: .*r50_d2.pth exists; pass --overwrite") as stopped:
        convert_weights.main(args)  # exists: not overwritten without --overwrite
    assert "\n" not in str(stopped.value.code) and out.read_bytes() == before
    assert convert_weights.main([*args, "--overwrite"]) == 0
    mismatch = tmp_path / "x50_d2.pth"
    x50 = get_config_file("COCO-Detection/faster_rcnn_X50_32x4d_C4.yaml")
    with pytest.raises(SystemExit, match="^error: .*does not fit the model"):
        convert_weights.main(
            ["--source", "torchvision", str(tmp_path / "r50.pth"), str(mismatch), "--config-file", x50]
        )
    assert not mismatch.exists()
    with pytest.raises(SystemExit, match=r"^error: config file 'nowhere.yaml' does not exist"):
        convert_weights.main([*args, "--overwrite", "--config-file", "nowhere.yaml"])


def test_pretrain_checkpoint_converts_for_the_demo_detector(tmp_path):
    """Our classifier checkpoint format ({"model": ..., "resnext_det": ...}) -> tiny C4 detector."""
    classifier = resnext(
        50, 4, 4, num_classes=5, stem_out_channels=16, res2_out_channels=32, block_form="aggregated"
    )
    metadata = {"input": {"format": "RGB", "range": "0-1", "mean": [0.5, 0.5, 0.5], "std": [0.25] * 3}}
    torch.save({"model": classifier.state_dict(), "resnext_det": metadata}, tmp_path / "ours.pth")
    converted = convert_checkpoint(tmp_path / "ours.pth", "pretrain")
    assert converted["resnext_det"]["template"]["block_form"] == "aggregated"
    assert converted["resnext_det"]["detectron2_cfg"]["MODEL.PIXEL_MEAN"] == [127.5] * 3
    tiny = get_cfg()
    add_resnext_config(tiny)
    tiny.merge_from_file(get_config_file("demo/faster_rcnn_tiny_C4.yaml"))
    tiny.MODEL.RESNEXT.BLOCK_FORM = "aggregated"
    check_weights_fit(build_model(tiny), converted["model"])
    # stage 1's ProposalNetwork has no res5 head: the same file fits it (the paper starts both
    # stages from the ImageNet weights), but a missing backbone tensor still does not
    tiny.MODEL.META_ARCHITECTURE = "ProposalNetwork"
    rpn = build_model(tiny)
    check_weights_fit(rpn, converted["model"])
    without_stem = {k: v for k, v in converted["model"].items() if not k.startswith("backbone.stem.")}
    with pytest.raises(WeightsMismatchError, match="missing from the file, first: backbone.stem"):
        check_weights_fit(rpn, without_stem)
