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
from resnext_det.engine.stages import results_by_dataset
from resnext_det.engine.two_stage import TwoStagePredictor
from resnext_det.errors import ResNeXtDetError

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.engine import default_argument_parser
from detectron2.utils import comm
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: Drawn images smaller than this (shorter side, pixels) are enlarged so that labels stay legible.
MIN_DRAWN_SIDE = 384


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
    rpn_dir = Path(args.proposals)
    for required in ("config.yaml", "model_final.pth"):
        if not (rpn_dir / required).is_file():
            raise ResNeXtDetError(f"{rpn_dir / required} not found: --proposals must be stage 1's OUTPUT_DIR")
    frcn_cfg = setup_cfg(args.config_file, args.opts)
    rpn_cfg = setup_cfg(
        str(rpn_dir / "config.yaml"),
        ["MODEL.WEIGHTS", str(rpn_dir / "model_final.pth"), "MODEL.DEVICE", frcn_cfg.MODEL.DEVICE],
    )
    from detectron2.utils.visualizer import Visualizer  # imports cv2: only needed here

    predictor = TwoStagePredictor(rpn_cfg, frcn_cfg)
    metadata = None
    if frcn_cfg.DATASETS.TEST:  # class names; a COCO-json dataset sets them when first loaded
        metadata = MetadataCatalog.get(frcn_cfg.DATASETS.TEST[0])
        if not hasattr(metadata, "thing_classes"):
            DatasetCatalog.get(frcn_cfg.DATASETS.TEST[0])
    if not Path(args.images).is_dir():
        raise ResNeXtDetError(f"--images {args.images} is not a folder of images")
    images = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ResNeXtDetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in --images {args.images}")
    output = Path(args.output or "vis")
    output.mkdir(parents=True, exist_ok=True)
    written, detections = [], {}
    for path in images:
        image = read_image(str(path), format="BGR")
        instances = predictor(image).to("cpu")
        instances = instances[instances.scores >= args.score_threshold]
        scale = max(1.0, MIN_DRAWN_SIDE / min(image.shape[:2]))  # small images: readable labels
        visualizer = Visualizer(image[:, :, ::-1], metadata, scale=scale)
        drawn = visualizer.draw_instance_predictions(instances).get_image()
        target = output / (path.stem + ".png")
        Image.fromarray(drawn).save(target)
        written.append(target)
        detections[path.name] = [
            {
                "box_xyxy": [round(v, 1) for v in box.tolist()],
                "score": round(float(score), 4),
                "class": int(c),
            }
            for box, score, c in zip(
                instances.pred_boxes.tensor, instances.scores, instances.pred_classes, strict=True
            )
        ]
    atomic_write_json(output / "detections.json", detections, indent=1)
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
