"""Datasets named on the command line, and missing COCO files explained before training."""

from __future__ import annotations

import argparse
import json

from resnext_det import get_config_file
from resnext_det.data.coco import (
    DatasetFileError,
    add_dataset_argument,
    check_dataset_files,
    register_datasets_from_args,
)
from resnext_det.engine import setup_cfg

import pytest


def test_missing_coco_2014_files_name_the_path_and_layout(tmp_path, monkeypatch):
    cfg = setup_cfg(get_config_file("COCO-Detection/rpn_X50_32x4d_C4.yaml"))
    with pytest.raises(
        DatasetFileError,
        match=r"dataset 'coco_2014_train': annotation file .*instances_train2014\.json "
        r"does not exist; expected COCO 2014 as detectron2 expects it",
    ):
        check_dataset_files(cfg)


def test_a_coco_json_named_on_the_command_line(tmp_path):
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
