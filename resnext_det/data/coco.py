"""COCO-format datasets: the paper's COCO 2014 splits and any json + image folder, checked early.

detectron2 registers the COCO 2014 names the paper needs (``coco_2014_train``,
``coco_2014_valminusminival``, ``coco_2014_minival``) under ``$DETECTRON2_DATASETS/coco``, but a
missing file, a malformed json or a missing image only surfaces when the loader reaches it,
deep in a trainer (a ``KeyError`` from pycocotools, hours into a run), and some mistakes never
surface (a box of negative size is silently dropped). ``check_dataset_files`` reads every json
before anything starts and names the dataset, the file, the entry and what was expected:

* the json parses, and has ``images`` and ``categories`` lists (``annotations`` may be absent);
* every image has a unique ``id``, a ``file_name`` and positive ``height``/``width``, and the file
  exists under the image root;
* every annotation has a unique ``id``, an ``image_id`` and ``category_id`` that exist, and a
  ``bbox`` of four finite numbers with non-negative width and height.

``--dataset`` registrations load through ``load_checked_coco_json``, which runs the same checks
and turns any other failure of detectron2's loader into an ``AnnotationFileError``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from ..errors import AnnotationFileError, DatasetFileError, ImageFileError, ResNeXtDetError

__all__ = [
    "AnnotationFileError",
    "DatasetFileError",
    "check_coco_content",
    "check_dataset_files",
    "KNOWN_IMAGE_COUNTS",
    "check_datasets",
    "coco_dataset_report",
    "check_images_exist",
    "load_checked_coco_json",
    "missing_images",
    "read_coco_json",
    "register_checked_coco",
]

_COCO_LAYOUT = (
    "COCO 2014 as detectron2 expects it: $DETECTRON2_DATASETS/coco/{train2014,val2014}/ and "
    "$DETECTRON2_DATASETS/coco/annotations/instances_{train2014,valminusminival2014,minival2014}.json "
    f"(DETECTRON2_DATASETS is now {os.environ.get('DETECTRON2_DATASETS', 'unset, so ./datasets')})"
)


def read_coco_json(json_file: str | os.PathLike) -> dict:
    """Parse and check a COCO json (``AnnotationFileError`` naming the file and the entry)."""
    try:
        content = json.loads(Path(json_file).read_bytes())
    except FileNotFoundError:
        raise DatasetFileError(f"annotation file {json_file} does not exist") from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise AnnotationFileError(
            f"{json_file} is not valid JSON ({e}); is it complete (not truncated by a copy)?"
        ) from None
    check_coco_content(content, json_file)
    return content


def _fail(json_file, message: str):
    raise AnnotationFileError(f"{json_file}: {message}; expected the COCO detection format (cocodataset.org)")


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_id(value) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def _check_unique_ids(json_file, entries: list, kind: str) -> set:
    ids = set()
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict) or "id" not in entry:
            _fail(json_file, f"{kind}[{k}] is {str(entry)[:80]!r}, not an object with an 'id'")
        image_id = entry["id"]
        if not _is_id(image_id):
            _fail(json_file, f"{kind}[{k}] has id {image_id!r}; ids must be integers or strings")
        if image_id in ids:
            _fail(json_file, f"{kind}[{k}] repeats id {image_id!r}; ids must be unique")
        ids.add(image_id)
    return ids


def check_coco_content(content, json_file: str | os.PathLike = "<json>") -> None:
    """The structural checks of the module docstring on a parsed COCO json."""
    if not isinstance(content, dict):
        _fail(json_file, f"the top level is a {type(content).__name__}, not an object")
    for key in ("images", "categories"):
        if not isinstance(content.get(key), list):
            _fail(json_file, f"key {key!r} is missing or not a list (found keys {sorted(content)[:8]})")
    annotations = content.get("annotations", [])
    if not isinstance(annotations, list):
        _fail(json_file, f"'annotations' is a {type(annotations).__name__}, not a list")
    image_ids = _check_unique_ids(json_file, content["images"], "images")
    category_ids = _check_unique_ids(json_file, content["categories"], "categories")
    for k, image in enumerate(content["images"]):
        if not isinstance(image.get("file_name"), str) or not image["file_name"]:
            _fail(json_file, f"images[{k}] (id {image['id']!r}) has no 'file_name'")
        for key in ("height", "width"):
            value = image.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                _fail(
                    json_file,
                    f"images[{k}] ({image['file_name']}) has {key} {value!r}; expected a positive int",
                )
    _check_unique_ids(json_file, annotations, "annotations")
    for k, annotation in enumerate(annotations):
        where = f"annotations[{k}] (id {annotation['id']!r})"
        if not _is_id(annotation.get("image_id")) or annotation["image_id"] not in image_ids:
            _fail(
                json_file,
                f"{where} refers to image_id {annotation.get('image_id')!r}, which is not in 'images'",
            )
        if not _is_id(annotation.get("category_id")) or annotation["category_id"] not in category_ids:
            _fail(
                json_file,
                f"{where} has category_id {annotation.get('category_id')!r}, which is not in 'categories' "
                f"(known: {sorted(category_ids, key=str)[:10]})",
            )
        bbox = annotation.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            _fail(
                json_file, f"{where} has bbox {bbox!r}; expected [x, y, width, height], four finite numbers"
            )
        if bbox[2] < 0 or bbox[3] < 0:
            _fail(json_file, f"{where} has a box of negative size {bbox!r} ([x, y, width, height])")


def missing_images(content: dict, image_root: str | os.PathLike) -> list[str]:
    """The ``file_name`` of every image of a COCO json that is not in ``image_root``."""
    return [
        image["file_name"]
        for image in content["images"]
        if not Path(image_root, image["file_name"]).is_file()
    ]


def check_images_exist(content: dict, image_root: str | os.PathLike, dataset_name: str) -> None:
    missing = missing_images(content, image_root)
    if missing:
        raise ImageFileError(
            f"dataset {dataset_name!r}: {len(missing)} of the {len(content['images'])} images of the json "
            f"are not in {image_root} (e.g. {missing[:3]}); copy them there or fix the image root"
        )


def load_checked_coco_json(json_file: str, image_root: str, dataset_name: str) -> list[dict]:
    """detectron2's ``load_coco_json`` after ``read_coco_json``'s checks; whatever else goes wrong
    in it is an ``AnnotationFileError`` naming the file."""
    read_coco_json(json_file)
    try:
        return load_coco_json(json_file, image_root, dataset_name)
    except Exception as e:
        raise AnnotationFileError(
            f"{json_file}: detectron2's COCO loader failed ({type(e).__name__}: {str(e)[:200]}); "
            "check the entries it names against the COCO detection format"
        ) from None


def register_checked_coco(
    name: str, json_file: str, image_root: str, prepare=None, thing_classes: list[str] | None = None
) -> None:
    """``register_coco_instances`` with ``load_checked_coco_json`` as the loader.

    ``prepare()``, if given, runs before each load (the demo data generates itself there);
    ``thing_classes`` are known before the first load when given."""

    def load() -> list[dict]:
        if prepare is not None:
            prepare()
        return load_checked_coco_json(json_file, image_root, name)

    DatasetCatalog.register(name, load)
    metadata = {"json_file": json_file, "image_root": image_root, "evaluator_type": "coco"}
    if thing_classes is not None:
        metadata["thing_classes"] = thing_classes
    MetadataCatalog.get(name).set(**metadata)


def check_dataset_files(cfg) -> None:
    """Every dataset of DATASETS.TRAIN/TEST must be registered, its json well-formed (module
    docstring) and every image it names present."""
    check_datasets((*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST))


#: images per split of the COCO datasets the shipped configs read (docs/datasets.md)
KNOWN_IMAGE_COUNTS = {
    "coco_2014_train": 82783,
    "coco_2014_val": 40504,
    "coco_2014_valminusminival": 35504,
    "coco_2014_minival": 5000,
    "coco_2017_train": 118287,
    "coco_2017_val": 5000,
}


def coco_dataset_report(name: str) -> tuple[str | None, list[str]]:
    """(a summary line, every problem found) for a detection dataset: ``check_datasets``' checks
    without stopping at the first, plus its image count against ``KNOWN_IMAGE_COUNTS``
    (tools/check_datasets.py)."""
    if name not in DatasetCatalog.list():
        return None, [
            f"not registered; register it with --dataset {name} JSON IMAGE_ROOT or use one of "
            "detectron2's names (e.g. coco_2014_minival)"
        ]
    metadata = MetadataCatalog.get(name)
    json_file, image_root = metadata.get("json_file", None), metadata.get("image_root", None)
    expected = KNOWN_IMAGE_COUNTS.get(name)
    if not json_file or not image_root:  # registered in code or from a VOC folder: its records only
        try:
            count = len(DatasetCatalog.get(name))
        except ResNeXtDetError as problem:
            return None, [str(problem)]
        return f"{count:,} images", []
    hint = _COCO_LAYOUT if name.startswith("coco_") else "a COCO-format json and its image folder"
    problems = [
        f"{what} {path} does not exist; expected {hint}"
        for what, path, exists in (
            ("annotation file", json_file, Path(json_file).is_file()),
            ("image folder", image_root, Path(image_root).is_dir()),
        )
        if not exists
    ]
    if problems:
        return None, problems
    try:
        content = read_coco_json(json_file)
    except ResNeXtDetError as problem:
        return None, [str(problem)]
    images = content["images"]
    missing = missing_images(content, image_root)
    if missing:
        problems.append(
            f"{len(missing):,} of the {len(images):,} images of {json_file} are not in {image_root} "
            f"(e.g. {missing[:3]})"
        )
    if expected is not None and len(images) != expected:
        problems.append(
            f"{json_file} lists {len(images):,} images, {name} has {expected:,}: another split's file?"
        )
    known = "" if expected is None else " (its known size)"
    boxes, categories = len(content.get("annotations", [])), len(content["categories"])
    return f"{len(images):,} images{known}, {boxes:,} boxes, {categories} categories, all on disk", problems


def check_datasets(names) -> None:
    """``check_dataset_files`` for a list of dataset names (a LazyConfig's loaders name them)."""
    for name in dict.fromkeys(names):
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
        if json_file and image_root:
            check_images_exist(read_coco_json(json_file), image_root, name)
