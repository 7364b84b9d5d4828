"""The paper's study as configs: every one builds, and its complexity is what its table needs.

Table 3 keeps ResNet-50's (-101's) complexity while the cardinality grows (params and FLOPs
within 5% of the 1x64d row of the same depth); Table 4 doubles ResNet-101's (each within 5% of
15 GFLOPs); Sec. 5.1 removes the shortcuts; Table 6 has 5000 classes. FLOPs are fvcore's
multiply-adds at 224x224, the paper's convention (``resnext_det.modeling.count_flops``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from pretrain.config import get_pretrain_cfg
from resnext_det.config import resnext_template_from_cfg
from resnext_det.modeling import count_params, resnext

import pytest
import torch

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "ImageNet"
TABLE3 = {depth: [f"ablations/R{depth}_{t}.yaml" for t in ("1x64d", "2x40d", "4x24d", "8x14d", "32x4d")]
          for depth in (50, 101)}  # fmt: skip
TABLE4 = ["R200.yaml", "R101_1x100d.yaml", "X101_2x64d.yaml", "X101_64x4d.yaml"]
NO_SHORTCUTS = ["ablations/R50_no_shortcuts.yaml", "ablations/X50_32x4d_no_shortcuts.yaml"]
IMAGENET_5K = sorted(str(p.relative_to(CONFIGS)) for p in (CONFIGS / "5K").glob("*.yaml"))


def load(relative: str):
    cfg = get_pretrain_cfg()
    cfg.merge_from_file(str(CONFIGS / relative))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def gflops(relative: str) -> float:
    """fvcore's multiply-adds of the config's classifier at 224x224, in billions: the numbers of
    benchmarks/results/complexity.json, counted once per session (``complexity.measure``)."""
    sys.path.insert(0, str(CONFIGS.parents[1] / "benchmarks"))
    from complexity import measure

    return measure(f"ImageNet/{relative}")["GFLOPs"]


def classifier(relative: str, device: str = "meta"):
    """The config's classifier; on the meta device unless its FLOPs are to be counted."""
    cfg = load(relative)
    with torch.device(device):
        return resnext(num_classes=cfg.MODEL.NUM_CLASSES, **resnext_template_from_cfg(cfg).asdict()), cfg


def test_every_config_of_the_study_is_in_a_table():
    every = {str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.yaml")}
    study = {*TABLE3[50], *TABLE3[101], *TABLE4, *NO_SHORTCUTS, *IMAGENET_5K}
    table1 = {"Base-ImageNet.yaml", "R50.yaml", "X50_32x4d.yaml", "R101.yaml", "X101_32x4d.yaml"}
    assert every == study | table1 and len(IMAGENET_5K) == 4


@pytest.mark.parametrize("depth", [50, 101])
def test_table3_templates_keep_the_complexity_of_resnet(depth):
    reference, _ = classifier(TABLE3[depth][0])
    for relative in TABLE3[depth]:
        model, cfg = classifier(relative)
        r = cfg.MODEL.RESNEXT
        assert r.DEPTH == depth and f"{r.CARDINALITY}x{r.BOTTLENECK_WIDTH}d" in relative
        assert count_params(model) == pytest.approx(count_params(reference), rel=0.05), relative
        assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.EPOCHS, tuple(cfg.SOLVER.STEPS)) == (
            256,
            90,
            (30, 60, 80),
        )


@pytest.mark.parametrize("depth", [50, 101])
def test_table3_flops_within_5_percent(depth):
    flops = {relative: gflops(relative) for relative in TABLE3[depth]}
    reference = flops[TABLE3[depth][0]]
    assert reference == pytest.approx({50: 4.1, 101: 7.8}[depth], rel=0.03)  # Table 1 / Table 5
    for relative, value in flops.items():
        assert value == pytest.approx(reference, rel=0.05), (relative, value)


def test_table4_models_have_twice_resnet101s_flops():
    for relative in TABLE4:
        assert gflops(relative) == pytest.approx(15.0, rel=0.05), relative
    assert load("R200.yaml").MODEL.RESNEXT.DEPTH == 200


def test_table4_templates():
    templates = {r: resnext_template_from_cfg(load(r)) for r in TABLE4}
    assert [(t.depth, t.cardinality, t.bottleneck_width) for t in templates.values()] == [
        (200, 1, 64), (101, 1, 100), (101, 2, 64), (101, 64, 4)
    ]  # fmt: skip
    model, _ = classifier("R200.yaml")
    assert [len(model.stages[i]) for i in range(4)] == [3, 24, 36, 3]


def test_no_shortcut_variants_are_plain_stacks():
    for relative in NO_SHORTCUTS:
        plain, cfg = classifier(relative)
        assert cfg.MODEL.RESNEXT.SHORTCUTS is False
        assert not [name for name, _ in plain.named_modules() if name.endswith("shortcut")]
        cfg.MODEL.RESNEXT.SHORTCUTS = True
        with torch.device("meta"):
            residual = resnext(num_classes=1000, **resnext_template_from_cfg(cfg).asdict())
        projections = sum(
            p.numel() for name, p in residual.named_parameters() if ".shortcut." in name
        )  # the four projection shortcuts, one per stage
        assert count_params(plain) == count_params(residual) - projections > 0


def test_without_shortcuts_a_block_is_its_residual_branch():
    from resnext_det.modeling import ResNeXtBlock

    torch.manual_seed(0)
    with_shortcut = ResNeXtBlock(64, 64, bottleneck_channels=32, cardinality=4).eval()
    plain = ResNeXtBlock(64, 64, bottleneck_channels=32, cardinality=4, with_shortcut=False).eval()
    plain.load_state_dict(with_shortcut.state_dict())  # identity shortcut: the same tensors
    x = torch.randn(2, 64, 8, 8)
    assert torch.allclose(plain(x), torch.relu(with_shortcut._residual(x)))
    assert not torch.allclose(plain(x), with_shortcut(x))


def test_shortcuts_key_reaches_the_detector_and_its_weights():
    from resnext_det import add_resnext_config, get_config_file
    from resnext_det.checkpoint.convert import infer_template

    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    cfg = get_cfg()
    add_resnext_config(cfg)
    cfg.merge_from_file(get_config_file("demo/faster_rcnn_tiny_C4.yaml"))
    cfg.merge_from_list(["MODEL.RESNEXT.SHORTCUTS", "False", "MODEL.DEVICE", "cpu"])
    detector = build_model(cfg)
    assert not [k for k in detector.state_dict() if ".shortcut." in k]
    assert infer_template(detector.state_dict())["shortcuts"] is False
    cfg.MODEL.RESNEXT.SHORTCUTS = "no"
    with pytest.raises(ValueError, match="MODEL.RESNEXT.SHORTCUTS must be True or False"):
        build_model(cfg)


def test_plain_stack_weights_convert_into_the_plain_detector(tmp_path):
    from resnext_det import add_resnext_config, get_config_file
    from resnext_det.checkpoint.convert import convert_checkpoint

    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    cfg = get_cfg()
    add_resnext_config(cfg)
    cfg.merge_from_file(get_config_file("demo/faster_rcnn_tiny_C4.yaml"))
    cfg.merge_from_list(["MODEL.RESNEXT.SHORTCUTS", "False", "MODEL.DEVICE", "cpu"])
    template = resnext_template_from_cfg(cfg)
    torch.save({"model": resnext(num_classes=4, **template.asdict()).state_dict()}, tmp_path / "plain.pth")
    converted = convert_checkpoint(tmp_path / "plain.pth", "pretrain")
    assert converted["resnext_det"]["detectron2_cfg"]["MODEL.RESNEXT.SHORTCUTS"] is False
    assert converted["resnext_det"]["template"]["shortcuts"] is False
    detector = build_model(cfg)
    trunk = {
        k
        for k in detector.state_dict()
        if k.startswith(("backbone.", "roi_heads.res5.")) and not k.endswith("num_batches_tracked")
    }
    assert set(converted["model"]) == trunk  # every trunk tensor (the converter drops BN counters)


def test_imagenet_5k_configs():
    for relative in IMAGENET_5K:
        model, cfg = classifier(relative)
        assert cfg.MODEL.NUM_CLASSES == 5000 and model.linear.out_features == 5000
        assert "imagenet5k" in cfg.DATA.ROOT


def test_the_readmes_complexity_table_is_current():
    """benchmarks/results/complexity.json (docs/experiments.md's table) is what the configs build today;
    regenerate it with `python benchmarks/complexity.py` after changing a config."""
    import json
    import sys

    sys.path.insert(0, str(CONFIGS.parents[1] / "benchmarks"))
    from complexity import STUDY, measure

    rows = json.loads((CONFIGS.parents[1] / "benchmarks" / "results" / "complexity.json").read_text())
    assert [row["config"] for row in rows] == [f"configs/{relative}" for relative in STUDY]
    for row in rows:
        fresh = measure(row["config"].removeprefix("configs/"))
        assert {k: row[k] for k in fresh} == fresh, row["config"]
