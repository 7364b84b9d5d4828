"""Curves of one or more runs, overlaid: one PNG per panel, an overview of all, and the plotted
numbers as JSON (``tools/plot_metrics.py``).

A panel is a family of ``metrics.json`` keys: the losses, the learning rate, AP (detection) or
top-1/top-5 error (classification), the RPN's average recall, the validation losses
(``validation/...``, ``TEST.VAL_LOSS_PERIOD``) and the throughput (``images_per_s`` as
pretraining logs it, else ``SOLVER.IMS_PER_BATCH`` over detectron2's per-iteration ``time``). A
panel that no run has is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..atomic_files import atomic_write_json
from .metrics import RunMetrics

__all__ = ["PANELS", "panel_series", "plot_runs"]


def _is_loss(key: str) -> bool:
    return key == "total_loss" or key.startswith("loss_")


#: panel name -> (title, y label, which keys belong to it)
PANELS: dict[str, tuple[str, str, Callable[[str], bool]]] = {
    "losses": ("training losses", "loss", _is_loss),
    "lr": ("learning rate", "lr", lambda k: k == "lr"),
    "accuracy": (
        "AP on DATASETS.TEST (detection) / top-1, top-5 error (classification)",
        "AP, error (%)",
        lambda k: k.split("/")[-1] in ("AP", "AP50", "AP75", "top1_err", "top5_err"),
    ),
    "rpn_recall": ("RPN proposal recall", "AR", lambda k: k.startswith("box_proposals/AR@")),
    "validation": ("validation loss (TEST.VAL_LOSS_PERIOD)", "loss", lambda k: k.startswith("validation/")),
    "throughput": ("throughput", "images/s", lambda k: k == "images_per_s"),
}


def _throughput(run: RunMetrics) -> tuple[list[int], list[float]]:
    iterations, values = run.series("images_per_s")
    if iterations:
        return iterations, values
    batch = run.config.get("SOLVER", {}).get("IMS_PER_BATCH") if isinstance(run.config, dict) else None
    points = [(i, batch / t) for i, t in zip(*run.series("time"), strict=True) if t > 0] if batch else []
    return [i for i, _ in points], [v for _, v in points]


def panel_series(runs: list[RunMetrics]) -> dict[str, dict[str, dict[str, list]]]:
    """``{panel: {"<run>: <key>": {"iteration": [...], "value": [...]}}}`` for every panel that has
    data; the numbers the pictures show."""
    panels: dict[str, dict[str, dict[str, list]]] = {}
    for panel, (_, _, belongs) in PANELS.items():
        lines = {}
        for run in runs:
            if panel == "throughput":
                iterations, values = _throughput(run)
                if iterations:
                    lines[f"{run.name}: images/s"] = {"iteration": iterations, "value": values}
                continue
            for key in run.keys():
                if belongs(key):
                    iterations, values = run.series(key)
                    if iterations:
                        lines[f"{run.name}: {key}"] = {"iteration": iterations, "value": values}
        if lines:
            panels[panel] = lines
    return panels


def _draw(axis, panel: str, lines: dict) -> None:
    title, ylabel, _ = PANELS[panel]
    for label, line in lines.items():
        marker = "o" if len(line["iteration"]) <= 3 else None  # evaluations: a few points
        axis.plot(line["iteration"], line["value"], label=label, marker=marker, linewidth=1.2)
    axis.set_title(title, fontsize=9)
    axis.set_xlabel("iteration", fontsize=8)
    axis.set_ylabel(ylabel, fontsize=8)
    if panel in ("losses", "lr", "validation"):
        positive = all(v > 0 for line in lines.values() for v in line["value"])
        if positive:
            axis.set_yscale("log")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=6)
    axis.tick_params(labelsize=7)


def plot_runs(runs: list[RunMetrics], output: str | Path) -> list[Path]:
    """Write ``<panel>.png`` for every panel with data, ``overview.png`` and ``series.json`` to
    ``output``; returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    panels = panel_series(runs)
    written = []
    for panel, lines in panels.items():
        figure, axis = plt.subplots(figsize=(6.4, 4.0))
        _draw(axis, panel, lines)
        figure.tight_layout()
        figure.savefig(output / f"{panel}.png", dpi=110)
        plt.close(figure)
        written.append(output / f"{panel}.png")
    if panels:
        columns = min(3, len(panels))
        rows = -(-len(panels) // columns)
        figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.6 * rows), squeeze=False)
        for axis, (panel, lines) in zip(axes.flat, panels.items(), strict=False):
            _draw(axis, panel, lines)
        for axis in list(axes.flat)[len(panels) :]:
            axis.set_visible(False)
        figure.suptitle(", ".join(run.name for run in runs), fontsize=10)
        figure.tight_layout()
        figure.savefig(output / "overview.png", dpi=100)
        plt.close(figure)
        written.append(output / "overview.png")
    atomic_write_json(output / "series.json", panels, indent=1)
    return written
