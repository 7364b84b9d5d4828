"""A confusion matrix of detections at one IoU, with a background row and column.

Rows are what the objects are, columns what the detector said. Every object counts once in its
row, so a row normalised by its sum reads as "of the dogs, this fraction was found as dogs, this
fraction was called cats, this fraction was missed":

- **found**: a detection of its own class matched it (COCO's matching: detections in order of
  score, each taking the unmatched object of its class with the highest IoU >= ``iou``);
- **called another class**: otherwise, the highest-scoring detection of another class with
  IoU >= ``iou`` on it gives the column;
- **missed** (the background column): neither.

The background row counts the detections of each class that overlap no object (of any class)
by ``iou``: false positives on background. Two kinds of detection are in no cell, and are
counted beside the matrix: ``duplicates`` (a second detection of an object already found by its
class) and ``on_found_objects`` (another class's detection on an object that its own class
found). Only detections scoring at least ``score_threshold`` count; crowd regions are ignored,
with the detections that fall on them (as COCO does). IoUs are pycocotools' ``maskUtils.iou``.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from .coco_pair import CocoPair

__all__ = ["confusion_matrix"]


def _ious(detections: list[dict], objects: list[dict], crowd: bool = False) -> np.ndarray:
    if not detections or not objects:
        return np.zeros((len(detections), len(objects)))
    boxes = [d["bbox"] for d in detections]
    return np.asarray(mask_utils.iou(boxes, [o["bbox"] for o in objects], [int(crowd)] * len(objects)))


def _image_outcomes(objects, crowds, detections, iou: float, column_of: dict, size: int):
    """This image's matrix (``size`` x ``size``, background last) and its uncounted detections."""
    matrix = np.zeros((size, size), dtype=np.int64)
    background = size - 1
    detections = sorted(detections, key=lambda d: -d["score"])
    overlaps = _ious(detections, objects)
    on_crowd = (
        (_ious(detections, crowds, crowd=True) >= iou).any(axis=1)
        if crowds
        else np.zeros(len(detections), bool)
    )
    found_by = [-1] * len(objects)  # index of the detection of its own class that found it
    for d, det in enumerate(detections):
        same = [
            o for o, obj in enumerate(objects) if obj["category_id"] == det["category_id"] and found_by[o] < 0
        ]
        best = max(same, key=lambda o: overlaps[d, o], default=None)
        if best is not None and overlaps[d, best] >= iou:
            found_by[best] = d
    matched = set(found_by)
    duplicates = on_found = 0
    confused_with: dict[int, int] = {}  # object -> the best-scoring other-class detection on it
    for d, det in enumerate(detections):
        if d in matched:
            continue
        touching = [o for o in range(len(objects)) if overlaps[d, o] >= iou]
        own = [o for o in touching if objects[o]["category_id"] == det["category_id"]]
        other = [o for o in touching if objects[o]["category_id"] != det["category_id"]]
        if not touching:
            if not on_crowd[d]:
                matrix[background, column_of[det["category_id"]]] += 1
        elif own:  # its class's object was found by an earlier (higher-scoring) detection
            duplicates += 1
        else:
            target = max(other, key=lambda o: overlaps[d, o])
            if found_by[target] >= 0:
                on_found += 1
            else:
                confused_with.setdefault(target, d)  # detections come in score order
    for o, obj in enumerate(objects):
        row = column_of[obj["category_id"]]
        if found_by[o] >= 0:
            matrix[row, row] += 1
        elif o in confused_with:
            matrix[row, column_of[detections[confused_with[o]]["category_id"]]] += 1
        else:
            matrix[row, background] += 1
    return matrix, duplicates, on_found


def confusion_matrix(pair: CocoPair, iou: float = 0.5, score_threshold: float = 0.5) -> dict:
    """``{"labels": classes + ["background"], "matrix": counts [rows: truth][columns: said],
    "iou", "score_threshold", "duplicates", "on_found_objects"}``."""
    column_of = {c: k for k, c in enumerate(pair.category_ids)}
    size = len(column_of) + 1
    gt = pair.ground_truth
    matrix = np.zeros((size, size), dtype=np.int64)
    duplicates = on_found = 0
    for image_id in gt.getImgIds():
        annotations = gt.loadAnns(gt.getAnnIds(imgIds=[image_id]))
        objects = [a for a in annotations if not a.get("iscrowd", 0)]
        crowds = [a for a in annotations if a.get("iscrowd", 0)]
        detections = []
        if pair.detections is not None:
            detections = [
                d
                for d in pair.detections.loadAnns(pair.detections.getAnnIds(imgIds=[image_id]))
                if d["score"] >= score_threshold
            ]
        counts, dup, found = _image_outcomes(objects, crowds, detections, iou, column_of, size)
        matrix += counts
        duplicates += dup
        on_found += found
    return {
        "labels": [*pair.class_names, "background"],
        "matrix": matrix.tolist(),
        "iou": iou,
        "score_threshold": score_threshold,
        "duplicates": duplicates,
        "on_found_objects": on_found,
    }
