#!/usr/bin/env python
"""Curves of one or more runs, overlaid: losses, lr, AP / top-1 error, RPN recall, validation
loss, images/s, from each run's metrics.json.

  python tools/plot_metrics.py out/rpn_x50 out/frcn_x50 [more runs] --output plots/

Writes <output>/<panel>.png for every panel some run has, overview.png (all panels) and
series.json (the plotted numbers). A run killed mid-write (a cut last line) still plots; a
resumed run's repeated iterations are taken from the run that continued.
"""

from __future__ import annotations

import argparse
import sys

import resnext_det  # noqa: F401  (prepares detectron2; must come first)
from resnext_det.analysis import plot_runs, read_metrics
from resnext_det.engine.cli import exit_on_user_error
from resnext_det.errors import ResNeXtDetError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", help="OUTPUT_DIRs (or metrics.json files) of runs")
    parser.add_argument("--output", default="plots", help="folder for the PNGs and series.json")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    with exit_on_user_error():
        runs = [read_metrics(run) for run in args.runs]
        empty = [run.name for run in runs if not run.records]
        if len(empty) == len(runs):
            raise ResNeXtDetError(f"no metrics records in {', '.join(args.runs)}: has any run logged yet?")
        written = plot_runs(runs, args.output)
    for run in runs:
        cut = (
            f", {run.skipped_lines} unreadable line(s) skipped (a cut last line?)"
            if run.skipped_lines
            else ""
        )
        print(f"{run.name}: {len(run.records)} iterations logged{cut}")
    print(f"wrote {len(written)} pictures and series.json to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
