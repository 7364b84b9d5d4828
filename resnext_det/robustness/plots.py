"""Pictures of the corruption benchmark and of score calibration: one idea per picture, in
colour-blind-safe colours (Okabe-Ito for lines and bars, cividis for the heatmap).

One run: ``plot_heatmap`` (AP per corruption and severity) and ``plot_severity_curves`` (AP
against severity, a panel per corruption family). Several runs side by side (``tools/
plot_robustness.py``): ``plot_runs_summary`` (P and mPC), ``plot_runs_retention`` (rPC per
corruption), ``plot_runs_severity`` (AP against severity, a panel per corruption),
``plot_runs_calibration`` (the scores' D-ECE against severity). Calibration:
``plot_reliability`` (precision against confidence, before and after scaling).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..analysis.pictures import OKABE_ITO, pyplot
from .benchmark import ordered_corruptions
from .corruptions import CORRUPTION_GROUPS

__all__ = [
    "ROBUSTNESS_PICTURES",
    "plot_heatmap",
    "plot_reliability",
    "plot_runs_calibration",
    "plot_runs_retention",
    "plot_runs_severity",
    "plot_runs_summary",
    "plot_severity_curves",
    "shared_grid",
    "write_robustness_pictures",
]

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    pyplot().close(fig)
    return path


def _label(name: str) -> str:
    return name.replace("_", " ")


def _headline(state: dict, metric: str) -> str:
    s = state["summary"][metric]
    rpc = f"{100 * s['rPC']:.0f}%" if s["rPC"] is not None else "n/a"
    return f"P {s['P']:.1f}   mPC {s['mPC']:.1f}   rPC {rpc}"


def plot_heatmap(state: dict, path: str | Path, metric: str = "AP") -> Path:
    """Corruptions (rows, by family) against clean + severities (columns), each cell its AP."""
    plt = pyplot()
    summary = state["summary"]
    corruptions, severities = ordered_corruptions(summary["corruptions"]), summary["severities"]
    grid = np.array(
        [
            [state["clean"][metric]] + [state["corrupted"][c][str(s)][metric] for s in severities]
            for c in corruptions
        ]
    )
    fig, axis = plt.subplots(figsize=(1.2 + 0.75 * grid.shape[1], 0.9 + 0.38 * len(corruptions)))
    image = axis.imshow(grid, cmap="cividis", vmin=0, vmax=max(float(grid.max()), 1.0), aspect="auto")
    for (row, column), value in np.ndenumerate(grid):
        light = value < 0.55 * image.get_clim()[1]  # cividis is dark at the bottom
        axis.text(
            column,
            row,
            f"{value:.1f}",
            ha="center",
            va="center",
            fontsize=9,
            color="white" if light else "black",
        )
    axis.set_xticks(range(grid.shape[1]), ["clean", *(str(s) for s in severities)])
    axis.set_yticks(range(len(corruptions)), [_label(c) for c in corruptions])
    axis.set_xlabel("severity")
    axis.axvline(0.5, color="white", linewidth=2)
    axis.set_title(f"{metric} under each corruption\n{_headline(state, metric)}", fontsize=10)
    fig.colorbar(image, ax=axis, label=metric, fraction=0.05)
    return _save(fig, path)


def _groups_of(corruptions: list[str]) -> dict[str, list[str]]:
    groups = {g: [c for c in names if c in corruptions] for g, names in CORRUPTION_GROUPS.items()}
    others = [c for c in corruptions if all(c not in names for names in CORRUPTION_GROUPS.values())]
    if others:
        groups["other"] = others
    return {g: names for g, names in groups.items() if names}


def _severity_axis(axis, severities, metric: str) -> None:
    axis.set_xticks([0, *severities], ["clean", *(str(s) for s in severities)])
    axis.set_xlabel("severity")
    axis.set_ylabel(metric)
    axis.grid(alpha=0.3)


def plot_severity_curves(state: dict, path: str | Path, metric: str = "AP") -> Path:
    """AP against severity, one panel per corruption family, one line per corruption; every
    line starts at the clean AP (P), which the dashed line continues."""
    plt = pyplot()
    summary = state["summary"]
    severities = summary["severities"]
    groups = _groups_of(summary["corruptions"])
    clean = state["clean"][metric]
    columns = min(2, len(groups))
    rows = -(-len(groups) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.3 * rows), sharey=True, squeeze=False)
    top = max(clean, 1.0) * 1.08
    for axis in list(axes.flat)[len(groups) :]:
        axis.set_visible(False)
    for axis, (group, names) in zip(axes.flat, groups.items(), strict=False):
        axis.axhline(clean, color="black", linestyle="--", linewidth=1, label="clean (P)")
        for i, name in enumerate(names):
            values = [clean] + [state["corrupted"][name][str(s)][metric] for s in severities]
            axis.plot([0, *severities], values, marker=_MARKERS[i], color=OKABE_ITO[i], label=_label(name))
        axis.set_title(group)
        axis.set_ylim(0, top)
        _severity_axis(axis, severities, metric)
        axis.legend(fontsize=8, loc="lower left")
    fig.suptitle(f"{metric} against severity   ({_headline(state, metric)})", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def _colours(count: int):
    return [OKABE_ITO[i % len(OKABE_ITO)] for i in range(count)]


def plot_runs_summary(runs: list[tuple[str, dict]], path: str | Path, metric: str = "AP") -> Path:
    """P and mPC of each run, side by side, each bar with its value, rPC above each run's pair."""
    plt = pyplot()
    fig, axis = plt.subplots(figsize=(1.8 + 1.6 * len(runs), 3.8))
    x = np.arange(len(runs))
    p = [r["summary"][metric]["P"] for _, r in runs]
    mpc = [r["summary"][metric]["mPC"] for _, r in runs]
    top = max(max(p), 1.0) * 1.3
    for offset, values, colour, label in (
        (-0.2, p, OKABE_ITO[0], "P (clean)"),
        (0.2, mpc, OKABE_ITO[1], "mPC"),
    ):
        bars = axis.bar(x + offset, values, 0.4, color=colour, label=label)
        axis.bar_label(bars, labels=[f"{v:.1f}" for v in values], fontsize=9)
    for i, (_, r) in enumerate(runs):
        rpc = r["summary"][metric]["rPC"]
        text = f"rPC {100 * rpc:.0f}%" if rpc is not None else "rPC n/a"
        axis.text(i, max(p[i], mpc[i]) + 0.1 * top, text, ha="center", fontsize=10, fontweight="bold")
    axis.set_xticks(x, [label for label, _ in runs])
    axis.set_ylabel(metric)
    axis.set_ylim(0, top)
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=9, frameon=False)
    axis.set_title(f"clean and corrupted {metric} (mPC: mean over corruptions and severities)", fontsize=10)
    return _save(fig, path)


def shared_grid(runs: list[tuple[str, dict]]) -> tuple[list[str], list[int]]:
    """The corruptions and severities every run has (the pictures compare like with like)."""
    corruptions = [
        c for c in runs[0][1]["summary"]["corruptions"] if all(c in r["corrupted"] for _, r in runs)
    ]
    severities = [
        s
        for s in runs[0][1]["summary"]["severities"]
        if all(str(s) in r["corrupted"][c] for _, r in runs for c in corruptions)
    ]
    return ordered_corruptions(corruptions), severities


def plot_runs_retention(runs: list[tuple[str, dict]], path: str | Path, metric: str = "AP") -> Path:
    """rPC per corruption (its mean AP over severities over the run's P), one bar per run: how
    much of each model's clean AP survives each corruption, whatever the clean AP."""
    plt = pyplot()
    corruptions, severities = shared_grid(runs)
    fig, axis = plt.subplots(figsize=(7.5, 0.9 + 0.42 * len(corruptions) * max(1, len(runs) / 2)))
    height = 0.8 / len(runs)
    y = np.arange(len(corruptions))
    for i, ((label, r), colour) in enumerate(zip(runs, _colours(len(runs)), strict=True)):
        clean = r["clean"][metric] or float("nan")
        kept = [
            100 * np.mean([r["corrupted"][c][str(s)][metric] for s in severities]) / clean
            for c in corruptions
        ]
        axis.barh(y + (i - (len(runs) - 1) / 2) * height, kept, height, color=colour, label=label)
    axis.set_yticks(y, [_label(c) for c in corruptions])
    axis.invert_yaxis()
    axis.axvline(100, color="black", linewidth=1)
    axis.set_xlabel(
        f"{metric} kept (mean of severities {severities[0]}-{severities[-1]}), % of the clean {metric}"
    )
    axis.legend(fontsize=8, loc="lower right")
    axis.grid(axis="x", alpha=0.3)
    axis.set_title("how much of the clean AP survives each corruption")
    return _save(fig, path)


def plot_runs_severity(runs: list[tuple[str, dict]], path: str | Path, metric: str = "AP") -> Path:
    """AP against severity, one panel per corruption, one line per run."""
    plt = pyplot()
    corruptions, severities = shared_grid(runs)
    columns = min(5, len(corruptions))
    rows = -(-len(corruptions) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.8 * columns, 2.5 * rows), sharey=True, squeeze=False)
    top = max(max(r["clean"][metric] for _, r in runs), 1.0) * 1.08
    for axis, name in zip(axes.flat, corruptions, strict=False):
        for i, ((label, r), colour) in enumerate(zip(runs, _colours(len(runs)), strict=True)):
            values = [r["clean"][metric]] + [r["corrupted"][name][str(s)][metric] for s in severities]
            axis.plot([0, *severities], values, marker=_MARKERS[i % len(_MARKERS)], color=colour, label=label)
        axis.set_title(_label(name), fontsize=10)
        axis.set_ylim(0, top)
        _severity_axis(axis, severities, metric)
    for axis in list(axes.flat)[len(corruptions) :]:
        axis.set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(runs), bbox_to_anchor=(0.5, 1.04))
    fig.tight_layout()
    return _save(fig, path)


def plot_runs_calibration(runs: list[tuple[str, dict]], path: str | Path, metric: str = "AP") -> Path | None:
    """D-ECE of the box scores against severity (mean over the corruptions), clean at the left,
    one line per run; None when a run's file predates the D-ECE per evaluation."""
    if any((r["summary"].get("D-ECE") or {}).get("clean") is None for _, r in runs):
        return None
    plt = pyplot()
    fig, axis = plt.subplots(figsize=(5.2, 3.8))
    severities = [int(s) for s in runs[0][1]["summary"]["D-ECE"]["per_severity"]]
    for i, ((label, r), colour) in enumerate(zip(runs, _colours(len(runs)), strict=True)):
        d_ece = r["summary"]["D-ECE"]
        values = [d_ece["clean"]] + [d_ece["per_severity"].get(str(s)) for s in severities]
        values = [np.nan if v is None else 100 * v for v in values]
        axis.plot([0, *severities], values, marker=_MARKERS[i % len(_MARKERS)], color=colour, label=label)
    _severity_axis(axis, severities, "D-ECE (%)")
    axis.set_ylim(bottom=0)
    first = runs[0][1]["summary"]["D-ECE"]
    axis.set_title(
        f"box score calibration under corruption (IoU {first['iou']}, scores >= {first['min_score']})",
        fontsize=10,
    )
    axis.legend(fontsize=8)
    return _save(fig, path)


def plot_reliability(curves: list[dict], path: str | Path, title: str) -> Path:
    """Precision against confidence (one line per curve: ``{"label", "confidence", "precision",
    "count", "d_ece"}``, the bins' means), the diagonal a calibrated detector follows, and below
    it how many detections each bin holds."""
    plt = pyplot()
    fig, (axis, counts) = plt.subplots(
        2, 1, figsize=(4.6, 5.4), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    axis.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="calibrated")
    for i, curve in enumerate(curves):
        colour = OKABE_ITO[i % len(OKABE_ITO)]
        d_ece = "n/a" if curve["d_ece"] is None else f"{100 * curve['d_ece']:.1f}%"
        label = f"{curve['label']} (D-ECE {d_ece})"
        axis.plot(curve["confidence"], curve["precision"], marker=_MARKERS[i], color=colour, label=label)
        counts.plot(curve["confidence"], curve["count"], marker=_MARKERS[i], color=colour)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_ylabel("precision (matched detections)")
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=8, loc="lower right")
    axis.grid(alpha=0.3)
    counts.set_xlabel("confidence (box score)")
    counts.set_ylabel("detections")
    counts.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


#: a corruption run's pictures, beside its robustness.json
ROBUSTNESS_PICTURES = ("robustness_heatmap.png", "robustness_curves.png")


def write_robustness_pictures(state: dict, output_dir: str | Path) -> list[Path]:
    """The heatmap and the severity curves of one run (``ROBUSTNESS_PICTURES``) into ``output_dir``."""
    heatmap, curves = (Path(output_dir, name) for name in ROBUSTNESS_PICTURES)
    return [plot_heatmap(state, heatmap), plot_severity_curves(state, curves)]
