"""Detections on plain images: the RPN and the Fast R-CNN together, drawn with detectron2's
``Visualizer``, plus the boxes as JSON (``tools/eval_coco.py --images``).

Stage 1's output folder (its ``config.yaml`` and ``model_final.pth``) is enough to rebuild the
RPN, so a Fast R-CNN of the paper's schedule runs on images without any proposal file.
"""

from __future__ import annotations

from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image
from PIL import Image

from ..atomic_files import atomic_write_json
from ..errors import MissingFileError, ResNeXtDetError
from .defaults import setup_cfg
from .two_stage import TwoStagePredictor

__all__ = ["IMAGE_SUFFIXES", "MIN_DRAWN_SIDE", "draw_detections", "image_files", "two_stage_predictor"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: Drawn images smaller than this (shorter side, pixels) are enlarged so that labels stay legible.
MIN_DRAWN_SIDE = 384


def two_stage_predictor(rpn_dir: str | Path, fast_rcnn_cfg) -> TwoStagePredictor:
    """The RPN of stage 1's ``rpn_dir`` and the Fast R-CNN of ``fast_rcnn_cfg``, on its device."""
    rpn_dir = Path(rpn_dir)
    for required in ("config.yaml", "model_final.pth"):
        if not (rpn_dir / required).is_file():
            raise MissingFileError(
                f"{rpn_dir / required} not found: --proposals must be stage 1's OUTPUT_DIR"
            )
    rpn_cfg = setup_cfg(
        str(rpn_dir / "config.yaml"),
        ["MODEL.WEIGHTS", str(rpn_dir / "model_final.pth"), "MODEL.DEVICE", fast_rcnn_cfg.MODEL.DEVICE],
    )
    return TwoStagePredictor(rpn_cfg, fast_rcnn_cfg)


def image_files(folder: str | Path) -> list[Path]:
    """The images of ``folder`` (by suffix, sorted); an empty or missing folder is an error."""
    if not Path(folder).is_dir():
        raise ResNeXtDetError(f"--images {folder} is not a folder of images")
    images = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ResNeXtDetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in --images {folder}")
    return images


def draw_detections(
    predictor: TwoStagePredictor,
    images: list[Path],
    output: Path,
    dataset: str | None,
    score_threshold: float,
) -> list[Path]:
    """Draw each image's detections scoring at least ``score_threshold`` to ``output/<stem>.png``
    (class names from ``dataset``'s metadata) and write them all to ``output/detections.json``."""
    from detectron2.utils.visualizer import Visualizer  # imports cv2: only needed here

    metadata = None
    if dataset:  # class names; a COCO-json dataset sets them when first loaded
        metadata = MetadataCatalog.get(dataset)
        if not hasattr(metadata, "thing_classes"):
            DatasetCatalog.get(dataset)
    output.mkdir(parents=True, exist_ok=True)
    written, detections = [], {}
    for path in images:
        image = read_image(str(path), format="BGR")
        instances = predictor(image).to("cpu")
        instances = instances[instances.scores >= score_threshold]
        scale = max(1.0, MIN_DRAWN_SIDE / min(image.shape[:2]))  # small images: readable labels
        drawn = Visualizer(image[:, :, ::-1], metadata, scale=scale).draw_instance_predictions(instances)
        target = output / (path.stem + ".png")
        Image.fromarray(drawn.get_image()).save(target)
        written.append(target)
        detections[path.name] = [
            {
                "box_xyxy": [round(v, 1) for v in box.tolist()],
                "score": round(float(score), 4),
                "class": int(c),
            }
            for box, score, c in zip(
                instances.pred_boxes.tensor, instances.scores, instances.pred_classes, strict=True
            )
        ]
    atomic_write_json(output / "detections.json", detections, indent=1)
    return written
