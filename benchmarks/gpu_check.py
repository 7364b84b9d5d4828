#!/usr/bin/env python
"""The GPU path end to end, in minutes: every stage of the pipeline for a few iterations on the
device, inference, and the speed benchmark's rows at full size.

  python benchmarks/gpu_check.py                      # on a GPU machine (MODEL.DEVICE cuda)
  python benchmarks/gpu_check.py --num-gpus 2         # two processes per stage: NCCL on GPUs
  python benchmarks/gpu_check.py --device cpu         # the same path on the CPU (gloo), speed.py --quick

Each stage is the project's own tool, run as a user runs it (the command is printed; in this
process, with the state a child would have, unless `--num-gpus` asks for several), on the
generated demo data with the demo template and ``MODEL.DEVICE`` set to ``--device``:
pretraining (one epoch), weight conversion, stage 1 (RPN, 20 iterations, then proposals for
train and val), stage 2 (Fast R-CNN, 20 iterations), COCO evaluation, and RPN + Fast R-CNN on
plain images (``TwoStagePredictor``). Then ``benchmarks/speed.py --device ...``: on a GPU at the
paper's input size (2 images of 800x1333, 512 RoIs per image in training, 1000 proposals at
inference, classification batch 32), every timed call synchronised, memory from
``torch.cuda.max_memory_allocated``; on the CPU ``speed.py --quick`` (every group at its smoke-test
sizes: the test suite checks the speed benchmark through this one run, so that no group is timed
twice).

Writes ``gpu_check.json`` (each step's command, seconds and exit status, the AP, the speed rows)
and the speed table to ``--output-dir``; exits non-zero at the first step that fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = ROOT / "configs" / "demo"
#: benchmarks/speed.py at the paper's input size (the GPU run), and ``--quick`` on the CPU: every
#: group at its smoke-test sizes, as tests/test_speed_benchmark.py checks it.
FULL_SIZE_SPEED = ["--det-size", "800", "1333", "--det-images", "2", "--rois", "512", "--test-proposals",
                   "1000", "--cls-batch", "32", "--reps", "3", "--bf16-reps", "3"]  # fmt: skip
CPU_SPEED = ["--quick"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per training stage")
    parser.add_argument("--output-dir", default="output/gpu_check")
    return parser.parse_args(argv)


class Steps:
    """Runs each step, records it, and stops at the first failure. A step runs in this process (as
    ``resnext_det.engine.in_process`` runs it, without a child's 3-10 s of imports), or in a child
    process when ``child`` (``--num-gpus`` > 1: the tool starts its own processes)."""

    def __init__(self, output_dir: Path, env: dict, child: bool = False):
        self.output_dir, self.env, self.child, self.record = output_dir, env, child, []

    def __call__(self, name: str, command: list[str]) -> None:
        print(f"\n== {name}\n$ {' '.join(command)}", flush=True)
        start = time.perf_counter()
        if self.child:
            child = subprocess.run([sys.executable, "-W", "ignore", *command], cwd=ROOT, env=self.env)
            status = child.returncode
        else:
            from resnext_det.engine.in_process import run_in_process

            status = run_in_process(command[0], command[1:], env=self.env, cwd=ROOT)
        seconds = round(time.perf_counter() - start, 1)
        self.record.append({"step": name, "command": command, "seconds": seconds, "exit": status})
        print(f"== {name}: exit {status} after {seconds} s", flush=True)
        if status != 0:
            self.write({})
            sys.exit(f"error: gpu check step {name!r} failed (exit {status}); its output is above")

    def write(self, results: dict) -> Path:
        path = self.output_dir / "gpu_check.json"
        path.write_text(json.dumps({"steps": self.record, **results}, indent=1))
        return path


def device_environment(device: str) -> dict:
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            sys.exit(f"error: --device {device}: this machine has no usable GPU; use --device cpu")
        return {"device": device, "gpu": torch.cuda.get_device_name(0), "gpus": torch.cuda.device_count(),
                "cuda": torch.version.cuda, "torch": torch.__version__}  # fmt: skip
    return {"device": device, "cores": os.cpu_count(), "torch": torch.__version__}


def main(args) -> dict:
    out = Path(args.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    environment = device_environment(args.device)
    env = {**os.environ, "DETECTRON2_DATASETS": str(out / "datasets"), "PYTHONUNBUFFERED": "1"}
    os.environ["DETECTRON2_DATASETS"] = env["DETECTRON2_DATASETS"]
    from pretrain.synthetic import generate_demo_classification
    from resnext_det.data.demo_dataset import generate_demo_dataset

    generate_demo_dataset()
    classification_root = generate_demo_classification()
    _, val_images = generate_demo_dataset()["resnext_demo_val"]
    on = ["MODEL.DEVICE", args.device]
    gpus = ["--num-gpus", str(args.num_gpus), "--overwrite"]
    steps = Steps(out, env, child=args.num_gpus > 1)

    pretrain = out / "pretrain"
    steps("pretraining, one epoch",
          ["tools/pretrain_imagenet.py", "--config-file", str(CONFIGS / "pretrain_shapes_tiny.yaml"), *gpus,
           "DATA.ROOT", str(classification_root), "DATA.NUM_WORKERS", "2", "SOLVER.EPOCHS", "1",
           "SOLVER.STEPS", "()", "OUTPUT_DIR", str(pretrain), *on])  # fmt: skip
    weights = out / "model_d2.pth"
    steps("weight conversion",
          ["tools/convert_weights.py", "--source", "pretrain", str(pretrain / "model_final.pth"),
           str(weights), "--config-file", str(CONFIGS / "fast_rcnn_tiny_C4.yaml"),
           "--overwrite"])  # fmt: skip
    few = ["SOLVER.MAX_ITER", "20", "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "5",
           "MODEL.WEIGHTS", str(weights)]  # fmt: skip
    rpn = out / "rpn"
    steps("stage 1: RPN, 20 iterations, then proposals",
          ["tools/train_rpn.py", "--config-file", str(CONFIGS / "rpn_tiny_C4.yaml"), *gpus, *few,
           "OUTPUT_DIR", str(rpn), *on])  # fmt: skip
    stage2 = ["--config-file", str(CONFIGS / "fast_rcnn_tiny_C4.yaml"), "--proposals", str(rpn)]
    frcn = out / "fast_rcnn"
    steps("stage 2: Fast R-CNN, 20 iterations",
          ["tools/train_fast_rcnn.py", *stage2, *gpus, *few, "OUTPUT_DIR", str(frcn), *on])  # fmt: skip
    final = ["MODEL.WEIGHTS", str(frcn / "model_final.pth"), *on]
    steps("COCO evaluation",
          ["tools/eval_coco.py", *stage2, "OUTPUT_DIR", str(out / "eval"), *final])  # fmt: skip
    steps("RPN + Fast R-CNN on plain images",
          ["tools/eval_coco.py", *stage2, "--images", val_images, "--output", str(out / "vis"),
           *final])  # fmt: skip
    speed_sizes = CPU_SPEED if args.device == "cpu" else FULL_SIZE_SPEED
    steps(
        "speed rows",
        ["benchmarks/speed.py", "--device", args.device, *speed_sizes, "--output", str(out / "speed")],
    )

    speed_json = next((out / "speed").glob("speed*.json"))
    box = json.loads((out / "eval" / "coco_eval.json").read_text())["resnext_demo_val"]["bbox"]
    results = {
        "environment": environment,
        "bbox": box,
        "detections": len(json.loads((out / "vis" / "detections.json").read_text())),
        "speed": json.loads(speed_json.read_text()),
    }
    path = steps.write(results)
    print(f"\n== gpu check passed on {environment.get('gpu', args.device)}: "
          f"{sum(s['seconds'] for s in steps.record):.0f} s in all, AP {box['AP']:.1f} after 20 iterations "
          f"(not a result: the path ran); {path}")  # fmt: skip
    print(speed_json.with_suffix(".md").read_text())
    return results


if __name__ == "__main__":
    main(parse_args())
