#!/usr/bin/env python
"""How much the demo's accuracy depends on its seed: the demo with SEED 0-4, one table.

  python scripts/demo_seeds.py                           # five demos, about 20 minutes on 2 cores
  python scripts/demo_seeds.py --seeds 0 1 --output-dir output/demo_seeds

Runs ``tools/demo.py --seed K --output-dir OUTPUT_DIR/seedK`` for each seed (a finished demo is
kept, so an interrupted sweep continues), then writes ``docs/demo_seeds.json``: each seed's
``demo_results.json`` numbers, their minimum, maximum and spread, and the machine; ``scripts/
update_docs.py`` (run last) turns it into docs/demo.md's table. Seed 0 is the README's demo.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
#: the numbers of each seed kept in the table (demo_results.json's "bbox" keys, then its own)
BOX_KEYS = ("AP", "AP50", "AP75")


def seed_row(results: dict) -> dict:
    box = results["bbox"]
    return {
        "seed": results["seed"],
        **{key: box[key] for key in BOX_KEYS},
        "rpn_AR@100": results["rpn_AR@100"],
        "recall@0.5": results["proposal_recall"]["recall@0.5"],
        "pretrain_top1_err": results["pretrain_top1_err"],
    }


def spread(rows: list[dict]) -> dict:
    """min, max and max - min of each box metric over the seeds."""
    return {
        key: {"min": min(r[key] for r in rows), "max": max(r[key] for r in rows),
              "spread": max(r[key] for r in rows) - min(r[key] for r in rows)}
        for key in BOX_KEYS
    }  # fmt: skip


def machine() -> dict:
    """What the seeds ran on, in the form benchmarks/speed.py records it."""
    return {
        "date": date.today().isoformat(),
        "torch": torch.__version__,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--output-dir", default="output/demo_seeds", help="one demo folder per seed in it")
    parser.add_argument("--no-docs", action="store_true", help="print the table only; leave docs/ alone")
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    rows = []
    for seed in args.seeds:
        command = [sys.executable, "-W", "ignore", "tools/demo.py", "--seed", str(seed),
                   "--output-dir", str(out / f"seed{seed}")]  # fmt: skip
        print("$", " ".join(command[3:]), flush=True)
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            return 1
        rows.append(seed_row(json.loads((out / f"seed{seed}" / "demo_results.json").read_text())))
    report = {"machine": machine(), "seeds": rows, "spread": spread(rows)}
    print(json.dumps(report, indent=1))
    if args.no_docs:
        return 0
    (ROOT / "docs" / "demo_seeds.json").write_text(json.dumps(report, indent=1) + "\n")
    print("-> docs/demo_seeds.json")
    return subprocess.run([sys.executable, "scripts/update_docs.py"], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
