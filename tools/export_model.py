#!/usr/bin/env python
"""Export a trained RPN + Fast R-CNN pair (the paper's two stages) as one model, image to detections.

  python tools/export_model.py --rpn out/rpn_x50 --fast-rcnn out/frcn_x50 --format onnx --output exported/x50
  python tools/export_model.py --rpn out/rpn_x50 --fast-rcnn out/frcn_x50 --format pt2 \
      --output exported/x50_pt2

--rpn / --fast-rcnn are the stages' OUTPUT_DIRs (their config.yaml and model_final.pth).
onnx: model.onnx (opset 18) for ONNX Runtime; pt2: torch.export + AOTInductor, for this device.
Both take an (H, W, 3) uint8 BGR image of any size and return boxes, scores, classes in its
pixels; meta.json beside the model records classes, test size, thresholds and source checksums.
Run it with tools/predict.py --model DIR, tools/eval_coco.py --exported DIR, or
resnext_det.deploy.load(DIR) in Python.
"""

from __future__ import annotations

import argparse
import sys
import time

import resnext_det  # noqa: F401  (prepares detectron2; must come first)
from resnext_det.deploy import EXPORT_FORMATS, export_stage_pair, read_meta
from resnext_det.engine.cli import check_device, exit_on_user_error


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rpn", required=True, help="stage 1's OUTPUT_DIR (tools/train_rpn.py)")
    parser.add_argument("--fast-rcnn", required=True, help="stage 2's OUTPUT_DIR (tools/train_fast_rcnn.py)")
    parser.add_argument(
        "--format", choices=EXPORT_FORMATS, default="onnx", help="onnx (ONNX Runtime) or pt2 (AOTInductor)"
    )
    parser.add_argument("--output", required=True, help="folder to create for the model and its meta.json")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output folder")
    parser.add_argument(
        "--device", default="cpu", help="device to trace on (a .pt2 runs only on this device)"
    )
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE config overrides for both stages"
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    with exit_on_user_error():
        check_device(args.device, "--device")
        start = time.perf_counter()
        output = export_stage_pair(
            args.rpn,
            args.fast_rcnn,
            args.output,
            args.format,
            overwrite=args.overwrite,
            device=args.device,
            opts=args.opts,
        )
        meta = read_meta(output)
    verified = meta["verified"]
    print(
        f"wrote {output / meta['model_file']} and meta.json in {time.perf_counter() - start:.0f} s: "
        f"{len(meta['classes'])} classes, test size {meta['test_size']['min']}/{meta['test_size']['max']}; "
        f"on a {verified['image_size'][1]}x{verified['image_size'][0]} example it agrees with the PyTorch "
        f"model to {verified['max_box_difference_px']:.1e} px ({verified['detections']} detections)"
    )
    print(f"run it with: python tools/predict.py --model {output} --input IMAGES_OR_VIDEO --output vis/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
