"""CIFAR-10 / CIFAR-100 in their standard python-pickle batches, checked, with appendix A's
augmentation.

The files are the ones the CIFAR site distributes (``cifar-10-batches-py/``: ``data_batch_1`` ..
``data_batch_5``, ``test_batch``, ``batches.meta``; ``cifar-100-python/``: ``train``, ``test``,
``meta``): each a pickled dict with ``b"data"``, a uint8 array of N rows of 3072 values (1024 red,
1024 green, 1024 blue, row-major 32x32), and ``b"labels"`` (CIFAR-10) or ``b"fine_labels"``
(CIFAR-100). They are unpickled with an unpickler that rebuilds only numpy arrays (a pickle can
name any callable to run while loading), then every key, shape and label is checked, and an
error names the file and what was expected.

Augmentation, as in fb.resnet.torch (whose CIFAR recipe the paper follows): normalise with the
training set's per-channel mean and std, take a random 32x32 crop of the image zero-padded to
40x40, flip horizontally at random; nothing else. Evaluation uses the image as it is.
"""

from __future__ import annotations

from pathlib import Path

from resnext_det.errors import DatasetLayoutError
from resnext_det.safe_pickle import NUMPY_GLOBALS, PROTOCOL2_BYTES, RestrictedUnpickler

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import transforms as T

__all__ = [
    "CIFAR_FILES",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "CifarDataset",
    "build_cifar_datasets",
    "cifar_layout_report",
    "read_cifar_split",
]

#: dataset -> (training files, test files, label key, number of classes)
CIFAR_FILES = {
    "cifar10": ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels", 10),
    "cifar100": (["train"], ["test"], b"fine_labels", 100),
}
#: fb.resnet.torch's CIFAR-10 mean and std, in 0-1 units (RGB)
CIFAR_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)
#: numpy, and the string codec that Python 3 pickles bytes with under protocol 2 (the site's files,
#: written by Python 2, hold plain strings; files re-pickled by Python 3 call _codecs.encode)
_CIFAR_GLOBALS = NUMPY_GLOBALS | PROTOCOL2_BYTES


def _read_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 32, 32, 3), labels int64 (N,)) of one batch file."""
    if not path.is_file():
        raise DatasetLayoutError(f"CIFAR batch {path} does not exist")
    try:
        with open(path, "rb") as f:
            content = RestrictedUnpickler(
                f, _CIFAR_GLOBALS, "a CIFAR batch holds only arrays", encoding="bytes"
            ).load()
    except Exception as e:
        raise DatasetLayoutError(
            f"{path} is not a readable CIFAR python batch ({type(e).__name__}: {e})"
        ) from None
    if not isinstance(content, dict) or b"data" not in content or label_key not in content:
        keys = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise DatasetLayoutError(f"{path}: expected a dict with b'data' and {label_key!r}, found {keys}")
    data, labels = content[b"data"], np.asarray(content[label_key])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetLayoutError(
            f"{path}: b'data' must be uint8 of shape (N, 3072) (32x32 RGB), found {found}"
        )
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise DatasetLayoutError(
            f"{path}: {label_key!r} must hold one integer per image ({len(data)}), "
            f"found {labels.dtype} {labels.shape}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetLayoutError(
            f"{path}: labels must be 0..{num_classes - 1} (MODEL.NUM_CLASSES {num_classes}), "
            f"found {int(labels.min())}..{int(labels.max())}"
        )
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)


def read_cifar_split(
    root: str | Path, dataset: str, split: str, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels of ``split`` ("train" or "test") of ``dataset`` under ``root``."""
    if dataset not in CIFAR_FILES:
        raise DatasetLayoutError(f"DATA.DATASET must be one of {sorted(CIFAR_FILES)}, got {dataset!r}")
    train_files, test_files, label_key, classes = CIFAR_FILES[dataset]
    if num_classes != classes:
        raise DatasetLayoutError(f"{dataset} has {classes} classes, but MODEL.NUM_CLASSES is {num_classes}")
    root = Path(root)
    files = train_files if split == "train" else test_files
    missing = [name for name in files if not (root / name).is_file()]
    if missing:
        raise DatasetLayoutError(
            f"{root} is not a {dataset} python folder: {', '.join(missing)} missing; expected "
            f"{', '.join(train_files + test_files)} (as in the CIFAR site's python version)"
        )
    parts = [_read_batch(root / name, label_key, classes) for name in files]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def cifar_layout_report(root: str | Path, dataset: str) -> tuple[str, list[str]]:
    """(a summary line, every problem found) for a CIFAR python folder: both splits read and
    checked as training reads them (50,000 training and 10,000 test images)."""
    problems, counts = [], {}
    classes = CIFAR_FILES[dataset][3] if dataset in CIFAR_FILES else 0
    for split, expected in (("train", 50000), ("test", 10000)):
        try:
            counts[split] = len(read_cifar_split(root, dataset, split, classes)[1])
        except DatasetLayoutError as problem:
            problems.append(str(problem))
            continue
        if counts[split] != expected:
            problems.append(f"{root}: {split} has {counts[split]:,} images, {dataset}'s has {expected:,}")
    return ", ".join(f"{s} {n:,} images" for s, n in counts.items()) + f", {classes} classes", problems


class CifarDataset(Dataset):
    """(image tensor, label) pairs from uint8 HWC arrays."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = torch.from_numpy(np.ascontiguousarray(self.images[index])).permute(2, 0, 1).float() / 255
        return self.transform(image), int(self.labels[index])


def build_cifar_transforms(cfg) -> tuple[T.Compose, T.Compose]:
    """(train, eval) transforms on 0-1 float tensors."""
    normalize = T.Normalize(cfg.INPUT.MEAN, cfg.INPUT.STD)
    train = [normalize, T.RandomCrop(cfg.INPUT.CROP_SIZE, padding=cfg.INPUT.PAD, fill=0)]
    if cfg.INPUT.HFLIP:
        train.append(T.RandomHorizontalFlip())
    return T.Compose(train), T.Compose([normalize])


def build_cifar_datasets(cfg, with_train: bool = True) -> dict[str, CifarDataset]:
    """{"train"?, "val"}: the checked files of ``DATA.ROOT``; "val" is the test split."""
    train_transform, eval_transform = build_cifar_transforms(cfg)
    args = (cfg.DATA.ROOT, cfg.DATA.DATASET)
    datasets = {"val": CifarDataset(*read_cifar_split(*args, "test", cfg.MODEL.NUM_CLASSES), eval_transform)}
    if with_train:
        datasets["train"] = CifarDataset(
            *read_cifar_split(*args, "train", cfg.MODEL.NUM_CLASSES), train_transform
        )
    return datasets
