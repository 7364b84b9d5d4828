#!/usr/bin/env python
"""Check the datasets a config reads, in minutes, before a run of days: one line per problem.

  python tools/check_datasets.py --config-file configs/COCO-Detection/paper/fast_rcnn_X50_32x4d_C4.yaml
  python tools/check_datasets.py --config-file configs/ImageNet/X50_32x4d.yaml DATA.ROOT /data/imagenet
  python tools/check_datasets.py --config-file configs/CIFAR/ResNeXt29_8x64d_cifar10.yaml
  python tools/check_datasets.py --config-file my.yaml --dataset mine mine.json images/  # registered first

A detection config (YAML or LazyConfig) names its datasets in DATASETS.TRAIN / DATASETS.TEST (its
loaders); each is checked as the training tools' preflight checks it (registered; its json and
image folder exist; the json is COCO's detection format; every image it names is on disk) and
its image count against the known split sizes (COCO 2014: 82,783 train, 35,504 valminusminival,
5,000 minival). A pretraining config's DATA.ROOT is checked as ImageNet's folder layout (class
folders in both splits, 1000 classes, 1,281,167 / 50,000 images; a flat val/ is named), a CIFAR
config's as the python batches (50,000 / 10,000 images). Every problem is printed, each on one
line, then the exit status is 1; a layout without problems prints one line per dataset and 0.
docs/datasets.md has the folder trees and where each file comes from.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python tools/check_datasets.py` from a checkout finds resnext_det

import resnext_det  # noqa: E402, F401  (prepares detectron2; must come first)
from pretrain.cifar import get_cifar_cfg  # noqa: E402
from pretrain.cifar_data import cifar_layout_report  # noqa: E402
from pretrain.config import get_pretrain_cfg  # noqa: E402
from pretrain.data import imagenet_layout_report  # noqa: E402
from resnext_det.data.coco import coco_dataset_report  # noqa: E402
from resnext_det.engine import setup_cfg  # noqa: E402
from resnext_det.engine.cli import add_dataset_argument, exit_on_user_error, register_datasets_from_args  # noqa: E402
from resnext_det.engine.defaults import merge_config  # noqa: E402
from resnext_det.engine.lazy_config import is_lazy_config, load_lazy_config, loader_dataset_names  # noqa: E402

from fvcore.common.config import CfgNode  # noqa: E402  (detectron2's would need VERSION)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, help="a detection, ImageNet or CIFAR config")
    add_dataset_argument(parser)
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides (key=value for a LazyConfig)"
    )
    return parser.parse_args(argv)


def config_kind(path: str) -> str:
    """ "detection", "imagenet" or "cifar": what the config trains, read from its keys."""
    if is_lazy_config(path):
        return "detection"
    raw = merge_config(CfgNode(new_allowed=True), path)  # any keys; a missing file is named
    if "DATA" in raw:
        return "cifar" if str(raw.DATA.get("DATASET", "")).startswith("cifar") else "imagenet"
    return "detection"


def reports(args) -> list[tuple[str, str | None, list[str]]]:
    """(what, its summary when usable, its problems) for every dataset the config reads."""
    kind = config_kind(args.config_file)
    if kind == "detection":
        if is_lazy_config(args.config_file):
            cfg = load_lazy_config(args.config_file, args.opts)
            names = [*loader_dataset_names(cfg, "train"), *loader_dataset_names(cfg, "test")]
        else:
            cfg = setup_cfg(args.config_file, args.opts)
            names = [*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST]
        return [(name, *coco_dataset_report(name)) for name in dict.fromkeys(names)]
    cfg = get_cifar_cfg() if kind == "cifar" else get_pretrain_cfg()
    merge_config(cfg, args.config_file, args.opts)
    if kind == "cifar":
        return [
            (f"{cfg.DATA.DATASET} in {cfg.DATA.ROOT}", *cifar_layout_report(cfg.DATA.ROOT, cfg.DATA.DATASET))
        ]
    report = imagenet_layout_report(
        cfg.DATA.ROOT, cfg.DATA.TRAIN_SPLIT, cfg.DATA.VAL_SPLIT, cfg.MODEL.NUM_CLASSES
    )
    return [(f"ImageNet in {cfg.DATA.ROOT}", *report)]


def main(argv=None) -> int:
    args = parse_args(argv)
    with exit_on_user_error():
        register_datasets_from_args(args)
        checked = reports(args)
    problems = 0
    for what, summary, found in checked:
        for problem in found:
            print(f"problem: {what}: {problem}")
        problems += len(found)
        if not found:
            print(f"ok: {what}: {summary}")
    if problems:
        print(f"{problems} problem{'s' if problems > 1 else ''}; docs/datasets.md has the expected layouts")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
