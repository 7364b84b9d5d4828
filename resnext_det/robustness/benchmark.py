"""The corruption benchmark of a detector: P, mPC and rPC (Michaelis et al. 2019).

P is the COCO AP on the clean images, mPC the mean AP over every (corruption, severity) evaluated,
rPC = mPC / P. Each evaluation is the project's one (``deploy.evaluate_predictor``, detectron2's
COCO evaluator), on images corrupted between reading and predicting; a predictor is anything
that maps a BGR image to ``Instances`` (the PyTorch pair with its RPN, or an exported model), so
stage 1's proposals are recomputed on every corrupted image. Each evaluation also keeps the D-ECE
of its box scores (``robustness.calibration``): a detector can lose AP and stay calibrated, or
keep confident scores on what it no longer finds.

``robustness.json`` is rewritten after each evaluation and a re-run skips what it holds: a run
of the full grid (76 evaluations) can be stopped and continued. It also names the model, the
dataset and its image count; a file of another run is refused rather than mixed in.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from pathlib import Path

import numpy as np

from ..atomic_files import atomic_write_json
from ..deploy.evaluate import evaluate_predictor
from ..errors import ConfigError
from .calibration import DEFAULT_MIN_SCORE
from .corruptions import CORRUPTION_GROUPS, CorruptedImages, Corruption

__all__ = [
    "METRICS",
    "ROBUSTNESS_FILE",
    "format_table",
    "ordered_corruptions",
    "read_robustness",
    "run_benchmark",
    "summarize",
]

ROBUSTNESS_FILE = "robustness.json"
#: the COCO metrics kept per evaluation (P, mPC and rPC are reported for the first two)
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
_SUMMARY_METRICS = ("AP", "AP50")
#: what two runs must share for one file to hold both
_IDENTITY = ("model", "dataset", "images")


def _kept(box: dict, clean: dict | None = None) -> dict:
    """The metrics of one evaluation, NaN (not computable: no objects of that size) as None.
    detectron2 reports NaN for everything when the model detected nothing at all (a blank image):
    that is AP 0 wherever the clean evaluation had objects to find."""
    kept = {k: (None if math.isnan(float(box[k])) else float(box[k])) for k in METRICS if k in box}
    if clean is not None and all(v is None for v in kept.values()):
        kept = {k: (None if clean.get(k) is None else 0.0) for k in METRICS if k in clean}
    return kept


def read_robustness(path: str | Path) -> dict:
    """A ``robustness.json`` (or the folder holding one), checked for what the plots read."""
    path = Path(path)
    if path.is_dir():
        path = path / ROBUSTNESS_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: no {ROBUSTNESS_FILE} (written by tools/eval_coco.py --corruptions)")
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not a JSON file ({e})") from None
    missing = [k for k in ("clean", "corrupted", "summary", *_IDENTITY) if k not in result]
    if missing:
        raise ConfigError(f"{path}: not a finished robustness run (missing {', '.join(missing)})")
    return result


def _start_or_continue(path: Path, identity: dict) -> dict:
    if not path.exists():
        return {**identity, "corrupted": {}}
    state = json.loads(path.read_text())
    differs = {k: (state.get(k), identity[k]) for k in _IDENTITY if state.get(k) != identity[k]}
    if differs:
        what = "; ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in differs.items())
        raise ConfigError(
            f"{path} holds the corruption results of another run ({what}): give another OUTPUT_DIR, "
            f"or remove the file to start again"
        )
    state.setdefault("corrupted", {})
    return state


#: the calibration kept per evaluation: D-ECE at IoU 0.5 of the detections scoring at least 0.3
#: (``robustness.calibration``: do the scores still mean what they say under the corruption?)
CALIBRATION_IOU = 0.5


def _score_calibration(dataset: str, folder: Path, records: list[dict] | None) -> float | None:
    """D-ECE of the evaluation just written to ``folder`` (None without detections)."""
    from ..deploy.evaluate import ground_truth_json
    from .calibration import detection_ece, match_detections

    detections = json.loads((folder / "coco_instances_results.json").read_text())
    gt = ground_truth_json(dataset, folder, records)
    matched = match_detections(gt, detections, (CALIBRATION_IOU,), min_score=DEFAULT_MIN_SCORE)
    return detection_ece(matched[CALIBRATION_IOU])


def summarize(state: dict, corruptions: list[str], severities: list[int]) -> dict:
    """P, mPC, rPC (of AP and AP50), and the mean over severities of each corruption and over
    corruptions of each severity, from the evaluations of ``corruptions`` x ``severities``."""
    summary = {"corruptions": list(corruptions), "severities": list(severities)}
    for metric in _SUMMARY_METRICS:
        clean = state["clean"][metric]
        grid = np.array(
            [[state["corrupted"][c][str(s)][metric] for s in severities] for c in corruptions], dtype=float
        )
        mpc = float(grid.mean())
        summary[metric] = {
            "P": clean,
            "mPC": mpc,
            "rPC": mpc / clean if clean else None,
            "per_corruption": dict(zip(corruptions, grid.mean(axis=1).tolist(), strict=True)),
            "per_severity": {str(s): v for s, v in zip(severities, grid.mean(axis=0).tolist(), strict=True)},
        }
    corrupted = [state["corrupted"][c][str(s)].get("D-ECE") for c in corruptions for s in severities]
    corrupted = [v for v in corrupted if v is not None]
    summary["D-ECE"] = {
        "iou": CALIBRATION_IOU,
        "min_score": DEFAULT_MIN_SCORE,
        "clean": state["clean"].get("D-ECE"),
        "mean_corrupted": float(np.mean(corrupted)) if corrupted else None,
        "per_severity": {
            str(s): _mean_or_none([state["corrupted"][c][str(s)].get("D-ECE") for c in corruptions])
            for s in severities
        },
    }
    return summary


def _mean_or_none(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def run_benchmark(
    predictor,
    dataset: str,
    output_dir: str | Path,
    corruptions: list[Corruption],
    severities: list[int],
    *,
    model: str,
    records: list[dict] | None = None,
    progress: bool = True,
    workers: int = 0,
) -> dict:
    """Evaluate ``predictor`` on ``dataset`` (or ``records``, some of its images) clean and under
    each corruption at each severity; returns (and keeps in OUTPUT_DIR/robustness.json) every
    result and their ``summary``. ``model`` names the model in the file (a re-run must name the
    same one). The clean evaluation's detections stay in ``output_dir/inference/<dataset>``;
    ``workers`` DataLoader processes read and corrupt the images while the model runs."""
    from tqdm import tqdm

    output_dir = Path(output_dir)
    path = output_dir / ROBUSTNESS_FILE
    if records is None:
        from detectron2.data import DatasetCatalog

        images = len(DatasetCatalog.get(dataset))
    else:
        images = len(records)
    state = _start_or_continue(path, {"model": model, "dataset": dataset, "images": images})
    state["seeds"] = "per image file name, corruption and severity (resnext_det.robustness.image_seed)"
    jobs = [(None, 0)] + [(c, s) for c in corruptions for s in severities]

    def done(corruption, severity) -> bool:
        if corruption is None:
            return "clean" in state
        return str(severity) in state["corrupted"].get(corruption.name, {})

    todo = [job for job in jobs if not done(*job)]
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="corruptions", disable=not progress)
    quiet = contextlib.redirect_stdout(io.StringIO())  # pycocotools' tables, 76 times: the log keeps ours
    with tempfile.TemporaryDirectory(prefix="corrupted-") as scratch, quiet:
        for corruption, severity in todo:
            bar.set_postfix_str("clean" if corruption is None else f"{corruption.name} {severity}")
            if corruption is None:
                clean_dir = output_dir / "inference" / dataset
                box = evaluate_predictor(predictor, dataset, clean_dir, records=records, workers=workers)
                state["clean"] = {
                    **_kept(box["bbox"]),
                    "D-ECE": _score_calibration(dataset, clean_dir, records),
                }
            else:
                box = evaluate_predictor(
                    predictor,
                    dataset,
                    Path(scratch),
                    records=records,
                    image_transform=CorruptedImages(corruption, severity),
                    workers=workers,
                )
                kept = _kept(box.get("bbox", {}), clean=state["clean"])
                kept["D-ECE"] = _score_calibration(dataset, Path(scratch), records)
                state["corrupted"].setdefault(corruption.name, {})[str(severity)] = kept
            atomic_write_json(path, state)
            bar.update()
    bar.close()
    state["summary"] = summarize(state, [c.name for c in corruptions], list(severities))
    atomic_write_json(path, state)
    return state


def ordered_corruptions(names: list[str]) -> list[str]:
    """The benchmark's corruptions in its order (by family), any others after them."""
    order = [n for group in CORRUPTION_GROUPS.values() for n in group]
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def format_table(state: dict, metric: str = "AP") -> str:
    """The log's table: AP per corruption and severity, its mean, then P, mPC and rPC."""
    summary = state["summary"]
    severities = summary["severities"]
    corruptions = ordered_corruptions(summary["corruptions"])
    width = max(len(c) for c in [*corruptions, "corruption"])
    head = f"{'corruption':<{width}}  " + "  ".join(f"{f's{s}':>5}" for s in severities) + "   mean"
    lines = [f"{metric} under corruption ({state['dataset']}, {state['images']} images)", head]
    for c in corruptions:
        row = state["corrupted"][c]
        values = "  ".join(f"{row[str(s)][metric]:5.1f}" for s in severities)
        lines.append(f"{c:<{width}}  {values}  {summary[metric]['per_corruption'][c]:5.1f}")
    s = summary[metric]
    rpc = f"{100 * s['rPC']:.1f}%" if s["rPC"] is not None else "n/a (P is 0)"
    lines.append(f"P {s['P']:.1f}  mPC {s['mPC']:.1f}  rPC {rpc}")
    d_ece = summary.get("D-ECE") or {}
    if d_ece.get("clean") is not None and d_ece.get("mean_corrupted") is not None:
        lines.append(
            f"D-ECE of the scores (IoU {d_ece['iou']}, scores >= {d_ece['min_score']}): clean "
            f"{100 * d_ece['clean']:.1f}%, under corruption {100 * d_ece['mean_corrupted']:.1f}% on average"
        )
    return "\n".join(lines)
