#!/usr/bin/env python
"""ImageNet-1K pretraining of a ResNeXt classifier (paper Sec. 4), or its evaluation.

  python tools/pretrain_imagenet.py --config-file configs/ImageNet/X50_32x4d.yaml \
      --num-gpus 8 DATA.ROOT /datasets/imagenet OUTPUT_DIR out/x50_in1k
  python tools/pretrain_imagenet.py ... --resume                  # continue from the last epoch
  python tools/pretrain_imagenet.py ... --eval-only MODEL.WEIGHTS out/x50_in1k/model_final.pth

The output's ``model_final.pth`` converts to detection weights with tools/convert_weights.py.
"""

from __future__ import annotations

import logging
import os

import resnext_det  # noqa: F401  (prepares detectron2; must come first)
from pretrain.config import autocast_dtype, get_pretrain_cfg, uses_channels_last
from pretrain.data import build_datasets
from pretrain.engine import build_classifier, evaluate, load_classifier_weights, train
from resnext_det.atomic_files import atomic_write_json
from resnext_det.config import resnext_template_from_cfg
from resnext_det.engine.cli import add_overwrite_argument, check_device, run_tool
from resnext_det.engine.defaults import apply_deterministic_mode, merge_config
from resnext_det.engine.launch import check_batch_divides, check_weights_file
from resnext_det.engine.output_dir import prepare_output_dir
from resnext_det.engine.slurm import add_slurm_arguments

from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger


def load_cfg(args):
    cfg = get_pretrain_cfg()
    merge_config(cfg, args.config_file, args.opts)
    cfg.freeze()
    autocast_dtype(cfg), uses_channels_last(cfg)  # a bad SOLVER.AMP / MEMORY_FORMAT fails here, named
    return cfg


def setup(args):
    cfg = load_cfg(args)
    default_setup(cfg, args)
    apply_deterministic_mode(cfg)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="pretrain")
    return cfg


def preflight(args) -> None:
    """The config, device, ImageNet folder layout and OUTPUT_DIR, before any worker starts."""
    cfg = load_cfg(args)
    if not args.slurm:  # a Slurm job's GPUs are on its nodes, not here
        check_device(cfg.MODEL.DEVICE)
    check_weights_file(cfg.MODEL.WEIGHTS)
    resnext_template_from_cfg(cfg)  # the template's keys, named, before anything is built
    processes = args.num_gpus * args.num_machines
    for key in ("SOLVER.IMS_PER_BATCH", "TEST.IMS_PER_BATCH"):
        section, name = key.split(".")
        check_batch_divides(key, cfg[section][name], processes)
    build_datasets(cfg, with_train=not args.eval_only)
    if not args.eval_only:
        prepare_output_dir(cfg.OUTPUT_DIR, args.resume, args.overwrite)


def main(args):
    cfg = setup(args)
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
