#!/usr/bin/env python
"""ImageNet-1K pretraining of a ResNeXt classifier (paper Sec. 4), or its evaluation.

  python tools/pretrain_imagenet.py --config-file configs/ImageNet/X50_32x4d.yaml \
      --num-gpus 8 DATA.ROOT /datasets/imagenet OUTPUT_DIR out/x50_in1k
  python tools/pretrain_imagenet.py ... --resume                  # continue from the last epoch
  python tools/pretrain_imagenet.py ... --eval-only MODEL.WEIGHTS out/x50_in1k/model_final.pth
  python tools/pretrain_imagenet.py ... --eval-only MODEL.WEIGHTS resnext_50_32x4d.t7  # the paper's model

The output's ``model_final.pth`` converts to detection weights with tools/convert_weights.py.
"""

from __future__ import annotations

import logging
import os

import resnext_det  # noqa: F401  (prepares detectron2; must come first)
from pretrain.config import get_pretrain_cfg
from pretrain.data import build_datasets
from pretrain.engine import build_classifier, evaluate, load_classifier_weights, train
from pretrain.tool import load_tool_cfg, preflight_classification, setup_run
from resnext_det.atomic_files import atomic_write_json
from resnext_det.config import resnext_template_from_cfg
from resnext_det.engine.cli import add_overwrite_argument, run_tool
from resnext_det.engine.slurm import add_slurm_arguments

from detectron2.engine import default_argument_parser
from detectron2.utils import comm


def load_cfg(args):
    return load_tool_cfg(args, get_pretrain_cfg)


def preflight(args) -> None:
    """The config, device, ImageNet folder layout and OUTPUT_DIR, before any worker starts."""
    preflight_classification(args, load_cfg(args), resnext_template_from_cfg, build_datasets)


def main(args):
    cfg = load_cfg(args)
    setup_run(cfg, args)
    logger = logging.getLogger("pretrain")
    if args.eval_only:
        model = build_classifier(cfg)
        load_classifier_weights(model, cfg.MODEL.WEIGHTS)
        results = evaluate(cfg, model, build_datasets(cfg, with_train=False)["val"])
    else:
        results = train(cfg, resume=args.resume)
    if comm.is_main_process():
        crop = f"{cfg.TEST.CROP_SIZE}x{cfg.TEST.CROP_SIZE} (shorter side {cfg.TEST.RESIZE})"
        logger.info(
            "single-crop %s: top-1 error %.2f%%, top-5 error %.2f%%",
            crop,
            results["top1_err"],
            results["top5_err"],
        )
        final = {**results, "crop": cfg.TEST.CROP_SIZE, "resize": cfg.TEST.RESIZE}
        atomic_write_json(os.path.join(cfg.OUTPUT_DIR, "final_metrics.json"), final)
    return results


if __name__ == "__main__":
    args = add_slurm_arguments(add_overwrite_argument(default_argument_parser(epilog=__doc__))).parse_args()
    run_tool(main, args, preflight=lambda: preflight(args))
