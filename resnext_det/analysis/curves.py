"""Curves of one or more runs, overlaid: one PNG per panel, an overview of all, and the plotted
numbers as JSON (``tools/plot_metrics.py``).

A panel is a family of ``metrics.json`` keys: the losses, the learning rate, detection AP,
classification top-1/top-5 error (a top-5 error of 0 throughout is left out), the RPN's average
recall, the validation losses (``validation/...``, ``TEST.VAL_LOSS_PERIOD``) and the throughput
(``images_per_s`` as pretraining logs it, else ``SOLVER.IMS_PER_BATCH`` over detectron2's
per-iteration ``time``), on a log axis. A panel that no run has is left out; one whose series
each have one point (an evaluation at the end) is drawn as labelled bars.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..atomic_files import atomic_write_json
from .metrics import RunMetrics
from .pictures import OKABE_ITO, pyplot

__all__ = ["PANELS", "panel_series", "plot_runs"]


def _is_loss(key: str) -> bool:
    return key == "total_loss" or key.startswith("loss_")


#: panel name -> (title, y label, which keys belong to it). Detection AP and classification error
#: are two panels: one is better high, the other low, and they come from runs of different lengths.
PANELS: dict[str, tuple[str, str, Callable[[str], bool]]] = {
    "losses": ("training losses", "loss", _is_loss),
    "lr": ("learning rate", "lr", lambda k: k == "lr"),
    "detection_ap": (
        "detection AP on DATASETS.TEST",
        "AP (%)",
        lambda k: k.split("/")[-1] in ("AP", "AP50", "AP75"),
    ),
    "classification_error": (
        "classification error (pretraining's val set)",
        "error (%)",
        lambda k: k in ("top1_err", "top5_err"),
    ),
    "rpn_recall": ("RPN proposal recall", "AR (%)", lambda k: k.startswith("box_proposals/AR@")),
    "validation": ("validation loss (TEST.VAL_LOSS_PERIOD)", "loss", lambda k: k.startswith("validation/")),
    "throughput": ("training throughput", "images/s (log scale)", lambda k: k == "images_per_s"),
}


def _says_nothing(key: str, values: list[float]) -> bool:
    """Top-5 error at 0 in every evaluation: a classifier of at most 5 classes cannot miss in
    five guesses (the demo's 4), so the line would only cover the x axis."""
    return key == "top5_err" and all(v == 0 for v in values)


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
                    if iterations and not _says_nothing(key, values):
                        lines[f"{run.name}: {key}"] = {"iteration": iterations, "value": values}
        if lines:
            panels[panel] = lines
    return panels


def _draw(axis, panel: str, lines: dict) -> None:
    """A panel: curves over iterations; when every series has one point (an evaluation at the
    end), labelled bars instead: a lone dot per series says less than its number."""
    title, ylabel, _ = PANELS[panel]
    colours = [OKABE_ITO[i % len(OKABE_ITO)] for i in range(len(lines))]
    if all(len(line["value"]) == 1 for line in lines.values()):
        labels = [label.replace(": ", ":\n", 1) for label in lines]
        values = [line["value"][0] for line in lines.values()]
        bars = axis.bar(range(len(values)), values, color=colours)
        axis.bar_label(bars, labels=[f"{v:.1f}" for v in values], fontsize=9)
        axis.set_xticks(range(len(values)), labels, fontsize=8)
        iterations = sorted({line["iteration"][0] for line in lines.values()})
        axis.set_xlabel(f"at iteration {', '.join(map(str, iterations))}", fontsize=9)
        axis.set_ylim(0, max(values) * 1.18 if max(values) > 0 else 1)
    else:
        for (label, line), colour in zip(lines.items(), colours, strict=True):
            marker = "o" if len(line["iteration"]) <= 3 else None  # evaluations: a few points
            axis.plot(
                line["iteration"], line["value"], label=label, marker=marker, linewidth=1.4, color=colour
            )
        axis.set_xlabel("iteration", fontsize=9)
        axis.legend(fontsize=7.5, framealpha=0.85)
        if panel in ("losses", "lr", "validation", "throughput"):
            if all(v > 0 for line in lines.values() for v in line["value"]):
                axis.set_yscale("log")
                if panel == "throughput":  # images/s read as numbers: 20, 50, 100, 200, 500
                    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

                    axis.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                    axis.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                    axis.yaxis.set_minor_formatter(NullFormatter())
    axis.set_title(title, fontsize=10)
    axis.set_ylabel(ylabel, fontsize=9)
    axis.grid(alpha=0.3)
    axis.tick_params(labelsize=8)


def _columns(count: int) -> int:
    """2 or 3 columns, whichever leaves fewer empty slots (3 on a tie): no hole in the overview."""
    if count <= 3:
        return count
    return min((3, 2), key=lambda c: (-count % c, -c))


def plot_runs(runs: list[RunMetrics], output: str | Path) -> list[Path]:
    """Write ``<panel>.png`` for every panel with data, ``overview.png`` and ``series.json`` to
    ``output``; returns the PNG paths."""
    plt = pyplot()
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
        columns = _columns(len(panels))
        rows = -(-len(panels) // columns)
        figure, axes = plt.subplots(rows, columns, figsize=(5.4 * columns, 3.9 * rows), squeeze=False)
        for axis, (panel, lines) in zip(axes.flat, panels.items(), strict=False):
            _draw(axis, panel, lines)
        for axis in list(axes.flat)[len(panels) :]:
            axis.set_visible(False)
        figure.suptitle("runs: " + ", ".join(run.name for run in runs), fontsize=11)
        figure.tight_layout()
        figure.savefig(output / "overview.png", dpi=100)
        plt.close(figure)
        written.append(output / "overview.png")
    atomic_write_json(output / "series.json", panels, indent=1)
    return written
