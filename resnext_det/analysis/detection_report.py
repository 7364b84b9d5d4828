"""The whole error analysis of one dataset's detections, as pictures and one JSON
(``tools/eval_coco.py --analysis``).

It reads what an evaluation leaves (the ground truth json and ``coco_instances_results.json``),
so it runs the same after the PyTorch pair and after an exported model.
"""

from __future__ import annotations

from pathlib import Path

from ..atomic_files import atomic_write_json
from .coco_pair import load_coco_pair
from .confusion import confusion_matrix
from .error_breakdown import error_breakdown
from .error_plots import plot_confusion_matrix, plot_error_breakdown, plot_pr_curves
from .pr_curves import analysis_precision, pr_curves

__all__ = ["ANALYSIS_FILES", "analyze_detections"]

#: what ``analyze_detections`` writes into its folder
ANALYSIS_FILES = (
    "analysis.json",
    "pr_curves.png",
    "error_breakdown.png",
    "error_breakdown_per_class.png",
    "confusion_matrix.png",
)


def analyze_detections(
    ground_truth_json: str | Path,
    results_json: str | Path,
    output: str | Path,
    score_threshold: float = 0.5,
    iou: float = 0.5,
) -> dict:
    """Write the PR curves, the error breakdown and the confusion matrix (``score_threshold``,
    ``iou``) of ``results_json`` on ``ground_truth_json`` to ``output``; returns the JSON's
    content, plus ``"files"``: the pictures written."""
    pair = load_coco_pair(ground_truth_json, results_json)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    precision = analysis_precision(pair)  # one pycocotools pass for the curves and the breakdown
    curves = pr_curves(pair, precision)
    breakdown = error_breakdown(pair, precision)
    confusion = confusion_matrix(pair, iou=iou, score_threshold=score_threshold)
    analysis = {
        "ground_truth": str(ground_truth_json),
        "detections": str(results_json),
        "pr_curves": curves,
        "error_breakdown": breakdown,
        "confusion_matrix": confusion,
    }
    atomic_write_json(output / "analysis.json", analysis, indent=1)
    pictures = []
    if curves["all"]["IoU 0.5"] is not None:
        pictures.append(plot_pr_curves(curves, output / "pr_curves.png"))
    pictures += plot_error_breakdown(
        breakdown, curves["recall"], output / "error_breakdown.png", output / "error_breakdown_per_class.png"
    )
    pictures.append(plot_confusion_matrix(confusion, output / "confusion_matrix.png"))
    return {**analysis, "files": pictures}
