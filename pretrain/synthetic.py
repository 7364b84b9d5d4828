"""A tiny generated ImageNet-layout dataset, to exercise the real loading path without ImageNet.

``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` with a few visually separable classes (a
filled disc, a square outline, horizontal stripes, vertical stripes, a cross), each drawn at a
random position, size and colour on a noisy background, from a fixed seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["SYNTHETIC_CLASSES", "generate_image_folder"]

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


def generate_image_folder(
    root: str | Path, per_class: dict[str, int] | None = None, size: int = 40, seed: int = 0
) -> Path:
    """Write the dataset under ``root`` (skipped if already complete); return ``root``."""
    root = Path(root)
    per_class = per_class or {"train": 60, "val": 20}
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for kind, wnid in enumerate(SYNTHETIC_CLASSES):
            folder = root / split / wnid
            if folder.is_dir() and len(list(folder.glob("*.JPEG"))) == count:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                _draw(kind, rng, size).save(folder / f"{wnid}_{i:04d}.JPEG", quality=95)
    return root
