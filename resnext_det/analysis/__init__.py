"""Looking at runs: curves from ``metrics.json``, and the COCO error analysis of a model's
detections (precision-recall curves, the error breakdown, a confusion matrix)."""

from .coco_pair import CocoPair, load_coco_pair
from .confusion import confusion_matrix
from .curves import PANELS, panel_series, plot_runs
from .detection_report import ANALYSIS_FILES, analyze_detections
from .error_breakdown import ERROR_TYPES, error_breakdown
from .metrics import RunMetrics, read_metrics
from .pr_curves import PR_CURVES, pr_curves

__all__ = [
    "ANALYSIS_FILES",
    "ERROR_TYPES",
    "PANELS",
    "PR_CURVES",
    "CocoPair",
    "analyze_detections",
    "RunMetrics",
    "confusion_matrix",
    "error_breakdown",
    "load_coco_pair",
    "panel_series",
    "plot_runs",
    "pr_curves",
    "read_metrics",
]
