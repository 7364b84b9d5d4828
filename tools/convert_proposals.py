#!/usr/bin/env python
"""Convert stage-1 proposals between detectron2's pickle and the store that stage 2 reads.

  # detectron2's pickle (other detectron2 code, an earlier tools/train_rpn.py) -> a store beside it
  python tools/convert_proposals.py out/rpn/proposals_coco_2014_minival.pkl
  # a store (what tools/train_rpn.py writes) -> detectron2's pickle, for DATASETS.PROPOSAL_FILES_*
  python tools/convert_proposals.py out/rpn/proposals_coco_2014_minival --to-pickle

The dataset comes from the name (proposals_<dataset>.pkl / proposals_<dataset>/) or --dataset;
the output goes beside the input unless --output names it, and an existing output is replaced
only with --overwrite. The numbers are copied unchanged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import resnext_det  # noqa: F401  (prepares detectron2; must come first)
from resnext_det.engine.cli import exit_on_user_error
from resnext_det.errors import MissingFileError, ProposalFileError
from resnext_det.proposals.convert import dataset_of, pickle_to_store, store_to_pickle
from resnext_det.proposals.files import proposal_file_path
from resnext_det.proposals.store import proposal_store_path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", help="proposals_<dataset>.pkl, or a store folder proposals_<dataset>/")
    parser.add_argument("--to-pickle", action="store_true", help="convert a store into a pickle")
    parser.add_argument("--dataset", default="", help="the dataset, where the input's name does not say")
    parser.add_argument("--output", default="", help="where to write (default: beside the input)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return parser.parse_args(argv)


def convert(args) -> Path:
    source = Path(args.input)
    if not source.exists():
        raise MissingFileError(f"{source} does not exist")
    if source.is_dir() != args.to_pickle:
        raise ProposalFileError(
            f"{source} is a store (a folder): convert it with --to-pickle"
            if source.is_dir()
            else f"--to-pickle converts a store (a folder proposals_<dataset>/); {source} is a file"
        )
    dataset = args.dataset or dataset_of(source)
    if args.to_pickle:
        output = Path(args.output) if args.output else proposal_file_path(source.parent, dataset)
        return store_to_pickle(source, output, overwrite=args.overwrite)
    output = Path(args.output) if args.output else proposal_store_path(source.parent, dataset)
    return pickle_to_store(source, output, dataset, overwrite=args.overwrite)


def main(argv=None) -> int:
    args = parse_args(argv)
    with exit_on_user_error():
        written = convert(args)
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
