"""ResNeXt-29 for CIFAR (appendix A, Table 7): the network, the recipe's configs, the python
batches read and checked, the augmentation, and a tiny CIFAR-format run that learns."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from pretrain.cifar import get_cifar_cfg
from pretrain.cifar_data import build_cifar_transforms, read_cifar_split
from pretrain.synthetic import write_cifar_folder
from resnext_det import get_config_file, resnext_cifar
from resnext_det.errors import DatasetLayoutError, TemplateError
from resnext_det.modeling import count_params

import numpy as np
import pytest
import torch
from tool_runs import run_tool

ROOT = Path(__file__).resolve().parents[2]
TABLE7 = {  # config -> (cardinality, classes, the paper's parameter count in millions)
    "CIFAR/ResNeXt29_8x64d_cifar10.yaml": (8, 10, 34.4),
    "CIFAR/ResNeXt29_16x64d_cifar10.yaml": (16, 10, 68.1),
    "CIFAR/ResNeXt29_8x64d_cifar100.yaml": (8, 100, 34.4),
    "CIFAR/ResNeXt29_16x64d_cifar100.yaml": (16, 100, 68.1),
}


def load(relative: str, *opts):
    cfg = get_cifar_cfg()
    cfg.merge_from_file(get_config_file(relative))
    cfg.merge_from_list(list(opts))
    return cfg


@pytest.mark.parametrize("cardinality, millions", [(8, 34.4), (16, 68.1)])
def test_resnext29_has_the_papers_parameter_count(cardinality, millions):
    with torch.device("meta"):
        model = resnext_cifar(depth=29, cardinality=cardinality, bottleneck_width=64, num_classes=10)
    assert count_params(model) / 1e6 == pytest.approx(millions, rel=0.01)


def test_three_stages_of_three_blocks_at_32_16_8():
    model = resnext_cifar(
        depth=29, cardinality=2, bottleneck_width=4, stem_out_channels=16, res2_out_channels=32
    )
    sizes = []
    for stage in model.stages:
        stage.register_forward_hook(lambda m, i, out: sizes.append((out.shape[1], out.shape[2])))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert sizes == [(32, 32), (64, 16), (128, 8)]  # outputs double as the maps halve
    assert [len(s) for s in model.stages] == [3, 3, 3] and model.stem.conv1.kernel_size == (3, 3)
    assert model.stages[0][0].conv2.groups == 2 and model.stages[2][0].conv2.out_channels == 2 * 4 * 4
    with pytest.raises(TemplateError, match=r"depth must be one of \[11, 20, 29"):
        resnext_cifar(depth=50)


@pytest.mark.parametrize("relative", sorted(TABLE7))
def test_table7_configs_are_the_papers_recipe(relative):
    cardinality, classes, millions = TABLE7[relative]
    cfg = load(relative)
    s, i = cfg.SOLVER, cfg.INPUT
    assert (s.IMS_PER_BATCH, s.BASE_LR, s.REFERENCE_BATCH, s.WEIGHT_DECAY, s.MOMENTUM) == (
        128,
        0.1,
        128,
        5e-4,
        0.9,
    )
    assert (s.EPOCHS, tuple(s.STEPS), s.GAMMA) == (300, (150, 225), 0.1)
    assert (i.CROP_SIZE, i.PAD, i.HFLIP, i.COLOR_JITTER, i.LIGHTING) == (32, 4, True, 0.0, 0.0)
    r = cfg.MODEL.RESNEXT
    assert (r.DEPTH, r.CARDINALITY, r.BOTTLENECK_WIDTH, cfg.MODEL.NUM_CLASSES) == (
        29,
        cardinality,
        64,
        classes,
    )
    assert cfg.DATA.DATASET == ("cifar10" if classes == 10 else "cifar100")
    from pretrain.cifar import cifar_template_from_cfg

    with torch.device("meta"):
        model = resnext_cifar(num_classes=classes, **cifar_template_from_cfg(cfg).asdict())
    assert count_params(model) / 1e6 == pytest.approx(millions, rel=0.01 if classes == 10 else 0.02)


def test_python_batches_are_read_in_their_layout(tmp_path):
    root = write_cifar_folder(tmp_path / "c10", "cifar10", per_class=(5, 2))
    assert sorted(p.name for p in root.iterdir()) == [
        "batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
    ]  # fmt: skip
    with open(root / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    images, labels = read_cifar_split(root, "cifar10", "train", 10)
    assert (
        images.shape == (50, 32, 32, 3)
        and images.dtype == np.uint8
        and sorted(set(labels)) == list(range(10))
    )
    # row 0 of data_batch_1 is image 0: 1024 red values, then green, then blue, each row-major
    first = raw[b"data"][0]
    assert images[0, 5, 7, 0] == first[5 * 32 + 7] and images[0, 5, 7, 2] == first[2048 + 5 * 32 + 7]
    assert labels[0] == raw[b"labels"][0]
    root100 = write_cifar_folder(tmp_path / "c100", "cifar100", per_class=(3, 1))
    images, labels = read_cifar_split(root100, "cifar100", "test", 100)
    assert images.shape == (10, 32, 32, 3) and labels.max() <= 9


def _write(path, content):
    with open(path, "wb") as f:
        pickle.dump(content, f, protocol=2)


def test_bad_files_are_named(tmp_path):
    root = write_cifar_folder(tmp_path / "c10", "cifar10", per_class=(5, 2))
    with pytest.raises(DatasetLayoutError, match="cifar100 has 100 classes, but MODEL.NUM_CLASSES is 10"):
        read_cifar_split(root, "cifar100", "train", 10)
    with pytest.raises(DatasetLayoutError, match="not a cifar100 python folder: train missing; expected tra"):
        read_cifar_split(root, "cifar100", "train", 100)
    (root / "data_batch_3").unlink()
    with pytest.raises(DatasetLayoutError, match="data_batch_3 missing; expected data_batch_1, .*test_batch"):
        read_cifar_split(root, "cifar10", "train", 10)
    _write(root / "data_batch_3", {b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]})
    with pytest.raises(DatasetLayoutError, match=r"data_batch_3: b'data' must be uint8 of shape \(N, 3072\)"):
        read_cifar_split(root, "cifar10", "train", 10)
    _write(root / "data_batch_3", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]})
    with pytest.raises(DatasetLayoutError, match=r"labels must be 0..9 .*found 0..12"):
        read_cifar_split(root, "cifar10", "train", 10)
    _write(root / "data_batch_3", {b"data": np.zeros((2, 3072), np.uint8)})
    with pytest.raises(DatasetLayoutError, match=r"expected a dict with b'data' and b'labels'"):
        read_cifar_split(root, "cifar10", "train", 10)
    (root / "data_batch_3").write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")  # a pickle that runs a command
    with pytest.raises(DatasetLayoutError, match="not a readable CIFAR python batch.*asks to load os.system"):
        read_cifar_split(root, "cifar10", "train", 10)


def test_augmentation_is_a_padded_crop_and_a_flip_only():
    cfg = load("demo/cifar_tiny.yaml")
    train, evaluation = build_cifar_transforms(cfg)
    image = torch.full((3, 32, 32), 0.5)
    normalized = evaluation(image)
    assert torch.allclose(normalized[0], torch.full((32, 32), (0.5 - cfg.INPUT.MEAN[0]) / cfg.INPUT.STD[0]))
    torch.manual_seed(0)
    shifted = 0
    for _ in range(50):
        out = train(image)
        assert out.shape == (3, 32, 32)
        zero_rows = int((out[0] == 0).all(dim=1).sum())
        zero_columns = int((out[0] == 0).all(dim=0).sum())
        assert zero_rows <= 4 and zero_columns <= 4  # at most the 4-pixel zero padding comes in
        shifted += zero_rows + zero_columns > 0
        assert set(out[0].unique().tolist()) <= {0.0, normalized[0, 0, 0].item()}  # no colour change
    assert shifted > 30  # a random crop of the padded image is rarely the centre


def run(*args):
    result = run_tool(*args)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow  # 4 epochs of a small ResNeXt on 1000 images, then its evaluation
def test_a_tiny_cifar_run_learns(tmp_path):
    data = write_cifar_folder(tmp_path / "cifar", "cifar10", per_class=(100, 20))
    out = tmp_path / "run"
    common = ["tools/train_cifar.py", "--config-file", "configs/demo/cifar_tiny.yaml"]
    run(*common, "DATA.ROOT", str(data), "OUTPUT_DIR", str(out))
    trained = json.loads((out / "final_metrics.json").read_text())
    assert trained["dataset"] == "cifar10"
    assert trained["top1_err"] <= MAX_TOP1_ERR, trained  # chance: 90%
    checkpoint = torch.load(out / "model_final.pth", weights_only=True)
    assert (
        checkpoint["resnext_det"]["network"] == "cifar"
        and checkpoint["resnext_det"]["template"]["depth"] == 11
    )
    evaluated, weights = str(tmp_path / "eval"), str(out / "model_final.pth")
    run(*common, "--eval-only", "DATA.ROOT", str(data), "MODEL.WEIGHTS", weights, "OUTPUT_DIR", evaluated)
    again = json.loads((tmp_path / "eval" / "final_metrics.json").read_text())
    assert again["top1_err"] == pytest.approx(trained["top1_err"])


#: configs/demo/cifar_tiny.yaml on write_cifar_folder(per_class=(100, 20)), 4 epochs: measured
#: 17.0, 12.5, 24.0, 8.0% top-1 error with SEED 0-3 (2026-12-01, 2 cores); chance is 90%.
MAX_TOP1_ERR = 45.0
