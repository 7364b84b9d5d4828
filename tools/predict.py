#!/usr/bin/env python
"""Detect objects in images, a folder or a video with an exported model or the two trained stages.

  python tools/predict.py --model exported/x50 --input photos/ --output vis/
  python tools/predict.py --rpn out/rpn_x50 --fast-rcnn out/frcn_x50 --input clip.mp4 --output vis/
  python tools/predict.py --model exported/x50_int8 --backend openvino --input photos/ --output vis/

--model is a folder of tools/export_model.py (ONNX Runtime or AOTInductor, by its meta.json;
--backend openvino runs an ONNX model, fp32 or int8, with OpenVINO: see docs/deploy.md);
--rpn/--fast-rcnn run the PyTorch models of the stages' OUTPUT_DIRs. Images are drawn to
<output>/<name>.png, a video to <output>/<name>.mp4; every detection at or above
--score-threshold goes to <output>/detections.json in COCO's results format.
"""

from __future__ import annotations

import argparse
import sys

import resnext_det  # noqa: F401  (prepares detectron2; must come first)
from resnext_det.analysis.pictures import category_ids, dataset_metadata
from resnext_det.deploy import BACKENDS, load, open_source, predict_to_folder
from resnext_det.engine.cli import check_device, exit_on_user_error
from resnext_det.engine.two_stage import TwoStagePredictor
from resnext_det.errors import ConfigError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="", help="an exported model's folder (tools/export_model.py)")
    parser.add_argument(
        "--rpn", default="", help="stage 1's OUTPUT_DIR (with --fast-rcnn, instead of --model)"
    )
    parser.add_argument("--fast-rcnn", default="", help="stage 2's OUTPUT_DIR")
    parser.add_argument(
        "--backend",
        choices=sorted({b for backends in BACKENDS.values() for b in backends}),
        default=None,
        help="runtime of --model (default: onnxruntime for ONNX, aotinductor for .pt2)",
    )
    parser.add_argument("--input", required=True, help="an image, a folder of images, or a video file")
    parser.add_argument("--output", default="vis", help="folder for the drawings and detections.json")
    parser.add_argument("--score-threshold", type=float, default=0.5, help="minimum score kept")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def build_predictor(args):
    """(predictor, metadata, category_ids) for --model, or for --rpn with --fast-rcnn."""
    if bool(args.model) == bool(args.rpn or args.fast_rcnn):
        raise ConfigError("give either --model (an exported model) or both --rpn and --fast-rcnn")
    if args.backend and not args.model:
        raise ConfigError("--backend chooses the runtime of an exported --model; the stages run in PyTorch")
    if args.model:
        predictor = load(args.model, device=args.device, backend=args.backend)
        return predictor, predictor.metadata, predictor.meta.get("category_ids")
    if not (args.rpn and args.fast_rcnn):
        raise ConfigError("--rpn and --fast-rcnn go together: the Fast R-CNN needs its RPN's proposals")
    predictor = TwoStagePredictor.from_stage_dirs(args.rpn, args.fast_rcnn, device=args.device)
    metadata = dataset_metadata(predictor.dataset_names[0] if predictor.dataset_names else None)
    return predictor, metadata, category_ids(metadata)


def main(argv=None) -> int:
    args = parse_args(argv)
    with exit_on_user_error():
        if not 0 <= args.score_threshold <= 1:
            raise ConfigError(f"--score-threshold must be between 0 and 1, got {args.score_threshold}")
        check_device(args.device, "--device")
        source = open_source(args.input)
        predictor, metadata, category_ids = build_predictor(args)
        summary = predict_to_folder(
            predictor,
            source,
            args.output,
            metadata=metadata,
            category_ids=category_ids,
            score_threshold=args.score_threshold,
            progress=not args.no_progress,
        )
    print(
        f"{summary['detections']} detections (score >= {args.score_threshold}) in {summary['frames']} "
        f"{'frames' if source.kind == 'video' else 'images'}; wrote {len(summary['written'])} drawings and "
        f"detections.json to {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
