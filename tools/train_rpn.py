#!/usr/bin/env python
"""Stage 1 of the paper's detection schedule: train the RPN alone, then write proposal files.

  python tools/train_rpn.py --config-file configs/COCO-Detection/rpn_X50_32x4d_C4.yaml \
      --num-gpus 8 MODEL.WEIGHTS x50_d2.pth OUTPUT_DIR out/rpn_x50

After training (or with --eval-only, for MODEL.WEIGHTS) it reports proposal recall (AR@100,
AR@1000) on DATASETS.TEST and writes the store OUTPUT_DIR/proposals_<dataset>/ for every dataset
in DATASETS.TRAIN (the RPN's top MODEL.RPN.POST_NMS_TOPK_TRAIN per image) and DATASETS.TEST (top
MODEL.RPN.POST_NMS_TOPK_TEST), for tools/train_fast_rcnn.py --proposals OUTPUT_DIR.

A LazyConfig file works the same way, with detectron2's key=value overrides (its RPN's own
post_nms_topk / pre_nms_topk decide what the proposal files keep):

  python tools/train_rpn.py --config-file configs/lazy/rpn_X50_32x4d_C4.py --num-gpus 8 \
      train.init_checkpoint=x50_d2.pth train.output_dir=out/rpn_x50
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
from resnext_det.engine.stages import write_proposal_recall

from detectron2.engine import default_argument_parser


def main(args):
    register_datasets_from_args(args)
    run = setup_run(args)  # a YAML or a LazyConfig file: the same steps
    model, results = run.train(args.resume, args.eval_only)
    write_proposal_recall(results, run.output_dir)
    run.dump_proposals(model)
    return results


if __name__ == "__main__":
    parser = add_overwrite_argument(add_dataset_argument(default_argument_parser(epilog=__doc__)))
    args = add_slurm_arguments(parser).parse_args()
    run_tool(main, args, preflight=lambda: preflight(args, stage1=True))
