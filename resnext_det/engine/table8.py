"""One row of the paper's Table 8 from a finished reproduction, and the table of such rows.

``tools/reproduce_table8.py`` writes its output folder as ``run_detection_stages`` lays it out
(``rpn/``, ``fast_rcnn/``, ``eval/``); ``table8_row`` reads the row from it: COCO AP / AP50 / AP75
(and by size) of stage 2 on the test set, stage 1's proposal recall there (AR@100, AR@1000), each
training stage's median seconds per iteration and its device-hours (processes x iterations x
s/iter), next to the paper's numbers. ``benchmarks/results/table8.json`` keeps one row per
(model, family); the README's results table is generated from it (scripts/update_docs.py).
"""

from __future__ import annotations

import datetime
import json
import statistics
from pathlib import Path

from ..analysis.metrics import read_metrics
from ..atomic_files import atomic_write_json
from ..errors import MissingFileError
from .families import MODELS, PAPER_TABLE8

__all__ = ["read_table", "table8_row", "update_table"]

#: stage 2's numbers copied into a row, from COCOEvaluator's "bbox" results
BOX_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise MissingFileError(f"{path} not found: the reproduction's stage that writes it has not finished")
    return json.loads(path.read_text())


def _training_speed(stage_dir: Path, processes: int) -> dict:
    """Median seconds per iteration over the logged iterations, and device-hours for the run."""
    metrics = read_metrics(stage_dir)
    logged, seconds = metrics.series("time")  # the training log (evaluations are records too)
    iterations = max(logged, default=-1) + 1  # detectron2 logs the last iteration always
    per_iter = statistics.median(seconds) if seconds else None
    hours = None if per_iter is None else round(per_iter * iterations * processes / 3600, 3)
    return {"s_per_iter": None if per_iter is None else round(per_iter, 4), "iterations": iterations,
            "device_hours": hours}  # fmt: skip


def table8_row(
    out: str | Path, *, model: str, family: str, processes: int, device: str, test_set: str
) -> dict:
    """The row of a finished reproduction in ``out`` (see the module docstring)."""
    out = Path(out)
    box = _read_json(out / "eval" / "coco_eval.json")[test_set]["bbox"]
    recall = _read_json(out / "rpn" / "proposal_recall.json").get(test_set, {})
    stages = {s: _training_speed(out / s, processes) for s in ("rpn", "fast_rcnn")}
    hours = [s["device_hours"] for s in stages.values()]
    return {
        "model": model,
        "family": family,
        "test_set": test_set,
        **{k: _rounded(box.get(k)) for k in BOX_METRICS},  # None: no such objects (the demo's APl)
        "rpn_AR@100": recall.get("AR@100"),
        "rpn_AR@1000": recall.get("AR@1000"),
        "training": stages,
        "device_hours": None if None in hours else round(sum(hours), 3),
        "processes": processes,
        "device": device,
        "paper": PAPER_TABLE8.get(model),
        "date": datetime.date.today().isoformat(),
        "output": str(out),
    }


def _rounded(value) -> float | None:
    return None if value is None else round(float(value), 2)


def read_table(path: str | Path) -> dict:
    """{"rows": {"<model>/<family>": row}} (empty when the file does not exist yet)."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else {"rows": {}}


def update_table(path: str | Path, row: dict) -> dict:
    """Put ``row`` into the table at ``path`` (replacing the same model and family's), atomically."""
    table = read_table(path)
    table["rows"][f"{row['model']}/{row['family']}"] = row
    table["rows"] = dict(sorted(table["rows"].items(), key=lambda kv: _order(kv[1])))
    atomic_write_json(Path(path), table, indent=1)
    return table


def _order(row: dict) -> tuple:
    models = list(MODELS)
    return (models.index(row["model"]) if row["model"] in models else len(models), row["family"])
