"""The ImageNet folder layout checks, decoding errors and the Sec. 4 transforms."""

from __future__ import annotations

import shutil

from pretrain.data import DatasetLayoutError, build_datasets, scan_split
from pretrain.synthetic import SYNTHETIC_CLASSES
from pretrain.transforms import Lighting, build_eval_transform, build_train_transform
from resnext_det.errors import ImageFileError

import pytest
import torch
from PIL import Image


def test_scan_split_reads_classes_in_sorted_order(image_folder):
    classes, samples = scan_split(image_folder, "train", 5)
    assert classes == list(SYNTHETIC_CLASSES)
    assert len(samples) == 300
    assert {label for _, label in samples} == set(range(5))
    assert all(path.endswith(".JPEG") and f"/{classes[label]}/" in path for path, label in samples)


def test_missing_split_names_the_folder(tmp_path):
    with pytest.raises(DatasetLayoutError, match=f"{tmp_path}/train does not exist; expected"):
        scan_split(tmp_path, "train", 1000)


def test_wrong_number_of_classes(image_folder):
    with pytest.raises(DatasetLayoutError, match="has 5 class folders, expected 1000"):
        scan_split(image_folder, "val", 1000)


def test_empty_class_folder(image_folder, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(image_folder, root)
    for image in (root / "val" / SYNTHETIC_CLASSES[2]).iterdir():
        image.unlink()
    with pytest.raises(DatasetLayoutError, match=f"hold no images.*{SYNTHETIC_CLASSES[2]}"):
        scan_split(root, "val", 5)


def test_train_and_val_classes_must_agree(image_folder, tmp_path, tiny_cfg):
    root = tmp_path / "copy"
    shutil.copytree(image_folder, root)
    (root / "val" / SYNTHETIC_CLASSES[0]).rename(root / "val" / "n99999999")
    with pytest.raises(
        DatasetLayoutError, match="only in train: \\['n00000001'\\], only in val: \\['n99999999'\\]"
    ):
        build_datasets(tiny_cfg("DATA.ROOT", str(root)))


def test_unreadable_image_is_reported_by_path(image_folder, tmp_path, tiny_cfg):
    root = tmp_path / "copy"
    shutil.copytree(image_folder, root)
    broken = sorted((root / "val" / SYNTHETIC_CLASSES[1]).iterdir())[0]
    broken.write_bytes(broken.read_bytes()[:40])  # truncated JPEG
    dataset = build_datasets(tiny_cfg("DATA.ROOT", str(root)), with_train=False)["val"]
    index = next(i for i, (p, _) in enumerate(dataset.samples) if p == str(broken))
    with pytest.raises(ImageFileError, match=f"cannot read image {broken}"):
        dataset[index]


def test_transforms_shapes_and_normalisation(tiny_cfg):
    cfg = tiny_cfg()
    image = Image.new("RGB", (50, 40), (124, 116, 104))  # ~ the ImageNet mean colour
    train = build_train_transform(cfg)(image)
    evaluation = build_eval_transform(cfg)(image)
    assert train.shape == evaluation.shape == (3, 32, 32)
    assert evaluation.abs().max() < 0.02  # mean colour normalises to ~0


def test_table5_320_crop_option(tiny_cfg):
    cfg = tiny_cfg("TEST.RESIZE", "365", "TEST.CROP_SIZE", "320")
    assert build_eval_transform(cfg)(Image.new("RGB", (500, 400))).shape == (3, 320, 320)


def test_lighting_adds_one_colour_shift_per_image():
    torch.manual_seed(0)
    image = torch.rand(3, 8, 8)
    assert torch.equal(Lighting(0.0)(image), image)
    shifted = Lighting(0.1)(image) - image
    assert shifted.abs().sum() > 0
    torch.testing.assert_close(shifted, shifted[:, :1, :1].expand_as(shifted))
