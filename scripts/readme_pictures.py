#!/usr/bin/env python
"""The docs' pictures and demo numbers, regenerated from the demo: one command.

  python scripts/readme_pictures.py                       # runs (or continues) the demo first
  python scripts/readme_pictures.py --demo-dir output/demo --no-run   # only copy

Runs ``tools/demo.py --output-dir DEMO_DIR`` (finished stages are kept, so a second call
only copies), then copies into ``docs/``: the drawn detections (``demo_detections.jpg``), the
training curves (``demo_curves.png``), the error breakdown and the confusion matrix of
``eval_coco.py --analysis`` (``demo_error_breakdown.png``, ``demo_confusion_matrix.png``), and
``browse_dataset.py``'s proposal contact sheet (``demo_proposals.jpg``), the corruption
benchmark and the calibration of its detector (``measure_robustness``: ``demo_robustness*``,
``demo_reliability.png``, ``demo_calibration.json``), and the demo's ``demo_results.json``,
whose numbers ``scripts/update_docs.py`` then writes into the pages (it runs last). Photos go
to JPEG (smaller, at most 1200 px wide), plots stay PNG (sharper).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
#: docs picture -> the demo output it comes from (relative to the demo folder)
PICTURES = {
    "demo_detections.jpg": "demo_detections.png",
    "demo_curves.png": "plots/overview.png",
    "demo_error_breakdown.png": "eval/analysis/resnext_demo_val/error_breakdown.png",
    "demo_confusion_matrix.png": "eval/analysis/resnext_demo_val/confusion_matrix.png",
    "demo_proposals.jpg": "browse/contact_sheet.png",
}


#: docs/detection.md's test-time augmentation rows: (label, eval_coco.py overrides)
_TTA = ["TEST.AUG.ENABLED", "True", "TEST.AUG.MIN_SIZES"]
TTA_VIEWS = [
    ("none (the demo's evaluation)", []),
    ("256 (one view, no flip)", [*_TTA, "(256,)", "TEST.AUG.FLIP", "False"]),
    ("256 + flip", [*_TTA, "(256,)", "TEST.AUG.FLIP", "True"]),
    ("224, 256, 288, each + flip", [*_TTA, "(224, 256, 288)", "TEST.AUG.FLIP", "True"]),
]


def measure_tta(demo: Path) -> dict:
    """The demo's stage 2 evaluated plain and under each TTA_VIEWS row: AP, AP50, AP75 and the
    tool run's seconds (the same command, so their ratio is TTA's cost)."""
    rows = {}
    for label, views in TTA_VIEWS:
        out = demo / "tta" / str(len(rows))
        command = [
            sys.executable, "-W", "ignore", "tools/eval_coco.py",
            "--config-file", "configs/demo/fast_rcnn_tiny_C4.yaml", "--proposals", str(demo / "rpn"),
            "MODEL.WEIGHTS", str(demo / "fast_rcnn" / "model_final.pth"), "TEST.AUG.MAX_SIZE", "384",
            *views, "OUTPUT_DIR", str(out),
        ]  # fmt: skip
        start = time.perf_counter()
        if subprocess.run(command, cwd=ROOT, capture_output=True).returncode != 0:
            sys.exit(f"error: {' '.join(command)} failed")
        seconds = time.perf_counter() - start
        box = json.loads((out / "coco_eval.json").read_text())["resnext_demo_val"]["bbox"]
        rows[label] = {**{k: box[k] for k in ("AP", "AP50", "AP75")}, "seconds": round(seconds, 1)}
    return rows


#: docs picture -> the robustness runs' output it comes from (relative to the demo folder)
ROBUSTNESS_PICTURES = {
    "demo_robustness_heatmap.png": "robustness/robustness_heatmap.png",
    "demo_robustness_curves.png": "robustness/robustness_curves.png",
    "demo_robustness_fp32_int8.png": "robustness_compared/retention.png",
    "demo_robustness_calibration.png": "robustness_compared/calibration.png",
    "demo_reliability.png": "calibration/reliability_resnext_demo_val_iou50.png",
}
#: docs result file -> the file it is copied from
ROBUSTNESS_RESULTS = {
    "demo_robustness.json": "robustness/robustness.json",
    "demo_robustness_compared.json": "robustness_compared/comparison.json",
    "demo_calibration.json": "calibration/calibration.json",
}


def measure_robustness(demo: Path) -> None:
    """docs/analysis.md's runs on the demo's stages: the corruption benchmark of the PyTorch pair
    and of its int8 export (default settings), the two side by side, and the calibration of the
    box scores with both scalings fitted on the training split. A finished run is skipped (the
    benchmark itself resumes an interrupted one)."""
    pair = ["--config-file", "configs/demo/fast_rcnn_tiny_C4.yaml", "--proposals", str(demo / "rpn")]
    weights = ["MODEL.WEIGHTS", str(demo / "fast_rcnn" / "model_final.pth")]
    int8 = demo / "exported_int8"
    steps = [
        (demo / "robustness" / "robustness_curves.png",
         ["tools/eval_coco.py", *pair, "--corruptions", "all", *weights,
          "OUTPUT_DIR", str(demo / "robustness")]),
        (int8 / "meta.json",
         ["tools/export_model.py", "--exported", str(demo / "exported"), "--quantize", "int8",
          "--calibration-dataset", "resnext_demo_train", "--calibration-images", "40",
          "--output", str(int8)]),
        (demo / "robustness_int8" / "robustness_curves.png",
         ["tools/eval_coco.py", "--exported", str(int8), "--corruptions", "all",
          "OUTPUT_DIR", str(demo / "robustness_int8")]),
        (demo / "robustness_compared" / "comparison.json",
         ["tools/plot_robustness.py", str(demo / "robustness"), str(demo / "robustness_int8"),
          "--labels", "fp32 (PyTorch)", "int8 (ONNX Runtime)",
          "--output", str(demo / "robustness_compared")]),
        (demo / "calibration" / "calibration.json",
         ["tools/eval_coco.py", *pair, "--calibration", "--calibration-fit", "resnext_demo_train",
          *weights, "OUTPUT_DIR", str(demo / "calibration")]),
    ]  # fmt: skip
    for done, command in steps:
        if done.is_file():
            continue
        print("$", " ".join(command), flush=True)
        if subprocess.run([sys.executable, "-W", "ignore", *command], cwd=ROOT).returncode != 0:
            sys.exit(f"error: {' '.join(command)} failed")
    for target, source in ROBUSTNESS_RESULTS.items():
        text = (demo / source).read_text().replace(str(demo), "output/demo")  # no machine's paths
        (ROOT / "docs" / target).write_text(text if text.endswith("\n") else text + "\n")
        print(f"{demo / source} -> docs/{target}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demo-dir", default="output/demo", help="the demo's --output-dir")
    parser.add_argument("--no-run", action="store_true", help="only copy from an existing demo folder")
    args = parser.parse_args(argv)
    demo = Path(args.demo_dir)
    if not args.no_run:
        command = [sys.executable, "tools/demo.py", "--output-dir", str(demo)]
        print("$", " ".join(command), flush=True)
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            return 1
    needed = [*PICTURES.values(), "demo_results.json"]
    missing = [str(demo / source) for source in needed if not (demo / source).is_file()]
    if missing:
        sys.exit(f"error: {demo} lacks {', '.join(missing)}: run the demo into it (drop --no-run)")
    measure_robustness(demo)
    for target, source in {**PICTURES, **ROBUSTNESS_PICTURES}.items():
        with Image.open(demo / source) as image:
            destination = ROOT / "docs" / target
            if destination.suffix == ".jpg":  # at most 1200 px wide: a README, not a print
                image = image.convert("RGB")
                image.thumbnail((1200, 1200))
                image.save(destination, quality=85)
            else:
                image.save(destination, optimize=True)
        print(f"{demo / source} -> docs/{target}")
    tta = measure_tta(demo)
    (ROOT / "docs" / "demo_tta.json").write_text(json.dumps(tta, indent=1) + "\n")
    print(f"test-time augmentation on {demo}'s stages -> docs/demo_tta.json")
    results = json.loads((demo / "demo_results.json").read_text())
    results.pop("pictures", None)  # a path on the machine that ran it
    documented = ROOT / "docs" / "demo_results.json"
    if documented.is_file():  # a stage kept from an earlier run keeps the time it took then
        results["seconds"] = {**json.loads(documented.read_text()).get("seconds", {}), **results["seconds"]}
    (ROOT / "docs" / "demo_results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"{demo / 'demo_results.json'} -> docs/demo_results.json")
    return subprocess.run([sys.executable, "scripts/update_docs.py"], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
