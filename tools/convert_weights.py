#!/usr/bin/env python
"""Convert an ImageNet classifier checkpoint into detectron2 weights for resnext_det's C4 models.

  python tools/convert_weights.py --source torchvision resnext50_32x4d.pth x50_d2.pth
  python tools/convert_weights.py --source pretrain out/x50_in1k/model_final.pth x50_d2.pth \
      --config-file configs/COCO-Detection/faster_rcnn_X50_32x4d_C4.yaml
  # then: MODEL.WEIGHTS x50_d2.pth (with the INPUT.FORMAT / PIXEL_MEAN / PIXEL_STD printed)

Sources: "pretrain" (tools/pretrain_imagenet.py), "torchvision" (resnet50/101/152,
resnext50_32x4d, resnext101_32x8d, resnext101_64x4d state dicts), "timm" (the same models).
With --config-file the weights must fit the model that config builds, or nothing is written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import resnext_det  # noqa: F401  (prepares detectron2; must come first)
from resnext_det.checkpoint import SOURCES, WeightsMismatchError, check_weights_fit, convert_checkpoint
from resnext_det.engine import setup_cfg

import torch
from detectron2.modeling import build_model


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", required=True, choices=SOURCES)
    parser.add_argument("input", help="classifier checkpoint (.pth)")
    parser.add_argument("output", help="detectron2 weights file to write (.pth)")
    parser.add_argument("--config-file", default="", help="check the weights fit this detection config")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        print(f"error: {output} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    try:
        checkpoint = convert_checkpoint(args.input, args.source)
        if args.config_file:
            cfg = setup_cfg(args.config_file, ["MODEL.DEVICE", "cpu"])
            check_weights_fit(build_model(cfg), checkpoint["model"], source=args.input)
    except (WeightsMismatchError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    torch.save(checkpoint, partial)
    os.replace(partial, output)  # a crash never leaves a half-written weights file under the real name
    info = checkpoint["resnext_det"]
    print(f"wrote {output}: {len(checkpoint['model'])} tensors, template {json.dumps(info['template'])}")
    print(
        "use it with: MODEL.WEIGHTS "
        + str(output)
        + " "
        + " ".join(f"{k} {json.dumps(v).replace(' ', '')}" for k, v in info["detectron2_cfg"].items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
