"""Generated ImageNet-layout folders, so that pretraining's real loading path runs without ImageNet.

One writer (``write_image_folder``: ``root/<split>/<class>/<n>.<ext>``, each class folder drawn
from its own seed, a complete folder kept) and two datasets on it:

* ``generate_image_folder``: a few visually separable classes (a filled disc, a square outline,
  horizontal stripes, vertical stripes, a cross) on a noisy background, for the tests;
* ``generate_demo_classification``: the demo's stand-in for ImageNet, shape crops drawn like the
  detection demo's objects (``resnext_det.data.demo_dataset``), so that pretraining teaches the
  features its detector needs, as ImageNet does for COCO.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from resnext_det.data.demo_dataset import (
    DEMO_CLASSIFICATION_CLASSES,
    default_demo_root,
    draw_background,
    draw_shape,
)

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "DEMO_CLASSIFICATION_CLASSES",
    "SYNTHETIC_CLASSES",
    "generate_demo_classification",
    "generate_image_folder",
    "write_cifar_folder",
    "write_image_folder",
]

SYNTHETIC_CLASSES = ("n00000001", "n00000002", "n00000003", "n00000004", "n00000005")


def _draw(kind: int, rng: np.random.Generator, size: int) -> Image.Image:
    noise = rng.normal(128, 20, size=(size, size, 3)).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(noise)
    draw = ImageDraw.Draw(image)
    colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
    extent = rng.uniform(0.6, 0.9) * size
    x0, y0 = rng.uniform(0, size - extent, size=2)
    box = [x0, y0, x0 + extent, y0 + extent]
    width = max(2, size // 10)
    if kind == 0:
        draw.ellipse(box, fill=colour)
    elif kind == 1:
        draw.rectangle(box, outline=colour, width=width)
    elif kind in (2, 3):
        for k in range(0, int(extent), 2 * width):
            if kind == 2:
                draw.rectangle([x0, y0 + k, x0 + extent, y0 + k + width - 1], fill=colour)
            else:
                draw.rectangle([x0 + k, y0, x0 + k + width - 1, y0 + extent], fill=colour)
    else:
        cx, cy = x0 + extent / 2, y0 + extent / 2
        draw.rectangle([x0, cy - width, x0 + extent, cy + width], fill=colour)
        draw.rectangle([cx - width, y0, cx + width, y0 + extent], fill=colour)
    return image


def write_image_folder(
    root: str | os.PathLike,
    per_class: dict[str, int],
    classes: tuple[str, ...],
    draw: Callable[[np.random.Generator, int], Image.Image],
    seed: int,
    suffix: str = ".png",
) -> Path:
    """Write ``root/<split>/<class>/<n><suffix>``, ``per_class[split]`` images a class, each drawn
    by ``draw(rng, label)``. Each folder has its own generator, seeded by (seed, split, label), so
    regenerating one folder does not change the others; a complete folder is kept."""
    root = Path(root)
    for split_index, (split, count) in enumerate(per_class.items()):
        for label, name in enumerate(classes):
            folder = root / split / name
            if folder.is_dir() and len(list(folder.glob(f"*{suffix}"))) == count:
                continue
            rng = np.random.default_rng([seed, split_index, label])
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                target = folder / f"{name}_{i:05d}{suffix}"
                tmp = target.with_name(target.name + ".tmp")
                draw(rng, label).save(tmp, format="JPEG" if suffix == ".JPEG" else "PNG", quality=95)
                tmp.replace(target)
    return root


def generate_image_folder(
    root: str | Path, per_class: dict[str, int] | None = None, size: int = 40, seed: int = 0
) -> Path:
    """The tests' five-class folder under ``root`` (skipped if already complete); return ``root``."""
    return write_image_folder(
        root,
        per_class or {"train": 60, "val": 20},
        SYNTHETIC_CLASSES,
        lambda rng, label: _draw(label, rng, size),
        seed,
        suffix=".JPEG",
    )


def _draw_crop(rng: np.random.Generator, label: int, size: int) -> Image.Image:
    image = draw_background(rng, size, size)
    if label:  # 0 is background: texture only, which the detector must learn to reject
        extent = float(rng.uniform(0.35, 0.9) * size)
        x, y = rng.uniform(0, size - extent, size=2)
        category = {"square": 1, "disc": 2, "triangle": 3}[DEMO_CLASSIFICATION_CLASSES[label]]
        draw_shape(ImageDraw.Draw(image), rng, category, [x, y, x + extent, y + extent])
    return image


def generate_demo_classification(
    root: str | os.PathLike | None = None,
    per_class: dict[str, int] | None = None,
    size: int = 48,
    seed: int = 3,
) -> Path:
    """The demo's ImageNet-layout folder of shape crops (the three shapes and "background"),
    ``root/{train,val}/<class>/<n>.png``, by default beside the detection demo's data."""
    root = Path(root) if root is not None else default_demo_root().with_name("resnext_demo_classification")
    return write_image_folder(
        root, per_class or {"train": 400, "val": 100}, DEMO_CLASSIFICATION_CLASSES,
        lambda rng, label: _draw_crop(rng, label, size), seed,
    )  # fmt: skip


def _cifar_batch(images: np.ndarray, labels: list[int], label_key: bytes, name: str) -> dict:
    """One batch dict laid out as the CIFAR site's python version: rows of 1024 R, G, B values."""
    return {
        b"batch_label": name.encode(),
        label_key: labels,
        b"data": images.transpose(0, 3, 1, 2).reshape(len(images), 3072).copy(),
        b"filenames": [f"{name}_{i:05d}.png".encode() for i in range(len(images))],
    }


def write_cifar_folder(
    root: str | os.PathLike, dataset: str = "cifar10", per_class=(50, 10), seed: int = 0
) -> Path:
    """A CIFAR-format python folder (``data_batch_1..5``/``test_batch``/``batches.meta``, or
    ``train``/``test``/``meta`` for CIFAR-100) of 32x32 images: class k is ``_draw``'s shape
    ``k % 5``, and classes 5-9 have the red channel dimmed to 45% (a cyan cast over the grey
    background), so the ten are separable (CIFAR-100's other 90 classes have no images).
    Pickled with protocol 2, as the distributed files are."""
    import pickle

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    classes = 10 if dataset == "cifar10" else 100
    label_key = b"labels" if dataset == "cifar10" else b"fine_labels"

    def split(count: int, split_seed: int) -> tuple[np.ndarray, list[int]]:
        rng = np.random.default_rng([seed, split_seed])
        labels = [k for k in range(10) for _ in range(count)]
        images = np.stack([np.asarray(_draw(k % 5, rng, 32)) for k in labels])
        dimmed = np.asarray(labels) >= 5
        images[dimmed, :, :, 0] = (images[dimmed, :, :, 0] * 0.45).astype(np.uint8)
        order = rng.permutation(len(labels))
        return images[order], [labels[i] for i in order]

    train, test = split(per_class[0], 0), split(per_class[1], 1)
    if dataset == "cifar10":
        files = {f"data_batch_{i + 1}": (train[0][i::5], train[1][i::5]) for i in range(5)}
        files["test_batch"] = test
        meta = {"batches.meta": {b"label_names": [f"class_{k}".encode() for k in range(classes)]}}
    else:
        files = {"train": train, "test": test}
        meta = {"meta": {b"fine_label_names": [f"class_{k}".encode() for k in range(classes)]}}
    for name, (images, labels) in files.items():
        with open(root / name, "wb") as f:
            pickle.dump(_cifar_batch(images, list(labels), label_key, name), f, protocol=2)
    for name, content in meta.items():
        with open(root / name, "wb") as f:
            pickle.dump(content, f, protocol=2)
    return root
