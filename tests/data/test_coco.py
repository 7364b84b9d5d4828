"""Datasets named on the command line, and missing COCO files explained before training."""

from __future__ import annotations

import argparse
import json

from resnext_det import get_config_file
from resnext_det.data.checked_mapper import ImageCheckingMapper
from resnext_det.data.coco import (
    AnnotationFileError,
    DatasetFileError,
    check_dataset_files,
    check_images_exist,
    load_checked_coco_json,
    read_coco_json,
)
from resnext_det.engine import setup_cfg
from resnext_det.engine.cli import add_dataset_argument, register_datasets_from_args
from resnext_det.errors import ImageFileError

import pytest
from detectron2.data import DatasetMapper
from PIL import Image

# code the two detectron2 builds differ in: CI runs this file on both (tests/README.md)
pytestmark = pytest.mark.both_builds


def test_missing_coco_2014_files_name_the_path_and_layout(tmp_path, monkeypatch):
    cfg = setup_cfg(get_config_file("COCO-Detection/rpn_X50_32x4d_C4.yaml"))
    with pytest.raises(
        DatasetFileError,
        match=r"dataset 'coco_2014_train': annotation file .*instances_train2014\.json "
        r"does not exist; expected COCO 2014 as detectron2 expects it",
    ):
        check_dataset_files(cfg)


def test_a_coco_json_named_on_the_command_line(tmp_path, demo_root):
    # demo_root: the demo config keeps resnext_demo_train in DATASETS.TRAIN; its files must exist
    images = tmp_path / "images"
    images.mkdir()
    annotations = tmp_path / "a.json"
    annotations.write_text(
        json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "x"}]})
    )
    parser = add_dataset_argument(argparse.ArgumentParser())
    args = parser.parse_args(
        [
            "--dataset",
            "mine_train",
            str(annotations),
            str(images),
            "--dataset",
            "mine_val",
            str(tmp_path / "missing.json"),
            str(images),
        ]
    )
    assert register_datasets_from_args(args) == ["mine_train", "mine_val"]
    cfg = setup_cfg(
        get_config_file("demo/faster_rcnn_tiny_C4.yaml"),
        ["DATASETS.TRAIN", "('mine_train',)", "DATASETS.TEST", "('mine_train',)"],
    )
    check_dataset_files(cfg)
    bad = setup_cfg(get_config_file("demo/faster_rcnn_tiny_C4.yaml"), ["DATASETS.TEST", "('mine_val',)"])
    with pytest.raises(
        DatasetFileError, match=r"dataset 'mine_val': annotation file .*missing\.json does not exist"
    ):
        check_dataset_files(bad)
    unknown = setup_cfg(get_config_file("demo/faster_rcnn_tiny_C4.yaml"), ["DATASETS.TEST", "('nobody',)"])
    with pytest.raises(
        DatasetFileError, match="'nobody' is not registered; register it with --dataset nobody"
    ):
        check_dataset_files(unknown)


def coco(**changes) -> dict:
    content = {
        "images": [{"id": 1, "file_name": "a.png", "height": 20, "width": 30}],
        "annotations": [
            {"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0}
        ],
        "categories": [{"id": 1, "name": "x"}],
    }
    content.update(changes)
    return content


def annotation(**changes) -> list[dict]:
    return [
        {"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0, **changes}
    ]


MALFORMED_JSON = [
    ({"images": None}, r"key 'images' is missing or not a list"),
    ({"categories": "x"}, r"key 'categories' is missing or not a list"),
    (
        {"annotations": annotation(bbox=[1, 2, -3, 4])},
        r"annotations\[0\] \(id 5\) has a box of negative size \[1, 2, -3, 4\]",
    ),
    ({"annotations": annotation(bbox=[1, 2, 3])}, r"has bbox \[1, 2, 3\]; expected \[x, y, width, height\]"),
    (
        {"annotations": annotation(category_id=7)},
        r"has category_id 7, which is not in 'categories' \(known: \[1\]\)",
    ),
    ({"annotations": annotation(image_id=2)}, r"refers to image_id 2, which is not in 'images'"),
    ({"annotations": annotation() + annotation()}, r"annotations\[1\] repeats id 5"),
    (
        {"images": [{"id": 1, "file_name": "a.png", "height": 0, "width": 30}]},
        r"\(a.png\) has height 0; expected a positive int",
    ),
]


@pytest.mark.parametrize(("changes", "message"), MALFORMED_JSON)
def test_a_malformed_coco_json_is_named_with_its_entry(tmp_path, changes, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(coco(**changes)))
    with pytest.raises(AnnotationFileError, match=message):
        load_checked_coco_json(str(path), str(tmp_path), "bad")


def test_a_truncated_json_and_missing_images(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text(json.dumps(coco())[:-10])
    with pytest.raises(AnnotationFileError, match=r"cut.json is not valid JSON \(.*\); is it complete"):
        read_coco_json(path)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(coco()))
    with pytest.raises(
        ImageFileError, match=r"dataset 'd': 1 of the 1 images of the json are not in .* \(e.g. \['a.png'\]\)"
    ):
        check_images_exist(read_coco_json(good), tmp_path, "d")
    Image.new("RGB", (30, 20)).save(tmp_path / "a.png")
    check_images_exist(read_coco_json(good), tmp_path, "d")
    (record,) = load_checked_coco_json(str(good), str(tmp_path), "d")
    assert record["annotations"][0]["bbox"] == [1, 2, 3, 4] and record["file_name"] == str(tmp_path / "a.png")


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n\x00\x00", b"not an image at all"])
def test_an_unreadable_image_names_the_file(tmp_path, demo_root, content):
    cfg = setup_cfg(get_config_file("demo/faster_rcnn_tiny_C4.yaml"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(content)
    record = {"file_name": str(broken), "image_id": 3, "height": 20, "width": 30, "annotations": []}
    with pytest.raises(
        ImageFileError, match=rf"cannot read image {broken} \(image id 3; .*\): it is missing, truncated"
    ):
        ImageCheckingMapper(DatasetMapper(cfg, is_train=True))(record)
