#!/usr/bin/env python
"""Evaluate a Fast R-CNN of the paper's schedule with COCO AP, or draw its detections on images.

  # AP, AP50, AP75, APs/m/l and per-category AP on DATASETS.TEST (minival), as a table and JSON
  python tools/eval_coco.py --config-file configs/COCO-Detection/fast_rcnn_X50_32x4d_C4.yaml \
      --proposals out/rpn_x50 MODEL.WEIGHTS out/frcn_x50/model_final.pth
  # the RPN (from --proposals: its config.yaml and model_final.pth) and the Fast R-CNN together
  # on plain images, detections drawn to PNG files
  python tools/eval_coco.py ... --images some/folder --output vis/

Results: OUTPUT_DIR/coco_eval.json (and detectron2's coco_instances_results.json per dataset).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import resnext_det  # noqa: F401  (prepares detectron2; must come first)
from resnext_det.atomic_files import atomic_write_json
from resnext_det.engine import attach_proposal_files, setup_cfg, train_stage
from resnext_det.engine.cli import (
    add_dataset_argument,
    exit_on_user_error,
    preflight,
    register_datasets_from_args,
    run_tool,
)
from resnext_det.engine.drawing import draw_detections, image_files, two_stage_predictor
from resnext_det.engine.stages import results_by_dataset

from detectron2.engine import default_argument_parser
from detectron2.utils import comm


def parse_args(argv=None):
    parser = add_dataset_argument(default_argument_parser(epilog=__doc__))
    parser.add_argument("--proposals", required=True, help="stage 1's output directory")
    parser.add_argument("--images", default="", help="draw detections on the images of this folder")
    parser.add_argument("--output", default="", help="folder for the drawn images (with --images)")
    parser.add_argument("--score-threshold", type=float, default=0.5, help="drawn detections' minimum score")
    return parser.parse_args(argv)


def _nan_to_none(value):
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value


def evaluate(args) -> dict:
    cfg = setup_cfg(
        args.config_file,
        args.opts,
        args,
        extra=lambda c: attach_proposal_files(c, args.proposals, test_only=True),
    )
    _, results = train_stage(cfg, eval_only=True)
    results = results_by_dataset(cfg, results)
    if comm.is_main_process():
        # strict JSON: a metric that cannot be computed (no objects of that size) is null, not NaN
        atomic_write_json(Path(cfg.OUTPUT_DIR, "coco_eval.json"), _nan_to_none(results))
        for name, r in results.items():
            box = r["bbox"]
            print(
                f"{name}: AP {box['AP']:.1f}  AP50 {box['AP50']:.1f}  AP75 {box['AP75']:.1f}  "
                f"APs {box['APs']:.1f}  APm {box['APm']:.1f}  APl {box['APl']:.1f}"
            )
    return results


def draw(args) -> list[Path]:
    frcn_cfg = setup_cfg(args.config_file, args.opts)
    predictor = two_stage_predictor(args.proposals, frcn_cfg)
    dataset = frcn_cfg.DATASETS.TEST[0] if frcn_cfg.DATASETS.TEST else None
    output = Path(args.output or "vis")
    written = draw_detections(predictor, image_files(args.images), output, dataset, args.score_threshold)
    print(f"drew {len(written)} images into {output}")
    return written


def main(args):
    register_datasets_from_args(args)
    return draw(args) if args.images else evaluate(args)


if __name__ == "__main__":
    args = parse_args()
    if args.images:  # one process draws
        with exit_on_user_error():
            register_datasets_from_args(args)
            drawn = draw(args)
        sys.exit(0 if drawn else 1)
    run_tool(main, args, preflight=lambda: preflight(args, args.proposals, test_only=True))
