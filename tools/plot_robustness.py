#!/usr/bin/env python
"""Several corruption runs side by side (tools/eval_coco.py --corruptions): the paper's question
of ResNet against ResNeXt, asked of robustness.

  python tools/plot_robustness.py out/robust_r50 out/robust_x50 --output cmp/ [--labels R50 X50]

Each run is an OUTPUT_DIR with robustness.json (or the file). Writes one picture per view into
--output: summary.png (P and mPC, rPC above them), retention.png (the share of the clean AP kept
under each corruption), severity.png (AP against severity, a panel per corruption),
calibration.png (the box scores' D-ECE against severity), and comparison.json (the numbers
drawn). Only the corruptions and severities every run has are
compared.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import resnext_det  # noqa: F401  (prepares detectron2; must come first)
from resnext_det.atomic_files import atomic_write_json
from resnext_det.engine.cli import exit_on_user_error
from resnext_det.errors import ConfigError
from resnext_det.robustness import read_robustness
from resnext_det.robustness.plots import (
    plot_runs_calibration,
    plot_runs_retention,
    plot_runs_severity,
    plot_runs_summary,
    shared_grid,
)

VIEWS = {
    "summary.png": plot_runs_summary,
    "retention.png": plot_runs_retention,
    "severity.png": plot_runs_severity,
    "calibration.png": plot_runs_calibration,  # drawn when every run has the scores' D-ECE
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "runs", nargs="+", help="OUTPUT_DIRs (or robustness.json files) of --corruptions runs"
    )
    parser.add_argument(
        "--labels", nargs="+", default=None, help="one name per run (default: the folder names)"
    )
    parser.add_argument("--output", default="robustness_plots", help="folder for the pictures")
    parser.add_argument("--metric", choices=("AP", "AP50"), default="AP")
    return parser.parse_args(argv)


def _label(run: str) -> str:
    path = Path(run)
    return (path.parent if path.is_file() else path).name


def main(argv=None) -> int:
    args = parse_args(argv)
    with exit_on_user_error():
        labels = args.labels or [_label(r) for r in args.runs]
        if len(labels) != len(args.runs):
            raise ConfigError(f"--labels: {len(labels)} names for {len(args.runs)} runs")
        runs = list(zip(labels, (read_robustness(r) for r in args.runs), strict=True))
        datasets = {state["dataset"] for _, state in runs}
        if len(datasets) > 1:
            raise ConfigError(
                f"the runs are of different test sets ({', '.join(sorted(datasets))}): not comparable"
            )
        corruptions, severities = shared_grid(runs)
        if not corruptions or not severities:
            raise ConfigError(
                "the runs share no (corruption, severity) to compare: "
                + "; ".join(f"{label}: {', '.join(s['summary']['corruptions'])}" for label, s in runs)
            )
        drawn = [view(runs, Path(args.output, name), args.metric) for name, view in VIEWS.items()]
        written = [path for path in drawn if path is not None]
        atomic_write_json(
            Path(args.output, "comparison.json"),
            {label: {"model": s["model"], **s["summary"][args.metric]} for label, s in runs},
        )
    for label, state in runs:
        s = state["summary"][args.metric]
        rpc = "n/a (P is 0)" if s["rPC"] is None else f"{100 * s['rPC']:.1f}%"
        print(f"{label}: P {s['P']:.1f}  mPC {s['mPC']:.1f}  rPC {rpc}  ({state['model']})")
    print(f"wrote {', '.join(p.name for p in written)} and comparison.json to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
