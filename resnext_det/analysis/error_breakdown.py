"""The COCO error breakdown (Hoiem et al.'s "Diagnosing error in object detectors", in the form
the COCO detection challenge reports it): which kind of mistake costs how much AP.

Seven precision-recall curves per class, each forgiving one more kind of error than the last
(the area under each is its "AP"):

- **C75**: PR at IoU 0.75;  **C50**: at IoU 0.5;
- **Loc**: at IoU 0.1, so localisation errors are forgiven (duplicate detections are not);
- **Sim**: also ignoring detections on an object of another class of the same supercategory
  (a dog called a cat);
- **Oth**: also ignoring detections on an object of any other class;
- **BG**: also without detections on background, i.e. every remaining false positive removed
  (precision 1 up to the recall reached);
- **FN**: also without missed objects (precision 1 at every recall).

So ``Loc - C50`` is what poor localisation costs, ``BG - Oth`` what background false positives
cost, and ``1 - BG`` what missed objects cost. A class whose category has no supercategory has no
similar classes: its Sim equals its Loc. The "ignore" of Sim and Oth is pycocotools' own: those
objects become crowd regions of the evaluated class, so a detection that falls on one is neither
a true nor a false positive.
"""

from __future__ import annotations

import numpy as np
from pycocotools.coco import COCO

from .coco_pair import CocoPair, quiet
from .pr_curves import (
    COCO_IOUS,
    RECALL_LEVELS,
    analysis_precision,
    mean_where_defined,
    precision_curves,
)

__all__ = ["ERROR_TYPES", "error_breakdown", "error_curves"]

ERROR_TYPES = ("C75", "C50", "Loc", "Sim", "Oth", "BG", "FN")


def _ground_truth_forgiving(pair: CocoPair, category_id: int, confusable: set[int]) -> COCO:
    """The ground truth for one class in which the objects of the ``confusable`` classes are
    crowd regions of that class: detections on them are ignored."""
    dataset = pair.ground_truth.dataset
    annotations = []
    for ann in dataset["annotations"]:
        if ann["category_id"] == category_id:
            annotations.append(dict(ann))
        elif ann["category_id"] in confusable:
            annotations.append({**ann, "category_id": category_id, "iscrowd": 1})
    with quiet():
        gt = COCO()
        gt.dataset = {
            "images": dataset["images"],
            "categories": dataset["categories"],
            "annotations": annotations,
        }
        gt.createIndex()
    return gt


def error_curves(pair: CocoPair, precision: np.ndarray | None = None) -> np.ndarray:
    """Precision ``[7 (ERROR_TYPES), 101 recall levels, classes]``; -1 for a class without
    ground truth. ``precision``: ``analysis_precision(pair)``, when the caller has it already."""
    ids = pair.category_ids
    if precision is None:
        precision = analysis_precision(pair)
    curves = np.empty((len(ERROR_TYPES), len(RECALL_LEVELS), len(ids)))
    # C75, C50, Loc: ANALYSIS_IOUS' rows 0.75 (COCO's sixth), 0.5 (its first) and 0.1 (after COCO's ten)
    curves[:3] = precision[[5, 0, len(COCO_IOUS)]]
    for k, category_id in enumerate(ids):
        supercategory = pair.supercategory(category_id)
        others = set(ids) - {category_id}
        similar = {c for c in others if supercategory is not None and pair.supercategory(c) == supercategory}
        for row, confusable in ((3, similar), (4, others)):
            gt = _ground_truth_forgiving(pair, category_id, confusable)
            curves[row, :, k] = precision_curves(pair, [0.1], [category_id], ground_truth=gt)[0, :, 0]
    curves[5] = np.where(curves[4] > -1, (curves[4] > 0).astype(float), -1.0)
    curves[6] = np.where(curves[4] > -1, 1.0, -1.0)
    return curves


def error_breakdown(pair: CocoPair, precision: np.ndarray | None = None) -> dict:
    """``{"types": ERROR_TYPES, "all": {type: AP}, "classes": {name: {type: AP} or None},
    "curves": {"all"|name: {type: precision at the 101 recall levels}}}``; "all" is the mean over
    the classes with ground truth."""
    curves = error_curves(pair, precision)
    overall = mean_where_defined(curves, axis=2)  # [7, 101]
    result: dict = {"types": list(ERROR_TYPES), "all": None, "classes": {}, "curves": {}}
    if overall[0, 0] > -1:
        result["all"] = {t: float(overall[i].mean()) for i, t in enumerate(ERROR_TYPES)}
        result["curves"]["all"] = {t: overall[i].round(4).tolist() for i, t in enumerate(ERROR_TYPES)}
    for k, name in enumerate(pair.class_names):
        if curves[0, 0, k] == -1:
            result["classes"][name] = None
            continue
        result["classes"][name] = {t: float(curves[i, :, k].mean()) for i, t in enumerate(ERROR_TYPES)}
        result["curves"][name] = {t: curves[i, :, k].round(4).tolist() for i, t in enumerate(ERROR_TYPES)}
    return result
