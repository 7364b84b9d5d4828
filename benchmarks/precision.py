#!/usr/bin/env python
"""What bf16 autocast does to accuracy and speed: the demo's pretraining run twice, fp32 and bf16.

  python benchmarks/precision.py              # fp32 vs bf16 autocast (SOLVER.AMP), channels_last both
  python benchmarks/precision.py --epochs 2   # a shorter schedule

Both runs are the real tool (``tools/pretrain_imagenet.py`` on ``configs/demo/pretrain_shapes_tiny.yaml``,
the generated shape crops), one after the other, with the same seed, data order and
``DETERMINISTIC True``: the only difference is ``SOLVER.AMP``. Reported: the final top-1
error on the held-out val split, the last logged training loss, and the wall time. One run per
precision on a 4-class demo: a few tenths of a percent of top-1 error are within run-to-run noise
of a different seed, so read the result as "no visible effect" or "a visible one", not as a
precise cost. Writes ``precision.md`` and ``precision.json`` to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pretrain.synthetic import generate_demo_classification  # noqa: E402

import torch  # noqa: E402

PRECISIONS = {"fp32": "", "bf16 autocast": "bf16"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, help="override SOLVER.EPOCHS (the demo's schedule by default)")
    parser.add_argument("--work-dir", default="benchmarks/work/precision", help="the two runs' OUTPUT_DIRs")
    parser.add_argument("--output", default="benchmarks/results")
    return parser.parse_args(argv)


def last_loss(metrics_file: Path) -> float:
    losses = [json.loads(line).get("total_loss") for line in metrics_file.read_text().splitlines() if line]
    return [loss for loss in losses if loss is not None][-1]


def run_one(amp: str, output_dir: Path, data_root: Path, epochs: int | None) -> dict:
    schedule = ["SOLVER.EPOCHS", str(epochs), "SOLVER.STEPS", f"({max(1, epochs - 1)},)"] if epochs else []
    command = [
        sys.executable, "-W", "ignore", "tools/pretrain_imagenet.py", "--overwrite",
        "--config-file", "configs/demo/pretrain_shapes_tiny.yaml",
        "DATA.ROOT", str(data_root), "OUTPUT_DIR", str(output_dir), "DETERMINISTIC", "True",
        "SOLVER.AMP", amp, "SOLVER.MEMORY_FORMAT", "channels_last", *schedule,
    ]  # fmt: skip
    print("$", " ".join(command[3:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    final = json.loads((output_dir / "final_metrics.json").read_text())
    return {
        "amp": amp,
        "top1_err": final["top1_err"],
        "last_loss": last_loss(output_dir / "metrics.json"),
        "seconds": seconds,
    }


def markdown(result: dict) -> str:
    env = result["environment"]
    native = "native bf16" if env["native_bf16"] else "no native bf16 (emulated)"
    lines = [
        f"{env['date']}, torch {env['torch']}, {env['cpu_capability']}, {native}. The demo's pretraining "
        f"({env['epochs']} epochs, 4 classes, 48x48, channels_last), fp32 vs bf16 autocast, same seed.",
        "",
        "| precision | top-1 err | last logged loss | time (s) | time / fp32 |",
        "|---|---:|---:|---:|---:|",
    ]
    fp32_seconds = result["runs"]["fp32"]["seconds"]
    for name, run in result["runs"].items():
        lines.append(
            f"| {name} | {run['top1_err']:.2f}% | {run['last_loss']:.4f} | "
            f"{run['seconds']:.0f} | {run['seconds'] / fp32_seconds:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(args) -> dict:
    data_root = generate_demo_classification()
    work = Path(args.work_dir).resolve()
    runs = {
        name: run_one(amp, work / (amp or "fp32"), data_root, args.epochs) for name, amp in PRECISIONS.items()
    }
    epochs = args.epochs
    if epochs is None:
        from pretrain.config import get_pretrain_cfg

        cfg = get_pretrain_cfg()
        cfg.merge_from_file(str(ROOT / "configs/demo/pretrain_shapes_tiny.yaml"))
        epochs = cfg.SOLVER.EPOCHS
    result = {
        "environment": {
            "date": date.today().isoformat(),
            "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
            "epochs": epochs,
        },
        "runs": runs,
    }
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "precision.json").write_text(json.dumps(result, indent=1))
    (output / "precision.md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main(parse_args())
