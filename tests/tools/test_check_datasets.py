"""tools/check_datasets.py: every problem of a layout on its own line (not only the first), the
counts against the known split sizes, and a clean layout passing, for the three kinds of config."""

from __future__ import annotations

import json
import shutil

from pretrain.synthetic import generate_image_folder, write_cifar_folder
from resnext_det.data.coco import KNOWN_IMAGE_COUNTS

import tool_runs
from PIL import Image

TOOL = "tools/check_datasets.py"


def problems(run) -> list[str]:
    return [line for line in run.stdout.splitlines() if line.startswith("problem: ")]


def test_a_detection_configs_datasets_are_checked_all_at_once(demo_root, tmp_path, monkeypatch):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png"):  # c.png is missing
        Image.new("RGB", (32, 24)).save(images / name)
    content = {
        "images": [
            {"id": i, "file_name": f"{n}.png", "width": 32, "height": 24} for i, n in enumerate("abc", 1)
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10], "area": 100, "iscrowd": 0}
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "mine.json").write_text(json.dumps(content))
    monkeypatch.setitem(KNOWN_IMAGE_COUNTS, "mine", 5)
    config = "configs/demo/fast_rcnn_tiny_C4.yaml"
    run = tool_runs.run_tool(
        TOOL, "--config-file", config, "--dataset", "mine", str(tmp_path / "mine.json"), str(images),
        "DATASETS.TRAIN", "('mine', 'resnext_demo_train')", "DATASETS.TEST", "('nobody',)",
    )  # fmt: skip
    assert run.returncode == 1, run.stderr[-2000:]
    assert problems(run) == [
        f"problem: mine: 1 of the 3 images of {tmp_path / 'mine.json'} are not in {images} (e.g. ['c.png'])",
        f"problem: mine: {tmp_path / 'mine.json'} lists 3 images, mine has 5: another split's file?",
        "problem: nobody: not registered; register it with --dataset nobody JSON IMAGE_ROOT or use one of "
        "detectron2's names (e.g. coco_2014_minival)",
    ]
    assert (
        "ok: resnext_demo_train: 160 images, " in run.stdout and "3 problems; docs/datasets.md" in run.stdout
    )
    missing = tool_runs.run_tool(TOOL, "--config-file", str(tmp_path / "no.yaml"))
    assert (
        missing.returncode == 1
        and f"error: config file '{tmp_path / 'no.yaml'}' does not exist" in missing.stderr
    )
    clean = tool_runs.run_tool(TOOL, "--config-file", config)
    assert clean.returncode == 0 and problems(clean) == []
    assert clean.stdout.count("ok: resnext_demo_") == 2  # train and val, each once


def test_an_imagenet_folder_with_a_flat_val_split_is_named(tmp_path):
    root = generate_image_folder(tmp_path / "imagenet", per_class={"train": 2, "val": 1}, size=8)
    val = root / "val"
    for picture in list(val.glob("*/*.JPEG")):  # as ILSVRC2012_img_val.tar unpacks: one flat folder
        picture.rename(val / picture.name)
    for folder in [p for p in val.iterdir() if p.is_dir()]:
        folder.rmdir()
    args = [
        "--config-file",
        "configs/ImageNet/X50_32x4d.yaml",
        "DATA.ROOT",
        str(root),
        "MODEL.NUM_CLASSES",
        "5",
    ]
    flat = tool_runs.run_tool(TOOL, *args)
    assert flat.returncode == 1
    assert problems(flat) == [
        f"problem: ImageNet in {root}: {val} holds images directly, not in class folders: sort them into "
        "<wnid>/ folders (docs/datasets.md: torchvision's ImageNet does it from the devkit)"
    ]
    shutil.rmtree(val)
    generate_image_folder(root, per_class={"train": 2, "val": 1}, size=8)
    sorted_run = tool_runs.run_tool(TOOL, *args)
    assert sorted_run.returncode == 0, sorted_run.stdout
    assert (
        f"ok: ImageNet in {root}: train 10 images in 5 classes, val 5 images in 5 classes"
        in sorted_run.stdout
    )


def test_a_cifar_folder_is_counted_against_cifars_sizes(tmp_path):
    root = write_cifar_folder(tmp_path / "cifar-10-batches-py", per_class=(3, 1))
    (root / "data_batch_5").unlink()
    run = tool_runs.run_tool(
        TOOL, "--config-file", "configs/CIFAR/ResNeXt29_8x64d_cifar10.yaml", "DATA.ROOT", str(root)
    )
    assert run.returncode == 1
    found = problems(run)
    assert len(found) == 2 and "data_batch_5 missing" in found[0]
    assert found[1] == f"problem: cifar10 in {root}: {root}: test has 10 images, cifar10's has 10,000"
