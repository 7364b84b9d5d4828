"""A run's ``metrics.json`` as numbers per iteration, the way detectron2 and ``pretrain/`` write it.

detectron2's ``JSONWriter`` appends one JSON object per logging step (``{"iteration": 99,
"total_loss": ..., "lr": ...}``), and the evaluation results (``bbox/AP``, ``box_proposals/AR@100``)
as objects of their own. Three things happen to real files that a reader must survive:

* a run killed mid-write leaves a cut last line: it is skipped (and counted), the rest reads;
* a resumed run appends again from its checkpoint's iteration, so the iterations after it appear
  twice: the later record wins, as that is the run that continued;
* NaN and Infinity appear as bare words (Python's ``json`` writes and reads them).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MissingFileError

__all__ = ["RunMetrics", "read_metrics"]


@dataclass
class RunMetrics:
    """One run's records, in iteration order, each iteration once (the latest write)."""

    name: str
    records: list[dict]
    skipped_lines: int = 0
    config: dict = field(default_factory=dict)

    def keys(self) -> list[str]:
        return sorted({k for r in self.records for k in r if k != "iteration"})

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(iterations, values) of ``key``, finite values only."""
        points = [
            (r["iteration"], float(r[key]))
            for r in self.records
            if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])
        ]
        return [i for i, _ in points], [v for _, v in points]


def _records(lines: list[str]) -> tuple[list[dict], int]:
    records, skipped = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            skipped += 1  # a line cut by a kill (the last one, in practice)
            continue
        if isinstance(record, dict) and isinstance(record.get("iteration"), int):
            records.append(record)
        else:
            skipped += 1
    return records, skipped


def _latest_per_iteration(records: list[dict]) -> list[dict]:
    """A resumed run rewrites the iterations after its checkpoint: keep what came last. Logging
    and evaluation records of one iteration are merged."""
    kept: list[dict] = []
    for record in records:
        # a record for an earlier iteration than the last kept one starts a resumed segment
        while kept and kept[-1]["iteration"] > record["iteration"]:
            kept.pop()
        if kept and kept[-1]["iteration"] == record["iteration"]:
            kept[-1] = {**kept[-1], **record}
        else:
            kept.append(dict(record))
    return kept


def read_metrics(run: str | Path) -> RunMetrics:
    """``run``'s ``metrics.json`` (``run`` is the OUTPUT_DIR or the file itself)."""
    run = Path(run)
    path = run if run.suffix == ".json" else run / "metrics.json"
    if not path.is_file():
        raise MissingFileError(f"{path} not found: give a run's OUTPUT_DIR (it holds metrics.json)")
    records, skipped = _records(path.read_text(errors="replace").splitlines())
    config = {}
    config_file = path.parent / "config.yaml"
    if config_file.is_file():
        import yaml

        try:
            config = yaml.safe_load(config_file.read_text()) or {}
        except yaml.YAMLError:
            config = {}
    name = path.parent.name if path.name == "metrics.json" else path.stem
    return RunMetrics(name, _latest_per_iteration(records), skipped, config)
