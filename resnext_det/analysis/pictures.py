"""What every picture of the project shares: a dataset's class names, detectron2's
``Visualizer`` on an image enlarged until its labels are legible, contact sheets, and for the
plots matplotlib without a display (``pyplot``) and one colour-blind-safe palette (``OKABE_ITO``).

The detections drawn by ``tools/eval_coco.py --images`` and ``tools/predict.py``, and the views
of ``tools/browse_dataset.py``, all go through here, so they look alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

__all__ = [
    "IMAGE_SUFFIXES",
    "MIN_DRAWN_SIDE",
    "OKABE_ITO",
    "category_ids",
    "contact_sheet",
    "dataset_metadata",
    "draw_instances",
    "pyplot",
    "visualizer",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: Drawn images smaller than this (shorter side, pixels) are enlarged so that labels stay legible.
MIN_DRAWN_SIDE = 384
#: Okabe & Ito's colour-blind-safe palette, one colour per line or bar in this order (yellow,
#: faint on white, last)
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")


def pyplot():
    """matplotlib's pyplot on the Agg backend: every plot is written to a file, no display needed."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def dataset_metadata(dataset: str | None):
    """``MetadataCatalog.get(dataset)`` with its class names and category ids loaded (a COCO-json
    dataset sets them when first read); None without a dataset or for an unregistered name."""
    if not dataset or dataset not in DatasetCatalog.list():
        return None
    metadata = MetadataCatalog.get(dataset)
    if not hasattr(metadata, "thing_classes") or not hasattr(metadata, "thing_dataset_id_to_contiguous_id"):
        DatasetCatalog.get(dataset)
    return metadata


def category_ids(metadata) -> list[int] | None:
    """The dataset's category id of each class index (COCO json ids), or None if it has none."""
    to_contiguous = getattr(metadata, "thing_dataset_id_to_contiguous_id", None)
    return sorted(to_contiguous, key=to_contiguous.get) if to_contiguous else None


def visualizer(image_rgb: np.ndarray, metadata=None):
    """detectron2's ``Visualizer`` on ``image_rgb``, scaled so that its shorter side is at least
    ``MIN_DRAWN_SIDE`` pixels."""
    from detectron2.utils.visualizer import Visualizer  # imports cv2: only needed here

    scale = max(1.0, MIN_DRAWN_SIDE / min(image_rgb.shape[:2]))
    return Visualizer(image_rgb, metadata, scale=scale)


def draw_instances(image_bgr, instances, metadata=None) -> np.ndarray:
    """``instances`` (detections) drawn on the image, as RGB."""
    return visualizer(image_bgr[:, :, ::-1], metadata).draw_instance_predictions(instances).get_image()


def contact_sheet(
    pictures: list[Path], target: str | Path, columns: int = 4, tile: int = 420, legend=None
) -> Path:
    """``pictures`` side by side, each shrunk (never enlarged) to fit a ``tile`` x ``tile`` cell,
    ``columns`` to a row, on white; ``legend`` ((colour, meaning) pairs) as a band above them;
    written to ``target``."""
    if not pictures:
        raise ValueError("a contact sheet needs at least one picture")
    images = []
    for path in pictures:
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((tile, tile))
            images.append(image)
    columns = min(columns, len(images))
    rows = -(-len(images) // columns)
    width, height = max(i.width for i in images), max(i.height for i in images)
    band = _legend_band(legend, width * columns) if legend else None
    top = band.height if band is not None else 0
    sheet = Image.new("RGB", (width * columns, height * rows + top), "white")
    if band is not None:
        sheet.paste(band, (0, 0))
    for k, image in enumerate(images):
        x = (k % columns) * width + (width - image.width) // 2
        y = top + (k // columns) * height + (height - image.height) // 2
        sheet.paste(image, (x, y))
    sheet.save(target)
    return Path(target)


def _legend_band(legend, width: int) -> Image.Image:
    """A white band ``width`` pixels wide with one coloured line and its meaning per entry."""
    from matplotlib.lines import Line2D

    plt = pyplot()

    dpi = 100
    figure = plt.figure(figsize=(width / dpi, 0.42), dpi=dpi)
    handles = [Line2D([], [], color=colour, linewidth=3) for colour, _ in legend]
    figure.legend(handles, [text for _, text in legend], loc="center", ncol=len(legend), fontsize=10,
                  frameon=False)  # fmt: skip
    figure.canvas.draw()
    band = Image.frombuffer("RGBA", figure.canvas.get_width_height(), figure.canvas.buffer_rgba()).convert(
        "RGB"
    )
    plt.close(figure)
    return band
