#!/usr/bin/env python
"""The README's pictures, regenerated from the quick demo: one command.

  python scripts/readme_pictures.py                       # runs (or continues) the quick demo first
  python scripts/readme_pictures.py --demo-dir output/demo_quick --no-run   # only copy

Runs ``tools/demo.py --quick --output-dir DEMO_DIR`` (finished stages are kept, so a second call
only copies), then copies into ``docs/``: the drawn detections (``demo_detections.jpg``), the
training curves (``demo_curves.png``), the error breakdown and the confusion matrix of
``eval_coco.py --analysis`` (``demo_error_breakdown.png``, ``demo_confusion_matrix.png``), and
``browse_dataset.py``'s proposal contact sheet (``demo_proposals.jpg``). Photos go to JPEG
(smaller, at most 1200 px wide), plots stay PNG (sharper).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demo-dir", default="output/demo_quick", help="the quick demo's --output-dir")
    parser.add_argument("--no-run", action="store_true", help="only copy from an existing demo folder")
    args = parser.parse_args(argv)
    demo = Path(args.demo_dir)
    if not args.no_run:
        command = [sys.executable, "tools/demo.py", "--quick", "--output-dir", str(demo)]
        print("$", " ".join(command), flush=True)
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            return 1
    missing = [str(demo / source) for source in PICTURES.values() if not (demo / source).is_file()]
    if missing:
        sys.exit(f"error: {demo} lacks {', '.join(missing)}: run the quick demo into it (drop --no-run)")
    for target, source in PICTURES.items():
        with Image.open(demo / source) as image:
            destination = ROOT / "docs" / target
            if destination.suffix == ".jpg":  # at most 1200 px wide: a README, not a print
                image = image.convert("RGB")
                image.thumbnail((1200, 1200))
                image.save(destination, quality=85)
            else:
                image.save(destination, optimize=True)
        print(f"{demo / source} -> docs/{target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
