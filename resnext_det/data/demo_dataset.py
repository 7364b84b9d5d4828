"""A small generated COCO-format detection dataset, so everything runs without COCO.

Drawn from a fixed seed: three shape categories (square, disc, triangle) of varied size, colour
and position, allowed to overlap a little, on a textured background (smoothed colour noise plus
stripes). A train and a held-out val split share nothing but the generator. Image ids are
integers (pycocotools' evaluation needs them); boxes are XYWH in pixels, as in COCO.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "DEMO_CATEGORIES",
    "DEMO_SPLITS",
    "DEMO_CLASSIFICATION_CLASSES",
    "default_demo_root",
    "draw_background",
    "draw_shape",
    "demo_dataset_files",
    "generate_demo_dataset",
    "prepare_demo_splits",
    "prepare_demo_datasets",
    "register_demo_datasets",
]

DEMO_CATEGORIES = [
    {"id": 1, "name": "square", "supercategory": "shape"},
    {"id": 2, "name": "disc", "supercategory": "shape"},
    {"id": 3, "name": "triangle", "supercategory": "shape"},
]
#: Registered dataset name -> (split, number of images, seed).
DEMO_SPLITS = {"resnext_demo_train": ("train", 160, 1), "resnext_demo_val": ("val", 40, 2)}
_FORMAT_VERSION = 1
#: The pretraining stand-in's class folders: the three shapes and "no object" (sorted names).
DEMO_CLASSIFICATION_CLASSES = ("background", "disc", "square", "triangle")


def default_demo_root() -> Path:
    """``$DETECTRON2_DATASETS/resnext_demo`` (detectron2's convention), else ``datasets/resnext_demo``."""
    return Path(os.environ.get("DETECTRON2_DATASETS", "datasets")) / "resnext_demo"


def draw_background(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """Smoothed colour noise with stripes: texture for the detector to learn to ignore."""
    coarse = rng.uniform(40, 215, size=(height // 16 + 1, width // 16 + 1, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32)
    period, phase = rng.uniform(6, 20), rng.uniform(0, 2 * np.pi)
    stripes = 18 * np.sin(np.arange(width) * 2 * np.pi / period + phase)[None, :, None]
    noise = rng.normal(0, 10, size=(height, width, 3))
    return Image.fromarray(np.clip(smooth + stripes + noise, 0, 255).astype(np.uint8))


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return inter / (aw * ah + bw * bh - inter)


def draw_shape(draw: ImageDraw.ImageDraw, rng: np.random.Generator, category: int, corners) -> None:
    """A filled shape of a random colour with a contrasting outline inside ``corners`` (x0 y0 x1 y1)."""
    colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
    outline = tuple(255 - c for c in colour)
    x0, y0, x1, y1 = corners
    if category == 1:
        draw.rectangle(corners, fill=colour, outline=outline, width=2)
    elif category == 2:
        draw.ellipse(corners, fill=colour, outline=outline, width=2)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x0, y1), (x1, y1)], fill=colour, outline=outline)


def _draw_image(rng: np.random.Generator, height: int, width: int):
    image = draw_background(rng, height, width)
    draw = ImageDraw.Draw(image)
    objects = []
    for _ in range(int(rng.integers(1, 5))):
        for _attempt in range(20):
            size = float(rng.uniform(14, min(height, width) * 0.55))
            x, y = rng.uniform(0, width - size), rng.uniform(0, height - size)
            box = [x, y, size, size]
            if all(_iou(box, other["bbox"]) < 0.3 for other in objects):
                break
        else:
            continue
        category = int(rng.integers(1, 4))
        draw_shape(draw, rng, category, [x, y, x + size, y + size])
        objects.append({"category_id": category, "bbox": [round(v, 2) for v in box]})
    return image, objects


def _write_split(root: Path, split: str, num_images: int, seed: int, size: tuple[int, int]) -> Path:
    rng = np.random.default_rng(seed)
    height, width = size
    image_dir = root / split
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        image, objects = _draw_image(rng, height, width)
        file_name = f"{image_id:05d}.png"
        image.save(image_dir / file_name)
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for obj in objects:
            w, h = obj["bbox"][2:]
            annotations.append(
                {
                    **obj,
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "area": round(w * h, 2),
                    "iscrowd": 0,
                }
            )
    coco = {
        "info": {
            "description": f"resnext_det generated demo, split {split}, seed {seed}",
            "version": _FORMAT_VERSION,
        },
        "images": images,
        "annotations": annotations,
        "categories": DEMO_CATEGORIES,
    }
    json_path = root / "annotations" / f"{split}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(coco))
    tmp.replace(json_path)  # written last and atomically: its presence means the split is complete
    return json_path


def demo_dataset_files(root: str | os.PathLike | None = None) -> dict[str, tuple[str, str]]:
    """{name: (json file, image folder)} of the demo splits under ``root``; writes nothing."""
    root = Path(root) if root is not None else default_demo_root()
    return {
        name: (str(root / "annotations" / f"{split}.json"), str(root / split))
        for name, (split, _, _) in DEMO_SPLITS.items()
    }


def generate_demo_dataset(root: str | os.PathLike | None = None, image_size=(128, 160)) -> dict:
    """Write the demo splits under ``root`` unless already there; return {name: (json, images)}."""
    root = Path(root) if root is not None else default_demo_root()
    paths = {}
    for name, (split, num_images, seed) in DEMO_SPLITS.items():
        json_path = root / "annotations" / f"{split}.json"
        expected = f"resnext_det generated demo, split {split}, seed {seed}"
        current = json.loads(json_path.read_text())["info"] if json_path.is_file() else {}
        if (
            current.get("description") != expected
            or current.get("version") != _FORMAT_VERSION
            or (len(list((root / split).glob("*.png"))) != num_images)
        ):
            _write_split(root, split, num_images, seed, image_size)
        paths[name] = (str(json_path), str(root / split))
    return paths


def register_demo_datasets(root: str | os.PathLike | None = None) -> list[str]:
    """Register the demo splits in detectron2's catalogs, writing nothing: a split's images are
    generated when its loader first runs, or by ``prepare_demo_datasets`` (the tools' preflight),
    so that reading a config has no side effects."""
    from detectron2.data import DatasetCatalog

    from .coco import register_checked_coco

    root = Path(root) if root is not None else default_demo_root()
    classes = [c["name"] for c in DEMO_CATEGORIES]
    for name, (json_file, image_root) in demo_dataset_files(root).items():
        if name not in DatasetCatalog.list():
            register_checked_coco(
                name,
                json_file,
                image_root,
                prepare=lambda: generate_demo_dataset(root),
                thing_classes=classes,
            )
    return list(DEMO_SPLITS)


def register_named_demo_splits(names) -> None:
    """``register_demo_datasets`` when ``names`` (a config's datasets) name a demo split."""
    if any(name in DEMO_SPLITS for name in names):
        register_demo_datasets()


def prepare_demo_datasets(cfg) -> None:
    """The one explicit step that writes the demo data: when ``cfg`` names a demo split, generate
    the splits (if not already there) where its catalog entry points."""
    prepare_demo_splits((*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST))


def prepare_demo_splits(names) -> None:
    """``prepare_demo_datasets`` for a list of dataset names (a LazyConfig's loaders name them)."""
    from detectron2.data import MetadataCatalog

    named = [n for n in names if n in DEMO_SPLITS]
    if named:
        generate_demo_dataset(Path(MetadataCatalog.get(named[0]).json_file).parents[1])
