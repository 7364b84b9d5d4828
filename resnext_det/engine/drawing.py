"""Detections on plain images: the RPN and the Fast R-CNN together, drawn with detectron2's
``Visualizer``, plus the boxes as JSON (``tools/eval_coco.py --images``).

Stage 1's output folder (its ``config.yaml`` and ``model_final.pth``) is enough to rebuild the
RPN, so a Fast R-CNN of the paper's schedule runs on images without any proposal file.
"""

from __future__ import annotations

from pathlib import Path

from detectron2.data.detection_utils import read_image
from PIL import Image

from ..analysis.pictures import IMAGE_SUFFIXES, dataset_metadata, draw_instances
from ..atomic_files import atomic_write_json
from ..errors import ResNeXtDetError
from .defaults import setup_cfg
from .two_stage import TwoStagePredictor, stage_files

__all__ = ["draw_detections", "image_files", "two_stage_predictor"]


def two_stage_predictor(rpn_dir: str | Path, fast_rcnn_cfg) -> TwoStagePredictor:
    """The RPN of stage 1's ``rpn_dir`` and the Fast R-CNN of ``fast_rcnn_cfg``, on its device."""
    config, weights = stage_files(rpn_dir, "--proposals")
    device = fast_rcnn_cfg.MODEL.DEVICE
    rpn_cfg = setup_cfg(str(config), ["MODEL.WEIGHTS", str(weights), "MODEL.DEVICE", device])
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
    metadata = dataset_metadata(dataset)
    output.mkdir(parents=True, exist_ok=True)
    written, detections = [], {}
    for path in images:
        image = read_image(str(path), format="BGR")
        instances = predictor(image).to("cpu")
        instances = instances[instances.scores >= score_threshold]
        target = output / (path.stem + ".png")
        Image.fromarray(draw_instances(image, instances, metadata)).save(target)
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
