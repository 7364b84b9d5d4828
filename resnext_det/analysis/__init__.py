"""Looking at runs: curves from ``metrics.json`` (more to come: COCO error analysis, dataset and
proposal views)."""

from .curves import PANELS, panel_series, plot_runs
from .metrics import RunMetrics, read_metrics

__all__ = ["PANELS", "RunMetrics", "panel_series", "plot_runs", "read_metrics"]
