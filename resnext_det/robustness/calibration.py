"""Do the box scores mean what they say? D-ECE of a detector and its scaling (Küppers et al. 2020,
"Multivariate Confidence Calibration for Object Detection").

A detection is correct when COCO's matching (pycocotools: greedy by score, one ground truth
each, same class) pairs it with a ground truth at IoU >= 0.5 (or 0.75); a calibrated detector's
detections of score s are correct with probability s. D-ECE is the count-weighted mean of
|precision - mean score| over bins of the score (``confidence``), or over bins of the score and
the box's relative centre and size (``position``: a detector can be calibrated on average and
overconfident at the borders). netcal computes D-ECE and fits the two scalings (temperature, and
Platt's logistic: one scale and one shift), on one split's detections, applied to another's.

Written here: the matching (from pycocotools' per-image evaluation) and the reliability curve's
bin means (netcal's own binning, drawn with the project's plots).
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic_files import atomic_write_json
from ..errors import ConfigError

__all__ = [
    "CALIBRATION_FILE",
    "DEFAULT_MIN_SCORE",
    "IOU_THRESHOLDS",
    "MatchedDetections",
    "calibrate_predictor",
    "check_annotated",
    "detection_ece",
    "fit_scaling",
    "format_report",
    "match_detections",
    "matched_detections_of",
    "reliability_curve",
    "rescaled",
    "write_calibration_report",
]

CALIBRATION_FILE = "calibration.json"
IOU_THRESHOLDS = (0.5, 0.75)
#: D-ECE's bins: of the score alone; of (score, centre x, centre y, width, height) each
CONFIDENCE_BINS = 10
POSITION_BINS = 5
#: detections below this score are left out by default (eval_coco.py --calibration-min-score)
DEFAULT_MIN_SCORE = 0.3
#: the two scalings (netcal's classes), fitted on the score alone
SCALINGS = ("temperature", "platt")


@dataclass
class MatchedDetections:
    """One IoU threshold's detections: ``score`` (N,), ``correct`` (N,) and ``box`` (N, 4): centre
    x, centre y, width, height, each over the image's width or height."""

    iou: float
    score: np.ndarray
    correct: np.ndarray
    box: np.ndarray

    def __len__(self) -> int:
        return len(self.score)

    def features(self, position: bool) -> np.ndarray:
        return np.column_stack([self.score, self.box]) if position else self.score


def check_annotated(dataset: str, records: list[dict], flag: str = "--calibration") -> None:
    """D-ECE needs ground truth: a split whose images carry no annotations is refused."""
    if not any(r.get("annotations") for r in records):
        raise ConfigError(
            f"{flag}: dataset {dataset!r} has no annotations ({len(records)} images, none with a "
            f"box): calibration needs a split with ground truth boxes"
        )


def match_detections(
    gt_json: str, detections: list[dict], iou_thresholds=IOU_THRESHOLDS, min_score: float = 0.0
) -> dict[float, MatchedDetections]:
    """COCO's matching of ``detections`` (COCO results: image_id, category_id, bbox, score) to
    the ground truth of ``gt_json`` at each IoU threshold; detections below ``min_score``, beyond
    COCO's 100 per image, or matched to a crowd region are left out (as COCO AP leaves them)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    kept = [d for d in detections if d["score"] >= min_score]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO(gt_json)
        if not kept:
            return {
                iou: MatchedDetections(iou, np.zeros(0), np.zeros(0, bool), np.zeros((0, 4)))
                for iou in iou_thresholds
            }
        evaluation = COCOeval(gt, gt.loadRes(kept), "bbox")
        evaluation.params.iouThrs = np.array(iou_thresholds, dtype=float)
        evaluation.params.areaRng, evaluation.params.areaRngLbl = [[0, 1e10]], ["all"]
        evaluation.params.maxDets = [100]
        evaluation.evaluate()
    matched = {}
    for t, iou in enumerate(iou_thresholds):
        scores, correct, boxes = [], [], []
        for entry in evaluation.evalImgs:
            if entry is None:
                continue
            image = gt.imgs[entry["image_id"]]
            for d, det_id in enumerate(entry["dtIds"]):
                if entry["dtIgnore"][t][d]:
                    continue
                x, y, w, h = evaluation.cocoDt.anns[det_id]["bbox"]
                scores.append(entry["dtScores"][d])
                correct.append(entry["dtMatches"][t][d] > 0)
                width, height = image["width"], image["height"]
                boxes.append(((x + w / 2) / width, (y + h / 2) / height, w / width, h / height))
        matched[iou] = MatchedDetections(
            iou, np.array(scores, float), np.array(correct, bool), np.array(boxes, float).reshape(-1, 4)
        )
    return matched


def _ece(position: bool):
    from netcal.metrics import ECE

    return ECE(bins=[POSITION_BINS] * 5 if position else CONFIDENCE_BINS, detection=True)


def detection_ece(matched: MatchedDetections, position: bool = False) -> float | None:
    """D-ECE (0 = calibrated, 1 = the worst) of the matched detections: over bins of the score,
    or of the score and the box (``position``); None without detections."""
    if len(matched) == 0:
        return None
    return float(_ece(position).measure(matched.features(position), matched.correct.astype(int)))


def reliability_curve(matched: MatchedDetections) -> dict:
    """Per score bin with detections: mean score, precision and count (the reliability diagram)."""
    if len(matched) == 0:
        return {"confidence": [], "precision": [], "count": []}
    ece = _ece(position=False)
    X, correct, _, bounds, _ = ece.prepare(matched.score, matched.correct.astype(int))
    (precision, confidence), counts, *_ = ece.binning([bounds[0][0]], X[0], correct[0], X[0][:, 0])
    keep = counts > 0
    return {
        "confidence": confidence[keep].tolist(),
        "precision": precision[keep].tolist(),
        "count": counts[keep].astype(int).tolist(),
    }


def fit_scaling(method: str, matched: MatchedDetections):
    """netcal's temperature scaling or Platt's logistic calibration, fitted on ``matched``'s
    scores and correctness; ``.transform(scores)`` rescales others."""
    from netcal.scaling import LogisticCalibration, TemperatureScaling

    if len(matched) == 0:
        raise ConfigError(
            f"cannot fit {method} scaling at IoU {matched.iou}: the fitting split has no detections "
            f"at or above --calibration-min-score"
        )
    if len(set(matched.correct.tolist())) < 2:
        raise ConfigError(
            f"cannot fit {method} scaling at IoU {matched.iou}: the {len(matched)} detections of the "
            f"fitting split are all {'correct' if matched.correct.all() else 'wrong'}"
        )
    scaling = {"temperature": TemperatureScaling, "platt": LogisticCalibration}[method](detection=True)
    scaling.fit(matched.score, matched.correct.astype(int))
    return scaling


def rescaled(matched: MatchedDetections, scaling) -> MatchedDetections:
    """``matched`` with its scores through ``scaling`` (the boxes and correctness unchanged)."""
    scores = np.asarray(scaling.transform(matched.score), dtype=float).reshape(-1)
    return MatchedDetections(matched.iou, np.clip(scores, 0.0, 1.0), matched.correct, matched.box)


def _measures(matched: MatchedDetections) -> dict:
    return {
        "detections": len(matched),
        "precision": float(matched.correct.mean()) if len(matched) else None,
        "mean_score": float(matched.score.mean()) if len(matched) else None,
        "d_ece": detection_ece(matched),
        "d_ece_position": detection_ece(matched, position=True),
    }


def write_calibration_report(
    test: dict[str, dict[float, MatchedDetections]],
    output_dir: str | Path,
    fit: tuple[str, dict[float, MatchedDetections]] | None = None,
    min_score: float = 0.0,
) -> dict:
    """D-ECE of each test split's detections at each IoU threshold, and with ``fit`` (a split's
    name and its matched detections) each scaling fitted there and measured on the test splits;
    ``calibration.json`` and one reliability diagram per split and IoU in ``output_dir``."""
    from .plots import plot_reliability

    output_dir = Path(output_dir)
    report = {
        "min_score": min_score,
        "bins": {"confidence": CONFIDENCE_BINS, "position": [POSITION_BINS] * 5},
        "position_features": ["score", "centre_x", "centre_y", "width", "height"],
        "fit": None,
        "datasets": {},
    }
    scalings = {}
    if fit is not None:
        fit_name, fit_matched = fit
        report["fit"] = {"dataset": fit_name, "iou": {}}
        for iou, matched in fit_matched.items():
            scalings[iou] = {m: fit_scaling(m, matched) for m in SCALINGS}
            report["fit"]["iou"][str(iou)] = _measures(matched)
    for name, per_iou in test.items():
        report["datasets"][name] = {}
        for iou, matched in per_iou.items():
            row = _measures(matched)
            curves = [{"label": "scores as given", "d_ece": row["d_ece"], **reliability_curve(matched)}]
            for method, scaling in scalings.get(iou, {}).items():
                after = rescaled(matched, scaling)
                row[method] = _measures(after)
                curves.append(
                    {"label": f"{method} scaling", "d_ece": row[method]["d_ece"], **reliability_curve(after)}
                )
            row["reliability"] = curves
            picture = output_dir / f"reliability_{name}_iou{int(round(100 * iou))}.png"
            title = f"{name}: box scores against precision at IoU {iou}"
            if fit is not None:
                title += f"\n(scalings fitted on {fit[0]})"
            row["picture"] = plot_reliability(curves, picture, title).name
            report["datasets"][name][str(iou)] = row
    atomic_write_json(output_dir / CALIBRATION_FILE, report)
    return report


def matched_detections_of(
    predictor,
    dataset: str,
    folder: str | Path,
    *,
    max_images: int = 0,
    min_score: float = 0.0,
    flag: str,
    workers: int = 0,
) -> dict[float, MatchedDetections]:
    """``predictor``'s detections on ``dataset`` (its first ``max_images`` images; 0: all),
    evaluated into ``folder`` as any evaluation is, then matched (``match_detections``); a split
    without boxes is refused, naming ``flag``."""
    from detectron2.data import DatasetCatalog

    from ..deploy.evaluate import evaluate_predictor, ground_truth_json

    records = DatasetCatalog.get(dataset)
    check_annotated(dataset, records, flag)
    subset = records[:max_images] if max_images else None
    evaluate_predictor(predictor, dataset, folder, records=subset, workers=workers)
    detections = json.loads(Path(folder, "coco_instances_results.json").read_text())
    return match_detections(ground_truth_json(dataset, folder, subset), detections, min_score=min_score)


def calibrate_predictor(
    predictor,
    test_sets: list[str],
    output_dir: str | Path,
    *,
    fit_dataset: str | None = None,
    max_images: int = 0,
    min_score: float = DEFAULT_MIN_SCORE,
    workers: int = 0,
) -> dict:
    """``tools/eval_coco.py --calibration``: the predictor's detections on ``fit_dataset`` (if
    given: the scalings are fitted there) and on each test set, matched, measured and written
    (``write_calibration_report``) into ``output_dir``."""
    fit = None
    if fit_dataset:
        folder = Path(output_dir, "calibration_fit", fit_dataset)
        matched = matched_detections_of(
            predictor,
            fit_dataset,
            folder,
            max_images=max_images,
            min_score=min_score,
            flag="--calibration-fit",
            workers=workers,
        )
        fit = (fit_dataset, matched)
    test = {
        name: matched_detections_of(
            predictor,
            name,
            Path(output_dir, "inference", name),
            max_images=max_images,
            min_score=min_score,
            flag="--calibration",
            workers=workers,
        )
        for name in test_sets
    }
    return write_calibration_report(test, output_dir, fit, min_score)


def format_report(report: dict) -> list[str]:
    """The log's lines: per test set and IoU, the detections, D-ECE and the scalings' D-ECE."""

    def percent(value):
        return "n/a" if value is None else f"{100 * value:.1f}%"

    lines = []
    fitted_on = (report["fit"] or {}).get("dataset")
    for name, per_iou in report["datasets"].items():
        for iou, row in per_iou.items():
            scaled = "  ".join(f"{m} {percent(row[m]['d_ece'])}" for m in SCALINGS if m in row)
            lines.append(
                f"{name} IoU {iou}: {row['detections']} detections >= {report['min_score']}, "
                f"D-ECE {percent(row['d_ece'])} (with position {percent(row['d_ece_position'])})"
                + (f"; after scaling fitted on {fitted_on}: {scaled}" if scaled else "")
            )
    return lines
