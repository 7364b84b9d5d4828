"""Per-class precision-recall curves at IoU 0.5, 0.75 and 0.5:0.95, as COCO computes AP.

pycocotools' ``COCOeval.accumulate`` already holds the interpolated precision at 101 recall
levels for each IoU threshold and class; a curve is one slice of it, and the area under the
0.5:0.95 curve (the mean over the ten thresholds) is the class's COCO AP, exactly. Only the "all"
area range and 100 detections per image are used, as for AP.
"""

from __future__ import annotations

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .coco_pair import CocoPair, quiet

__all__ = [
    "ANALYSIS_IOUS",
    "COCO_IOUS",
    "PR_CURVES",
    "RECALL_LEVELS",
    "analysis_precision",
    "mean_where_defined",
    "pr_curves",
    "precision_curves",
]

#: COCO's 101 recall levels 0, 0.01, ..., 1.
RECALL_LEVELS = np.linspace(0.0, 1.0, 101)
#: COCO's ten IoU thresholds 0.5, 0.55, ..., 0.95.
COCO_IOUS = np.linspace(0.5, 0.95, 10)
#: curve name -> indices into COCO_IOUS whose precision it averages.
PR_CURVES = {"IoU 0.5": [0], "IoU 0.75": [5], "IoU 0.5:0.95": list(range(10))}
#: The IoUs of the whole error analysis: COCO's ten, then the error breakdown's 0.1 (Loc). One
#: pycocotools pass at these serves both the PR curves and the breakdown (``analysis_precision``).
ANALYSIS_IOUS = (*COCO_IOUS, 0.1)


def precision_curves(
    pair: CocoPair,
    iou_thresholds,
    category_ids: list[int] | None = None,
    ground_truth: COCO | None = None,
    max_detections: int = 100,
) -> np.ndarray:
    """Interpolated precision ``[len(iou_thresholds), 101, len(category_ids)]`` (all areas);
    -1 for a class without ground truth. ``ground_truth`` replaces the pair's (the error
    breakdown relabels some objects)."""
    category_ids = list(category_ids or pair.category_ids)
    shape = (len(iou_thresholds), len(RECALL_LEVELS), len(category_ids))
    gt = ground_truth or pair.ground_truth
    if pair.detections is None:  # nothing detected: precision 0 where there is something to find
        has_objects = [bool(gt.getAnnIds(catIds=[c], iscrowd=False)) for c in category_ids]
        return np.broadcast_to(np.where(has_objects, 0.0, -1.0), shape).copy()
    evaluation = COCOeval(gt, pair.detections, "bbox")
    evaluation.params.catIds = category_ids
    evaluation.params.iouThrs = np.asarray(iou_thresholds, dtype=float)
    evaluation.params.areaRng = [[0, 1e10]]
    evaluation.params.areaRngLbl = ["all"]
    evaluation.params.maxDets = [max_detections]
    with quiet():
        evaluation.evaluate()
        evaluation.accumulate()
    return evaluation.eval["precision"][:, :, :, 0, 0]


def mean_where_defined(curves: np.ndarray, axis: int) -> np.ndarray:
    """Mean over ``axis`` of the entries that are not -1 (no ground truth); -1 if none is."""
    valid = curves > -1
    total = np.where(valid, curves, 0.0).sum(axis=axis)
    count = valid.sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), -1.0)


def analysis_precision(pair: CocoPair) -> np.ndarray:
    """Precision ``[len(ANALYSIS_IOUS), 101, classes]``: the one all-category pass of the analysis."""
    return precision_curves(pair, ANALYSIS_IOUS)


def pr_curves(pair: CocoPair, precision: np.ndarray | None = None) -> dict:
    """``{"recall": [101 levels], "classes": {name: {curve: {"ap", "precision"}}}, "all": ...}``:
    every class's curves and their mean over the classes with ground truth ("all"); a class
    without ground truth has ``None``. The "IoU 0.5:0.95" AP of "all" is COCO's AP.
    ``precision``: ``analysis_precision(pair)``, when the caller has it already."""
    if precision is None:
        precision = precision_curves(pair, COCO_IOUS)
    precision = precision[: len(COCO_IOUS)]  # [10, 101, K]
    by_class: dict = {name: {} for name in pair.class_names}
    overall: dict = {}
    for curve, ious in PR_CURVES.items():
        per_class = mean_where_defined(precision[ious], axis=0)  # [101, K]
        for k, name in enumerate(pair.class_names):
            values = per_class[:, k]
            by_class[name][curve] = (
                {"ap": float(values.mean()), "precision": values.round(4).tolist()}
                if values[0] > -1
                else None
            )
        mean = mean_where_defined(per_class, axis=1)
        overall[curve] = (
            {"ap": float(mean.mean()), "precision": mean.round(4).tolist()} if mean[0] > -1 else None
        )
    return {"recall": RECALL_LEVELS.round(2).tolist(), "classes": by_class, "all": overall}
