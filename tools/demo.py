#!/usr/bin/env python
"""README command 1: train the tiny C4 Faster R-CNN on the generated demo data, then evaluate.

Generates the demo dataset (once), trains ``configs/demo/faster_rcnn_tiny_C4.yaml`` on its train
split printing the losses, and reports COCO AP on the held-out val split. Any config key can be
overridden at the end of the command line, e.g. ``SOLVER.MAX_ITER 50``.
"""

from __future__ import annotations

import resnext_det  # noqa: F401  (registers the backbone and ROI head; must come first)
from resnext_det.data import generate_demo_dataset, register_demo_datasets
from resnext_det.engine import ResNeXtTrainer, launch, setup_cfg

from detectron2.engine import default_argument_parser

DEFAULT_CONFIG = resnext_det.get_config_file("demo/faster_rcnn_tiny_C4.yaml")


def main(args):
    register_demo_datasets()  # in every worker: detectron2's catalogs are per process
    cfg = setup_cfg(args.config_file or DEFAULT_CONFIG, args.opts, args)
    trainer = ResNeXtTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    return trainer


if __name__ == "__main__":
    args = default_argument_parser(epilog=__doc__).parse_args()
    generate_demo_dataset()  # once, before worker processes start
    launch(main, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url, args=(args,))
