"""``tools/predict.py``'s work: detections on an image, a folder of images or a video, drawn and
written as COCO results.

Any predictor with ``TwoStagePredictor``'s call works (an exported model from ``load``, or the
PyTorch pair). Images are drawn to ``<output>/<stem>.png``; a video becomes ``<output>/<stem>.mp4``
with every frame drawn (OpenCV reads and writes it). Every detection above the score threshold
goes to ``<output>/detections.json`` in COCO's results format (``image_id``, ``category_id``,
``bbox`` as x, y, width, height, ``score``), plus the ``file_name`` (and ``frame``) it came from.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from detectron2.data.detection_utils import read_image
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ..analysis.pictures import IMAGE_SUFFIXES, draw_instances
from ..atomic_files import atomic_write_json
from ..errors import ImageFileError, MissingFileError

__all__ = ["VIDEO_SUFFIXES", "PredictionSource", "open_source", "predict_to_folder"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def _read_image(path: Path, flag: str) -> np.ndarray:
    """detectron2's ``read_image`` (BGR, EXIF orientation applied, as every other path of the
    project reads images), with an unreadable file named."""
    try:
        return read_image(str(path), format="BGR")
    except (UnidentifiedImageError, OSError) as e:
        raise ImageFileError(f"{flag} {path} is not a readable image ({e})") from None


@dataclass
class PredictionSource:
    """What ``--input`` (``flag``) names: ``kind`` is "images" or "video"; ``frames()`` yields
    ``(name, image_bgr)``."""

    path: Path
    kind: str
    images: list[Path]
    count: int
    fps: float = 0.0
    flag: str = "--input"

    def frames(self) -> Iterator[tuple[str, np.ndarray]]:
        if self.kind == "images":
            for path in self.images:
                yield path.name, _read_image(path, self.flag)
            return
        import cv2

        capture = cv2.VideoCapture(str(self.path))
        try:
            index = 0
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                yield f"{self.path.name}#{index}", frame
                index += 1
        finally:
            capture.release()


def open_source(path: str | Path, flag: str = "--input") -> PredictionSource:
    """An image file, a folder of images, or a video file; anything else is a clear error naming
    the command line's ``flag``."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{flag} {path} does not exist")
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise ImageFileError(f"{flag} {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return PredictionSource(path, "images", images, len(images), flag=flag)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return PredictionSource(path, "images", [path], 1, flag=flag)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        import cv2

        capture = cv2.VideoCapture(str(path))
        ok, _ = capture.read()
        count, fps = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), float(capture.get(cv2.CAP_PROP_FPS))
        capture.release()
        if not ok:
            raise ImageFileError(
                f"{flag} {path}: OpenCV cannot read a frame of this video (not a video, or a codec it lacks)"
            )
        return PredictionSource(path, "video", [], max(count, 1), fps or 25.0, flag)
    raise ImageFileError(
        f"{flag} {path} is neither an image ({', '.join(IMAGE_SUFFIXES)}), a video "
        f"({', '.join(VIDEO_SUFFIXES)}) nor a folder of images"
    )


def _coco_results(instances, image_id: int, name: str, category_ids: list[int] | None) -> list[dict]:
    results = []
    for box, score, cls in zip(
        instances.pred_boxes.tensor.tolist(),
        instances.scores.tolist(),
        instances.pred_classes.tolist(),
        strict=True,
    ):
        x1, y1, x2, y2 = box
        results.append(
            {
                "image_id": image_id,
                "file_name": name,
                "category_id": category_ids[cls] if category_ids else int(cls),
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "score": round(float(score), 5),
            }
        )
    return results


def predict_to_folder(
    predictor,
    source: PredictionSource,
    output: str | Path,
    *,
    metadata=None,
    category_ids: list[int] | None = None,
    score_threshold: float = 0.5,
    progress: bool = True,
) -> dict:
    """Run ``predictor`` on every image or frame of ``source``; write the drawings and
    ``detections.json`` to ``output``. Returns ``{"frames", "detections", "written"}``."""
    output = Path(output)
    video = _VideoFile(output / (source.path.stem + ".mp4"), source.fps) if source.kind == "video" else None
    unit = " frames" if video else " images"
    results, written, frames = [], [], 0
    try:
        for image_id, (name, image) in enumerate(
            tqdm(source.frames(), total=source.count, unit=unit, disable=not progress)
        ):
            instances = predictor(image).to("cpu")
            instances = instances[instances.scores >= score_threshold]
            results += _coco_results(instances, image_id, name, category_ids)
            drawn = draw_instances(image, instances, metadata)
            output.mkdir(
                parents=True, exist_ok=True
            )  # only once an image was read: a bad input writes nothing
            if video is not None:
                video.write(drawn)
            else:
                target = output / (Path(name).stem + ".png")
                Image.fromarray(drawn).save(target)
                written.append(target)
            frames += 1
        if video is not None:
            written.append(video.finish())
    finally:
        if video is not None:
            video.discard()
    atomic_write_json(output / "detections.json", results, indent=1)
    return {"frames": frames, "detections": len(results), "written": written}


class _VideoFile:
    """A drawn video written under a temporary name (OpenCV picks the container by the file's
    suffix, so the name keeps ``.mp4``) and renamed when complete."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = path, fps
        self.partial = path.with_name(f".{path.stem}.partial{path.suffix}")
        self.writer = None

    def write(self, drawn_rgb: np.ndarray) -> None:
        if self.writer is None:
            self.writer = _video_writer(self.partial, drawn_rgb.shape, self.fps)
        self.writer.write(np.ascontiguousarray(drawn_rgb[:, :, ::-1]))

    def finish(self) -> Path:
        if self.writer is None:
            raise ImageFileError(f"no frame could be read from the video for {self.path}")
        self.writer.release()
        self.writer = None
        os.replace(self.partial, self.path)
        return self.path

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.release()
        self.partial.unlink(missing_ok=True)


def _video_writer(path: Path, shape: tuple, fps: float):
    import cv2

    height, width = shape[:2]
    # mp4v: in every OpenCV wheel, no system FFmpeg needed
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise ImageFileError(f"OpenCV cannot write the video {path} ({width}x{height} at {fps} fps)")
    return writer
