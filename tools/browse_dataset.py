#!/usr/bin/env python
"""Look at a dataset as the model sees it: ground truth, augmented training inputs, or stage 1's
proposals with each image's recall and its missed objects.

  python tools/browse_dataset.py --config-file CFG --what gt --output browse/
  python tools/browse_dataset.py --config-file CFG --what augmented --output browse/
  python tools/browse_dataset.py --config-file CFG --what proposals --proposals out/rpn_x50 \
      --dataset-name coco_2014_minival --worst-first --output browse/

The config is a YAML or a LazyConfig file (overrides: KEY VALUE, or key=value). The images are
the first --num-images of --dataset-name (default: the config's first training dataset), any
registered dataset or one given with --dataset NAME JSON IMAGE_ROOT. "gt" draws the annotations
with class names; "augmented" draws what the training mapper (detectron2's DatasetMapper with the
config's INPUT.* augmentations, seeded by SEED; a LazyConfig's dataloader.train.mapper, seeded
by dataloader.train.seed) gives the model; "proposals" draws the top --top-k proposals of stage
1's OUTPUT_DIR and outlines each object by the IoU of the proposal assigned to it (green >= 0.7,
orange >= 0.5, red dashed: missed), with the image's recall at IoU 0.5 and 0.7; the recall pooled
over every image of the dataset is printed. Writes <output>/<image>.png, contact_sheet.png and browse.json.
"""

from __future__ import annotations

import argparse
import sys

import resnext_det  # noqa: F401  (prepares detectron2; must come first)
from resnext_det.analysis.browse import VIEWS, browse_dataset
from resnext_det.data.coco import check_datasets
from resnext_det.data.demo_dataset import prepare_demo_splits, register_named_demo_splits
from resnext_det.engine.cli import add_dataset_argument, exit_on_user_error, register_datasets_from_args
from resnext_det.engine.run_config import read_run_config
from resnext_det.errors import ConfigError
from resnext_det.proposals import stage1_proposals


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="the model's config")
    parser.add_argument("--what", choices=VIEWS, default="gt", help="what to draw on the images")
    parser.add_argument("--proposals", default="", help="stage 1's OUTPUT_DIR (for --what proposals)")
    parser.add_argument("--dataset-name", default="", help="the registered dataset to browse")
    parser.add_argument("--num-images", type=int, default=12, help="how many images to draw")
    parser.add_argument("--top-k", type=int, default=100, help="proposals per image, best first")
    parser.add_argument("--worst-first", action="store_true", help="proposals: lowest-recall images first")
    parser.add_argument("--output", default="browse", help="folder for the pictures and browse.json")
    add_dataset_argument(parser)
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ... (key=value for a .py config)"
    )
    return parser.parse_args(argv)


def check_arguments(args) -> None:
    if args.what == "proposals" and not args.proposals:
        raise ConfigError("--what proposals needs --proposals (stage 1's OUTPUT_DIR)")
    if args.proposals and args.what != "proposals":
        raise ConfigError(f"--proposals is only read with --what proposals (not --what {args.what})")
    for flag, value in (("--num-images", args.num_images), ("--top-k", args.top_k)):
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")


def browse_run(args):
    """The config (YAML or LazyConfig) and the browsed dataset, which alone is generated (if it is
    a demo split) and checked."""
    register_datasets_from_args(args)
    register_named_demo_splits([args.dataset_name])
    run = read_run_config(args, test_only=True)  # neither its optimizer nor its schedule is read
    name = args.dataset_name or next(iter(run.train_sets), "")
    if not name:
        raise ConfigError(
            f"{args.config_file} names no training dataset: name the dataset with --dataset-name"
        )
    prepare_demo_splits([name])
    check_datasets([name])
    return run, name


def main(argv=None) -> int:
    args = parse_args(argv)
    with exit_on_user_error():
        check_arguments(args)
        run, name = browse_run(args)
        proposals = stage1_proposals(args.proposals, name) if args.what == "proposals" else None
        result = browse_dataset(
            name,
            args.what,
            args.output,
            args.num_images,
            proposals,
            args.top_k,
            args.worst_first,
            training_mapper=run.training_mapper() if args.what == "augmented" else None,
            seed=run.seed.value,
            input_format=run.input_format,
        )
    summary = result.summary
    if args.what == "proposals":
        print(
            f"{name}: top {summary['top_k']} proposals find {summary['recall@0.5']:.3f} of the "
            f"{summary['objects']} objects at IoU 0.5, {summary['recall@0.7']:.3f} at 0.7 "
            f"({summary['images']} images)"
            if summary["objects"]
            else f"{name}: no objects to find"
        )
    print(
        f"drew {len(result.pictures)} images ({args.what}) into {args.output}; "
        f"contact sheet {result.contact_sheet}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
