#!/usr/bin/env python
"""Stage 2 of the paper's detection schedule: Fast R-CNN on stage 1's precomputed proposals.

  python tools/train_fast_rcnn.py --config-file configs/COCO-Detection/fast_rcnn_X50_32x4d_C4.yaml \
      --num-gpus 8 --proposals out/rpn_x50 MODEL.WEIGHTS x50_d2.pth OUTPUT_DIR out/frcn_x50

--proposals names stage 1's OUTPUT_DIR: it must hold, for every dataset in DATASETS.TRAIN and
DATASETS.TEST, the memory-mapped store proposals_<dataset>/ covering every image, or training
does not start (detectron2's proposals_<dataset>.pkl converts into one: tools/convert_proposals.py).
The backbone starts from MODEL.WEIGHTS (ImageNet), not from the RPN: no feature sharing.

A LazyConfig file works the same way, with detectron2's key=value overrides:

  python tools/train_fast_rcnn.py --config-file configs/lazy/fast_rcnn_X50_32x4d_C4.py --num-gpus 8 \
      --proposals out/rpn_x50 train.init_checkpoint=x50_d2.pth train.output_dir=out/frcn_x50
"""

from __future__ import annotations

import resnext_det  # noqa: F401  (prepares detectron2; must come first)
from resnext_det.engine.cli import (
    add_dataset_argument,
    add_overwrite_argument,
    preflight,
    register_datasets_from_args,
    run_tool,
)
from resnext_det.engine.run_config import setup_run
from resnext_det.engine.slurm import add_slurm_arguments

from detectron2.engine import default_argument_parser


def parse_args():
    parser = add_slurm_arguments(
        add_overwrite_argument(add_dataset_argument(default_argument_parser(epilog=__doc__)))
    )
    parser.add_argument("--proposals", required=True, help="stage 1's output directory")
    return parser.parse_args()


def main(args):
    register_datasets_from_args(args)
    run = setup_run(args, proposals_dir=args.proposals)  # a YAML or a LazyConfig file alike
    return run.train(args.resume, args.eval_only)[1]


if __name__ == "__main__":
    args = parse_args()
    run_tool(main, args, preflight=lambda: preflight(args, args.proposals))
