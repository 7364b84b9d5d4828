#!/usr/bin/env python
"""Export a trained RPN + Fast R-CNN pair (the paper's two stages) as one model, image to detections.

  python tools/export_model.py --rpn out/rpn_x50 --fast-rcnn out/frcn_x50 --format onnx --output exported/x50
  python tools/export_model.py --rpn out/rpn_x50 --fast-rcnn out/frcn_x50 --format pt2 \
      --output exported/x50_pt2
  # int8 (ONNX Runtime's static quantization), calibrated on 200 training images
  python tools/export_model.py --rpn out/rpn_x50 --fast-rcnn out/frcn_x50 --format onnx --quantize int8 \
      --calibration-dataset coco_2014_train --calibration-images 200 --output exported/x50_int8
  # or quantize an fp32 ONNX export already made
  python tools/export_model.py --exported exported/x50 --quantize int8 \
      --calibration-dataset coco_2014_train --output exported/x50_int8 [--max-ap-drop 1.0]

--rpn / --fast-rcnn are the stages' OUTPUT_DIRs (their config.yaml and model_final.pth).
onnx: model.onnx (opset 18) for ONNX Runtime; pt2: torch.export + AOTInductor, for this device.
Both take an (H, W, 3) uint8 BGR image of any size and return boxes, scores, classes in its
pixels; meta.json beside the model records classes, test size, thresholds and source checksums.
--quantize int8: Conv/Gemm/MatMul in int8 (weights per channel, activations per tensor, ranges by
--calibration-method), everything else fp32; the int8 and fp32 models are compared on the
calibration images (AP, time per image) and --max-ap-drop refuses a larger loss (docs/deploy.md).
Run it with tools/predict.py --model DIR, tools/eval_coco.py --exported DIR, or
resnext_det.deploy.load(DIR) in Python.
"""

from __future__ import annotations

import argparse
import sys
import time

import resnext_det  # noqa: F401  (prepares detectron2; must come first)
from resnext_det.deploy import EXPORT_FORMATS, QuantizeSettings, export_stage_pair, quantize_export, read_meta
from resnext_det.deploy.quantize import CALIBRATION_METHODS, DEFAULT_KEEP_FP32, QUANTIZATIONS
from resnext_det.engine.cli import (
    add_dataset_argument,
    check_device,
    exit_on_user_error,
    register_datasets_from_args,
)
from resnext_det.errors import ExportError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rpn", default="", help="stage 1's OUTPUT_DIR (tools/train_rpn.py)")
    parser.add_argument("--fast-rcnn", default="", help="stage 2's OUTPUT_DIR (tools/train_fast_rcnn.py)")
    parser.add_argument(
        "--exported",
        default="",
        help="with --quantize: an fp32 ONNX export to quantize, instead of the stages",
    )
    parser.add_argument(
        "--format", choices=EXPORT_FORMATS, default="onnx", help="onnx (ONNX Runtime) or pt2 (AOTInductor)"
    )
    parser.add_argument("--output", required=True, help="folder to create for the model and its meta.json")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output folder")
    parser.add_argument(
        "--device", default="cpu", help="device to trace on (a .pt2 runs only on this device)"
    )
    quantize = parser.add_argument_group("int8 quantization (ONNX Runtime, static, calibrated)")
    quantize.add_argument("--quantize", choices=QUANTIZATIONS, default=None, help="quantize the ONNX model")
    quantize.add_argument(
        "--calibration-dataset",
        default="",
        help="a registered training split (not one the model is tested on)",
    )
    quantize.add_argument("--calibration-images", type=int, default=200, help="images drawn from it")
    quantize.add_argument(
        "--calibration-method", choices=tuple(CALIBRATION_METHODS), default="minmax", help="activation ranges"
    )
    quantize.add_argument(
        "--keep-fp32",
        nargs="*",
        default=None,
        metavar="NODE",
        help="ONNX nodes or model modules (e.g. bbox_pred, rpn_head) to leave in fp32, instead of the "
        f"default {' '.join(DEFAULT_KEEP_FP32)}; given alone, nothing",
    )
    quantize.add_argument(
        "--max-ap-drop", type=float, default=None, help="refuse int8 losing more AP on the calibration images"
    )
    add_dataset_argument(parser)
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE config overrides for both stages"
    )
    return parser.parse_args(argv)


def quantize_settings(args) -> QuantizeSettings | None:
    """The quantization arguments, checked together; None without --quantize."""
    used = [flag for flag, given in (("--calibration-dataset", args.calibration_dataset),
                                     ("--keep-fp32", args.keep_fp32 is not None),
                                     ("--max-ap-drop", args.max_ap_drop is not None)) if given]  # fmt: skip
    if args.quantize is None:
        if used or args.exported:
            raise ExportError(f"{(used or ['--exported'])[0]} is for --quantize int8, which was not given")
        return None
    if not args.calibration_dataset:
        raise ExportError(
            "--quantize int8 needs --calibration-dataset NAME: a registered training split whose images "
            "calibrate the int8 ranges (e.g. coco_2014_train, resnext_demo_train)"
        )
    return QuantizeSettings(
        dataset=args.calibration_dataset,
        images=args.calibration_images,
        method=args.calibration_method,
        keep_fp32=DEFAULT_KEEP_FP32 if args.keep_fp32 is None else tuple(args.keep_fp32),
        max_ap_drop=args.max_ap_drop,
        quantization=args.quantize,
    )


def check_sources(args) -> None:
    if args.exported and (args.rpn or args.fast_rcnn or args.opts):
        raise ExportError(
            "--exported quantizes an export as it is: give it without --rpn/--fast-rcnn/overrides"
        )
    if not args.exported and not (args.rpn and args.fast_rcnn):
        raise ExportError(
            "give both --rpn and --fast-rcnn (the stages' OUTPUT_DIRs), or --exported with --quantize"
        )


def describe(output, meta: dict, seconds: float) -> str:
    wrote = f"wrote {output / meta['model_file']} and meta.json in {seconds:.0f} s"
    quantization = meta.get("quantization")
    if quantization:
        check = quantization["check"]
        return (
            f"{wrote}: int8 ({quantization['method']}, {quantization['calibration']['images']} images of "
            f"{quantization['calibration']['dataset']}); on those images AP {check['int8']['AP']:.2f} "
            f"vs fp32 {check['fp32']['AP']:.2f} "
            f"(AP50 {check['int8']['AP50']:.2f} vs {check['fp32']['AP50']:.2f}), "
            f"{check['int8_time_ratio']:.2f}x fp32's time per image"
        )
    verified = meta["verified"]
    return (
        f"{wrote}: {len(meta['classes'])} classes, "
        f"test size {meta['test_size']['min']}/{meta['test_size']['max']}; "
        f"on a {verified['image_size'][1]}x{verified['image_size'][0]} example it agrees with the PyTorch "
        f"model to {verified['max_box_difference_px']:.1e} px ({verified['detections']} detections)"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    with exit_on_user_error():
        check_device(args.device, "--device")
        check_sources(args)
        settings = quantize_settings(args)
        register_datasets_from_args(args)
        start = time.perf_counter()
        if args.exported:
            output = quantize_export(args.exported, args.output, settings, overwrite=args.overwrite)
        else:
            output = export_stage_pair(
                args.rpn,
                args.fast_rcnn,
                args.output,
                args.format,
                overwrite=args.overwrite,
                device=args.device,
                opts=args.opts,
                quantize=settings,
            )
        meta = read_meta(output)
    print(describe(output, meta, time.perf_counter() - start))
    print(f"run it with: python tools/predict.py --model {output} --input IMAGES_OR_VIDEO --output vis/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
