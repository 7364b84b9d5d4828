"""ImageNet in its standard folder layout: checked at start, decoded in loader workers.

``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` (val already sorted into class folders, as
most ImageNet preparation scripts do). Class index = position of the wnid in sorted order, the
convention of torchvision's ImageFolder and of published checkpoints.
"""

from __future__ import annotations

from pathlib import Path

from resnext_det.errors import ConfigError, DatasetLayoutError, ImageFileError
from resnext_det.seeding import mix_seed

import torch
from detectron2.utils import comm
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .transforms import build_eval_transform, build_train_transform

__all__ = [
    "DatasetLayoutError",
    "IMAGENET_IMAGES",
    "ImageFolderDataset",
    "build_loader",
    "imagenet_layout_report",
    "scan_split",
]

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp")


def scan_split(root: str | Path, split: str, num_classes: int | None = None) -> tuple[list, list]:
    """Return (classes, [(path, class_index)]) for ``root/split``, or explain what is wrong."""
    split_dir = Path(root) / split
    expected = f"{split_dir}/<class>/<image>.JPEG with {num_classes or 'one or more'} class folders"
    if not split_dir.is_dir():
        raise DatasetLayoutError(f"{split_dir} does not exist; expected {expected}.")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise DatasetLayoutError(f"{split_dir} has no class folders; expected {expected}.")
    if num_classes is not None and len(classes) != num_classes:
        raise DatasetLayoutError(
            f"{split_dir} has {len(classes)} class folders, expected {num_classes} "
            f"(MODEL.NUM_CLASSES). First found: {classes[:5]}."
        )
    samples, empty = [], []
    for index, name in enumerate(classes):
        files = sorted(
            p for p in (split_dir / name).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            empty.append(name)
        samples.extend((str(p), index) for p in files)
    if empty:
        raise DatasetLayoutError(
            f"{len(empty)} class folder(s) in {split_dir} hold no images ({', '.join(IMAGE_EXTENSIONS)}): "
            f"{empty[:5]}"
        )
    return classes, samples


class ImageFolderDataset(Dataset):
    """(image tensor, class index) pairs; a file that cannot be decoded is named in the error.

    ``classes`` are the folder names in index order; ``logit_indices``, when set, are the model's
    output index of each class (``TEST.CLASS_SUBSET``)."""

    def __init__(self, samples: list[tuple[str, int]], transform, classes=(), logit_indices=None):
        self.samples = samples
        self.transform = transform
        self.classes = list(classes)
        self.logit_indices = logit_indices

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
        except (OSError, UnidentifiedImageError) as e:
            raise ImageFileError(
                f"cannot read image {path} ({type(e).__name__}: {e}): the file is missing, truncated "
                "or not an image; replace it or remove it from the dataset folder"
            ) from None
        return self.transform(image), label


def _check_same_classes(train_classes, val_classes, root, cfg) -> None:
    if train_classes != val_classes:
        only_train = sorted(set(train_classes) - set(val_classes))[:5]
        only_val = sorted(set(val_classes) - set(train_classes))[:5]
        raise DatasetLayoutError(
            f"{root}: {cfg.DATA.TRAIN_SPLIT}/ and {cfg.DATA.VAL_SPLIT}/ must have the same class "
            f"folders; only in train: {only_train}, only in val: {only_val}"
        )


#: images per split of ImageNet-1K (ILSVRC 2012), for tools/check_datasets.py
IMAGENET_IMAGES = {"train": 1281167, "val": 50000}


def imagenet_layout_report(root: str | Path, train_split: str, val_split: str, num_classes: int):
    """(a summary line, every problem found) for an ImageNet-layout ``root``: ``scan_split``'s
    checks of both splits without stopping at the first, the same classes in both, a flat split
    folder (ILSVRC2012_img_val.tar unpacked as it is) named as such, and with 1000 classes the
    image counts of ImageNet-1K."""
    problems, scanned = [], {}
    for split in dict.fromkeys((train_split, val_split)):
        split_dir = Path(root) / split
        loose = split_dir.is_dir() and any(
            p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in split_dir.iterdir()
        )
        if loose:
            problems.append(
                f"{split_dir} holds images directly, not in class folders: sort them into <wnid>/ "
                "folders (docs/datasets.md: torchvision's ImageNet does it from the devkit)"
            )
            continue
        try:
            scanned[split] = scan_split(root, split, num_classes)
        except DatasetLayoutError as problem:
            problems.append(str(problem))
            continue
        expected = IMAGENET_IMAGES.get(split) if num_classes == 1000 else None
        found = len(scanned[split][1])
        if expected is not None and found != expected:
            problems.append(f"{split_dir} has {found:,} images, ImageNet-1K's {split} has {expected:,}")
    if len(scanned) == 2 and scanned[train_split][0] != scanned[val_split][0]:
        problems.append(f"{root}: {train_split}/ and {val_split}/ have different class folders")
    summary = ", ".join(
        f"{s} {len(samples):,} images in {len(c)} classes" for s, (c, samples) in scanned.items()
    )
    return summary, problems


def read_class_subset(cfg, val_classes: list[str]) -> list[int]:
    """The model's output index of each val class, from ``TEST.CLASS_SUBSET``'s class list."""
    path = Path(cfg.TEST.CLASS_SUBSET)
    if not path.is_file():
        raise DatasetLayoutError(
            f"TEST.CLASS_SUBSET {path} does not exist; expected the model's classes, one per line in "
            "index order (its training run's OUTPUT_DIR/classes.txt)"
        )
    model_classes = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(model_classes) != cfg.MODEL.NUM_CLASSES:
        raise DatasetLayoutError(
            f"TEST.CLASS_SUBSET {path} names {len(model_classes)} classes, MODEL.NUM_CLASSES is "
            f"{cfg.MODEL.NUM_CLASSES}"
        )
    index = {name: i for i, name in enumerate(model_classes)}
    unknown = [c for c in val_classes if c not in index]
    if unknown:
        raise DatasetLayoutError(
            f"{len(unknown)} class folder(s) of {cfg.DATA.ROOT}/{cfg.DATA.VAL_SPLIT} are not among the "
            f"model's classes in TEST.CLASS_SUBSET {path}: {unknown[:5]}"
        )
    return [index[c] for c in val_classes]


def build_datasets(cfg, with_train: bool = True) -> dict[str, ImageFolderDataset]:
    """Check the layout of ``DATA.ROOT`` and return {"train"?, "val"} datasets."""
    root, num_classes = cfg.DATA.ROOT, cfg.MODEL.NUM_CLASSES
    subset = bool(cfg.TEST.CLASS_SUBSET)
    if subset and with_train:
        raise ConfigError(
            "TEST.CLASS_SUBSET evaluates a trained model on some of its classes: use it with --eval-only"
        )
    val_classes, val_samples = scan_split(root, cfg.DATA.VAL_SPLIT, None if subset else num_classes)
    logit_indices = read_class_subset(cfg, val_classes) if subset else None
    datasets = {"val": ImageFolderDataset(val_samples, build_eval_transform(cfg), val_classes, logit_indices)}
    if with_train:
        train_classes, train_samples = scan_split(root, cfg.DATA.TRAIN_SPLIT, num_classes)
        _check_same_classes(train_classes, val_classes, root, cfg)
        datasets["train"] = ImageFolderDataset(train_samples, build_train_transform(cfg), train_classes)
    return datasets


def per_process_batch(total: int, key: str) -> int:
    world = comm.get_world_size()
    if total % world:
        raise ConfigError(f"{key}={total} must be divisible by the number of processes ({world})")
    return total // world


def build_loader(cfg, dataset, *, train: bool, epoch: int = 0) -> DataLoader:
    """One epoch's loader. Training: shuffled by (SEED, epoch) and sharded over processes, so
    an epoch's order is the same after a resume and for any number of processes; each step's
    global batch is the same images whatever the world size. Eval: every image exactly once."""
    world, rank = comm.get_world_size(), comm.get_rank()
    if train:
        sampler = DistributedSampler(dataset, world, rank, shuffle=True, seed=cfg.SEED, drop_last=True)
        sampler.set_epoch(epoch)
        batch = per_process_batch(cfg.SOLVER.IMS_PER_BATCH, "SOLVER.IMS_PER_BATCH")
    else:
        indices = list(range(rank, len(dataset), world))
        sampler = indices
        batch = max(1, cfg.TEST.IMS_PER_BATCH // world)
    # (SEED, epoch, rank) as hooks.seed_epoch, with a fourth part: a stream of its own
    generator = torch.Generator().manual_seed(mix_seed(cfg.SEED, epoch, rank, 1))
    return DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        num_workers=cfg.DATA.NUM_WORKERS,
        drop_last=train,
        pin_memory=cfg.MODEL.DEVICE.startswith("cuda"),
        generator=generator,
        persistent_workers=False,
    )
