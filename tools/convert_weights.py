#!/usr/bin/env python
"""Convert an ImageNet classifier checkpoint into detectron2 weights for resnext_det's C4 models.

  python tools/convert_weights.py --source torchvision resnext50_32x4d.pth x50_d2.pth
  python tools/convert_weights.py --source fb-torch7 resnext_50_32x4d.t7 x50_fb.pth
  python tools/convert_weights.py --source detectron-pkl X-101-64x4d.pkl x101_64x4d_d2.pth  # BGR input
  python tools/convert_weights.py --source pretrain out/x50_in1k/model_final.pth x50_d2.pth \
      --config-file configs/COCO-Detection/faster_rcnn_X50_32x4d_C4.yaml
  # then: MODEL.WEIGHTS x50_d2.pth (with the INPUT.FORMAT / PIXEL_MEAN / PIXEL_STD printed)

Sources: "pretrain" (tools/pretrain_imagenet.py), "torchvision" (resnet50/101/152,
resnext50_32x4d, resnext101_32x8d, resnext101_64x4d state dicts), "timm" (the same models),
"fb-torch7" (the paper's own ImageNet models: facebookresearch/ResNeXt's resnext_50_32x4d.t7,
resnext_101_32x4d.t7, resnext_101_64x4d.t7 and fb.resnet.torch's resnet-50.t7 / resnet-101.t7;
needs `pip install torchfile`), "detectron-pkl" (Detectron's ImageNet models, X-101-64x4d.pkl ...:
BGR input with Caffe's mean, which the file records and the training tools check; MSRA's
R-50.pkl / R-101.pkl put the stride in the 1x1 and are refused; --pkl-input says which input a
file of another name expects).
With --config-file the weights must fit the model that config builds, or nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import resnext_det  # noqa: F401  (prepares detectron2; must come first)
from resnext_det.atomic_files import atomic_torch_save
from resnext_det.checkpoint import SOURCES, check_weights_fit, convert_checkpoint
from resnext_det.engine import setup_cfg
from resnext_det.engine.cli import exit_on_user_error
from resnext_det.engine.lazy_config import is_lazy_config, load_lazy_config
from resnext_det.engine.lazy_train import check_lazy_model
from resnext_det.errors import OutputDirError

from detectron2.modeling import build_model


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", required=True, choices=SOURCES)
    parser.add_argument("input", help="classifier checkpoint (.pth)")
    parser.add_argument("output", help="detectron2 weights file to write (.pth)")
    parser.add_argument(
        "--config-file", default="", help="check the weights fit this detection config (YAML or LazyConfig)"
    )
    parser.add_argument(
        "--pkl-input",
        choices=("detectron", "detectron2"),
        help="with --source detectron-pkl: the input the file expects when its name does not say "
        "(detectron: BGR, Detectron's mean, no std; detectron2: BGR, mean and std)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return parser.parse_args(argv)


def convert(args) -> dict:
    """Convert, check against ``--config-file`` if given, then write (nothing is written on error)."""
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise OutputDirError(f"{output} exists; pass --overwrite to replace it, or choose another output")
    checkpoint = convert_checkpoint(args.input, args.source, args.pkl_input)
    if args.config_file and is_lazy_config(args.config_file):  # built on the meta device: shapes only
        model = check_lazy_model(load_lazy_config(args.config_file, training=False), args.config_file)
        check_weights_fit(model, checkpoint["model"], source=args.input)
    elif args.config_file:
        cfg = setup_cfg(args.config_file, ["MODEL.DEVICE", "cpu"])
        check_weights_fit(build_model(cfg), checkpoint["model"], source=args.input)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(checkpoint, output)  # a crash never leaves a half-written file under the real name
    return checkpoint


def main(argv=None) -> int:
    args = parse_args(argv)
    with exit_on_user_error():  # a user error is one `error: ...` paragraph and exit status 1
        checkpoint = convert(args)
    info = checkpoint["resnext_det"]
    print(f"wrote {args.output}: {len(checkpoint['model'])} tensors, template {json.dumps(info['template'])}")
    print(
        "use it with: MODEL.WEIGHTS "
        + str(args.output)
        + " "
        + " ".join(f"{k} {json.dumps(v).replace(' ', '')}" for k, v in info["detectron2_cfg"].items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
