"""Pictures of the error analysis: PR curves per class, the error breakdown as COCO draws it
(stacked areas, each labelled with its AP), and the row-normalised confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .error_breakdown import ERROR_TYPES
from .pictures import pyplot

__all__ = ["plot_confusion_matrix", "plot_error_breakdown", "plot_pr_curves"]

#: one colour per error type, from the area under C75 to the area under FN
_AREA_COLOURS = ("#2c7bb6", "#5fa8d3", "#abd9e9", "#fdae61", "#f46d43", "#d73027", "#e0e0e0")
_CURVE_STYLES = {"IoU 0.5": "#1b9e77", "IoU 0.75": "#d95f02", "IoU 0.5:0.95": "#7570b3"}


def _grid(count: int, panel_inches: float, plt):
    columns = min(count, max(1, int(np.ceil(np.sqrt(count)))))
    rows = -(-count // columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(panel_inches * columns, panel_inches * rows * 0.85), squeeze=False
    )
    for axis in list(axes.flat)[count:]:
        axis.set_visible(False)
    return figure, list(axes.flat)[:count]


def _pr_axis(axis, title: str) -> None:
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.set_title(title, fontsize=9)
    axis.set_xlabel("recall", fontsize=7)
    axis.set_ylabel("precision", fontsize=7)
    axis.tick_params(labelsize=6)
    axis.grid(alpha=0.3)


def plot_pr_curves(curves: dict, path: str | Path) -> Path:
    """One panel for all classes (their mean), then one per class with objects; a line per
    IoU, its AP in the legend."""
    plt = pyplot()
    panels = [("all classes", curves["all"])] + [
        (name, by_iou) for name, by_iou in curves["classes"].items() if by_iou["IoU 0.5"] is not None
    ]
    figure, axes = _grid(len(panels), 2.8, plt)
    for axis, (title, by_iou) in zip(axes, panels, strict=True):
        for curve, colour in _CURVE_STYLES.items():
            line = by_iou[curve]
            axis.plot(
                curves["recall"], line["precision"], color=colour, label=f"{curve}: AP {100 * line['ap']:.1f}"
            )
        _pr_axis(axis, title)
        axis.legend(fontsize=6, loc="lower left")
    figure.suptitle("precision-recall (COCO: 101 recall levels, 100 detections per image)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def _breakdown_axis(
    axis, recall, curves: dict, aps: dict, title: str, legend_size: int, outside=False
) -> None:
    below = np.zeros(len(recall))
    for error_type, colour in zip(ERROR_TYPES, _AREA_COLOURS, strict=True):
        line = np.maximum(np.asarray(curves[error_type]), below)  # each forgives more: never lower
        axis.fill_between(recall, below, line, color=colour, label=f"[{aps[error_type]:.3f}] {error_type}")
        below = line
    _pr_axis(axis, title)
    if outside:  # keep the areas visible
        axis.legend(fontsize=legend_size, loc="center left", bbox_to_anchor=(1.02, 0.5))
    else:
        axis.legend(fontsize=legend_size, loc="lower left")


def plot_error_breakdown(
    breakdown: dict, recall, overall_path: str | Path, classes_path: str | Path
) -> list[Path]:
    """The overall breakdown (one picture) and one panel per class with objects (another)."""
    plt = pyplot()
    written = []
    if breakdown["all"] is not None:
        figure, axis = plt.subplots(figsize=(6.6, 4.4))
        _breakdown_axis(
            axis, recall, breakdown["curves"]["all"], breakdown["all"], "all classes", 8, outside=True
        )
        axis.set_title("error breakdown, all classes (area = AP once each error is forgiven)", fontsize=9)
        figure.tight_layout()
        figure.savefig(overall_path, dpi=110)
        plt.close(figure)
        written.append(Path(overall_path))
    classes = [name for name, aps in breakdown["classes"].items() if aps is not None]
    if classes:
        figure, axes = _grid(len(classes), 2.8, plt)
        for axis, name in zip(axes, classes, strict=True):
            _breakdown_axis(axis, recall, breakdown["curves"][name], breakdown["classes"][name], name, 5)
        figure.suptitle("error breakdown per class", fontsize=10)
        figure.tight_layout()
        figure.savefig(classes_path, dpi=100)
        plt.close(figure)
        written.append(Path(classes_path))
    return written


def plot_confusion_matrix(confusion: dict, path: str | Path) -> Path:
    """Each row normalised by its sum (a class's objects; background: its false positives),
    the counts written in the cells while there are few enough to read."""
    plt = pyplot()
    labels = confusion["labels"]
    counts = np.asarray(confusion["matrix"], dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    side = max(4.0, 0.45 * len(labels) + 2)
    figure, axis = plt.subplots(figsize=(side + 1, side))
    image = axis.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, fraction=0.046, label="fraction of the row")
    ticks = range(len(labels))
    columns = [*labels[:-1], "missed"]
    rows_named = [*labels[:-1], "background"]
    axis.set_xticks(ticks, columns, rotation=60, ha="right", fontsize=7)
    axis.set_yticks(ticks, rows_named, fontsize=7)
    axis.set_xlabel("detected as")
    axis.set_ylabel("ground truth")
    if len(labels) <= 25:
        for (i, j), count in np.ndenumerate(counts):
            if count:
                colour = "white" if fractions[i, j] > 0.6 else "black"
                axis.text(j, i, f"{int(count)}", ha="center", va="center", fontsize=7, color=colour)
    axis.set_title(
        f"confusion at IoU {confusion['iou']:g}, score >= {confusion['score_threshold']:g}\n"
        f"(not in the matrix: {confusion['duplicates']} duplicates, "
        f"{confusion['on_found_objects']} other-class detections on found objects)",
        fontsize=8,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)
