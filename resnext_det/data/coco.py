"""COCO-format datasets: the paper's COCO 2014 splits and any json + image folder, checked early.

detectron2 registers the COCO 2014 names the paper needs (``coco_2014_train``,
``coco_2014_valminusminival``, ``coco_2014_minival``) under ``$DETECTRON2_DATASETS/coco``, but a
missing file only surfaces when the loader opens it, deep in a trainer. ``check_dataset_files``
names the dataset, the missing path and the expected layout before anything starts.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

__all__ = ["DatasetFileError", "add_dataset_argument", "register_datasets_from_args", "check_dataset_files"]

_COCO_LAYOUT = (
    "COCO 2014 as detectron2 expects it: $DETECTRON2_DATASETS/coco/{train2014,val2014}/ and "
    "$DETECTRON2_DATASETS/coco/annotations/instances_{train2014,valminusminival2014,minival2014}.json "
    f"(DETECTRON2_DATASETS is now {os.environ.get('DETECTRON2_DATASETS', 'unset, so ./datasets')})"
)


class DatasetFileError(FileNotFoundError):
    """A registered dataset's annotation file or image folder is missing."""


def add_dataset_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--dataset",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "JSON", "IMAGE_ROOT"),
        help="register a COCO-format dataset under NAME (repeatable); use NAME in DATASETS.TRAIN/TEST",
    )
    return parser


def register_datasets_from_args(args) -> list[str]:
    """Register every ``--dataset NAME JSON IMAGE_ROOT`` (idempotent, once per process)."""
    names = []
    for name, json_file, image_root in getattr(args, "dataset", []) or []:
        if name not in DatasetCatalog.list():
            register_coco_instances(name, {}, json_file, image_root)
        names.append(name)
    return names


def check_dataset_files(cfg) -> None:
    """Every dataset of DATASETS.TRAIN/TEST must be registered and its files present."""
    for name in dict.fromkeys((*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST)):
        if name not in DatasetCatalog.list():
            raise DatasetFileError(
                f"dataset {name!r} is not registered; register it with --dataset {name} JSON IMAGE_ROOT "
                "or use one of detectron2's names (e.g. coco_2014_minival)"
            )
        metadata = MetadataCatalog.get(name)
        json_file, image_root = metadata.get("json_file", None), metadata.get("image_root", None)
        hint = _COCO_LAYOUT if name.startswith("coco_") else "a COCO-format json and its image folder"
        if json_file and not Path(json_file).is_file():
            raise DatasetFileError(
                f"dataset {name!r}: annotation file {json_file} does not exist; expected {hint}"
            )
        if image_root and not Path(image_root).is_dir():
            raise DatasetFileError(
                f"dataset {name!r}: image folder {image_root} does not exist; expected {hint}"
            )
