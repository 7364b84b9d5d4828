"""A dataset's COCO ground truth and a model's detections, loaded once for every analysis.

The analyses (precision-recall curves, the error breakdown, the confusion matrix) read the two
files that an evaluation leaves: the ground truth json (a COCO dataset's own, or the one
detectron2's ``COCOEvaluator`` converts a registered dataset to) and
``coco_instances_results.json``. pycocotools does the matching; this module only loads the pair
with errors that name the file, and keeps pycocotools' progress prints out of the console.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

from pycocotools.coco import COCO

from ..errors import AnnotationFileError, MissingFileError

__all__ = ["CocoPair", "load_coco_pair", "quiet"]


def quiet():
    """pycocotools prints each step ("Loading and preparing results..."): silence it."""
    return contextlib.redirect_stdout(io.StringIO())


@dataclass
class CocoPair:
    """Ground truth and detections of one dataset, as pycocotools objects.

    ``detections`` is None when the model detected nothing: pycocotools cannot index an empty
    result list, and every analysis then has a known answer (precision 0 everywhere)."""

    ground_truth: COCO
    detections: COCO | None
    category_ids: list[int]
    class_names: list[str]

    @classmethod
    def from_data(cls, ground_truth: dict, detections: list[dict]) -> CocoPair:
        with quiet():
            gt = COCO()
            gt.dataset = ground_truth
            gt.createIndex()
            dt = gt.loadRes(detections) if detections else None
        ids = sorted(gt.getCatIds())
        names = [gt.cats[i]["name"] for i in ids]
        return cls(gt, dt, ids, names)

    def supercategory(self, category_id: int) -> str | None:
        return self.ground_truth.cats[category_id].get("supercategory") or None


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise MissingFileError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnnotationFileError(f"{what} {path} is not valid JSON ({e})") from None


def load_coco_pair(ground_truth_json: str | Path, results_json: str | Path) -> CocoPair:
    """The pair from a COCO ground truth json and a COCO results json (a list of
    ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``)."""
    gt_path, results_path = Path(ground_truth_json), Path(results_json)
    ground_truth = _read_json(gt_path, "ground truth")
    if (
        not isinstance(ground_truth, dict)
        or not {"images", "annotations", "categories"} <= ground_truth.keys()
    ):
        raise AnnotationFileError(
            f"ground truth {gt_path} is not a COCO detection json (needs images, annotations, categories)"
        )
    detections = _read_json(results_path, "detections")
    keys = {"image_id", "category_id", "bbox", "score"}
    if not isinstance(detections, list) or any(not keys <= d.keys() for d in detections):
        raise AnnotationFileError(
            f"detections {results_path} is not a COCO results json "
            "(a list of {image_id, category_id, bbox, score})"
        )
    image_ids = {image["id"] for image in ground_truth["images"]}
    category_ids = {c["id"] for c in ground_truth["categories"]}
    strangers = [
        d for d in detections if d["image_id"] not in image_ids or d["category_id"] not in category_ids
    ]
    if strangers:
        raise AnnotationFileError(
            f"detections {results_path} name {len(strangers)} image or category id(s) that ground truth "
            f"{gt_path} does not have (first: image {strangers[0]['image_id']}, category "
            f"{strangers[0]['category_id']}): were they made on another dataset?"
        )
    return CocoPair.from_data(ground_truth, detections)
