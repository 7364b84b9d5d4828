#!/usr/bin/env python
"""ResNeXt-29 on CIFAR-10 / CIFAR-100 (the paper's appendix A, Table 7), or its evaluation.

  python tools/train_cifar.py --config-file configs/CIFAR/ResNeXt29_8x64d_cifar10.yaml \
      --num-gpus 8 DATA.ROOT /datasets/cifar-10-batches-py OUTPUT_DIR out/cifar10_8x64d
  python tools/train_cifar.py ... --resume                       # continue from the last epoch
  python tools/train_cifar.py ... --eval-only MODEL.WEIGHTS out/cifar10_8x64d/model_final.pth

DATA.ROOT is the CIFAR site's python folder (cifar-10-batches-py/ or cifar-100-python/), read
and checked as it is. The test error (%) goes to the log and to OUTPUT_DIR/final_metrics.json.
"""

from __future__ import annotations

import logging
import os

import resnext_det  # noqa: F401  (prepares detectron2; must come first)
from pretrain.cifar import (
    build_cifar_classifier,
    cifar_checkpoint_metadata,
    cifar_template_from_cfg,
    get_cifar_cfg,
)
from pretrain.cifar_data import build_cifar_datasets
from pretrain.engine import evaluate, load_classifier_weights, train
from pretrain.tool import load_tool_cfg, preflight_classification, setup_run
from resnext_det.atomic_files import atomic_write_json
from resnext_det.engine.cli import add_overwrite_argument, run_tool
from resnext_det.engine.slurm import add_slurm_arguments

from detectron2.engine import default_argument_parser
from detectron2.utils import comm


def load_cfg(args):
    return load_tool_cfg(args, get_cifar_cfg)


def preflight(args) -> None:
    """The config, device, template, batch split, the CIFAR files and OUTPUT_DIR, before any
    worker starts."""
    preflight_classification(args, load_cfg(args), cifar_template_from_cfg, build_cifar_datasets)


def main(args):
    cfg = load_cfg(args)
    setup_run(cfg, args)
    datasets = build_cifar_datasets(cfg, with_train=not args.eval_only)
    if args.eval_only:
        model = build_cifar_classifier(cfg)
        load_classifier_weights(model, cfg.MODEL.WEIGHTS)
        results = evaluate(cfg, model, datasets["val"])
    else:
        results = train(
            cfg,
            resume=args.resume,
            datasets=datasets,
            build_model=build_cifar_classifier,
            metadata=cifar_checkpoint_metadata(cfg),
        )
    if comm.is_main_process():
        logging.getLogger("pretrain").info(
            "%s test set: top-1 error %.2f%%, top-5 error %.2f%%",
            cfg.DATA.DATASET,
            results["top1_err"],
            results["top5_err"],
        )
        atomic_write_json(
            os.path.join(cfg.OUTPUT_DIR, "final_metrics.json"), {**results, "dataset": cfg.DATA.DATASET}
        )
    return results


if __name__ == "__main__":
    args = add_slurm_arguments(add_overwrite_argument(default_argument_parser(epilog=__doc__))).parse_args()
    run_tool(main, args, preflight=lambda: preflight(args))
