"""Run an exported model: ``load(folder)`` -> a predictor with ``TwoStagePredictor``'s call.

The folder holds ``meta.json`` and the model file it names; the backend follows its format:
ONNX Runtime for ``model.onnx``, AOTInductor's loader for ``model.pt2``. Before anything runs,
the model file's size and sha256 are checked against ``meta.json``, so a truncated copy or a
file from another export is refused by name rather than failing inside the runtime.

Without this project, the ONNX file runs with ``onnxruntime`` alone: one input ``image_bgr``
(H, W, 3) uint8, outputs ``boxes``, ``scores``, ``classes`` (see ``meta.json``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ..errors import ExportError, ImageFileError

__all__ = [
    "INPUT_NAME",
    "META_FILE",
    "MODEL_FILES",
    "OUTPUT_NAMES",
    "ExportedPredictor",
    "file_sha256",
    "load",
    "read_meta",
]

META_FILE = "meta.json"
MODEL_FILES = {"onnx": "model.onnx", "pt2": "model.pt2"}
INPUT_NAME = "image_bgr"
OUTPUT_NAMES = ("boxes", "scores", "classes")
_REQUIRED_META = ("format", "model_file", "model_sha256", "classes", "input")


def read_meta(folder: str | Path) -> dict:
    """``folder/meta.json``, checked to describe an export of this project."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise ExportError(
            f"{path} not found: {folder} is not a folder written by tools/export_model.py "
            "(it holds meta.json and model.onnx or model.pt2)"
        )
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExportError(f"{path} is not valid JSON ({e}); export the model again") from None
    missing = [key for key in _REQUIRED_META if key not in meta]
    if missing or meta.get("format") not in MODEL_FILES:
        raise ExportError(
            f"{path} lacks {', '.join(missing) or 'a known format'}: expected meta.json of "
            f"tools/export_model.py with format one of {', '.join(MODEL_FILES)}"
        )
    return meta


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checked_model_file(folder: Path, meta: dict) -> Path:
    path = folder / meta["model_file"]
    if not path.is_file():
        raise ExportError(f"{path} not found, though {folder / META_FILE} names it; export the model again")
    if file_sha256(path) != meta["model_sha256"]:
        raise ExportError(
            f"{path} is truncated or changed ({path.stat().st_size} bytes; its sha256 differs from the "
            f"one {META_FILE} recorded at export): copy it again or export the model again"
        )
    return path


class _OnnxRuntime:
    def __init__(self, path: Path, device: str):
        import onnxruntime

        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                raise ExportError(
                    f"--device {device}: this onnxruntime has no CUDA provider "
                    f"({', '.join(onnxruntime.get_available_providers())}); install onnxruntime-gpu "
                    "or use cpu"
                )
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for unreadable models
            raise ExportError(
                f"{path}: ONNX Runtime cannot load it ({' '.join(str(e).split())[:300]})"
            ) from None

    def __call__(self, image: np.ndarray):
        return self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: image})


class _AOTInductor:
    def __init__(self, path: Path, device: str):
        self.device = device
        try:
            self.model = torch._inductor.aoti_load_package(str(path))
        except Exception as e:
            raise ExportError(
                f"{path}: AOTInductor cannot load it ({' '.join(str(e).split())[:300]})"
            ) from None

    @torch.no_grad()
    def __call__(self, image: np.ndarray):
        outputs = self.model(torch.from_numpy(image).to(self.device))
        return [t.cpu().numpy() for t in outputs]


class ExportedPredictor:
    """``predictor(image_bgr)`` -> detectron2 ``Instances`` (``pred_boxes``, ``scores``,
    ``pred_classes`` in the image's pixels), like ``TwoStagePredictor``; ``run`` gives numpy arrays.

    ``metadata`` carries the class names (``thing_classes``) for detectron2's ``Visualizer``.
    """

    def __init__(self, folder: str | Path, device: str = "cpu"):
        self.folder = Path(folder)
        self.meta = read_meta(self.folder)
        exported_on = self.meta.get("device", "cpu")
        if self.meta["format"] == "pt2" and exported_on.split(":")[0] != device.split(":")[0]:
            raise ExportError(
                f"{self.folder} was compiled by AOTInductor for {exported_on}, not {device}: export it "
                f"again with --device {device}, or use the ONNX format"
            )
        path = _checked_model_file(self.folder, self.meta)
        self.backend = (_OnnxRuntime if self.meta["format"] == "onnx" else _AOTInductor)(path, device)
        self.min_side = int(self.meta["input"].get("min_side", 1))
        self.max_side = int(self.meta["input"].get("max_side", 1 << 30))

    @property
    def metadata(self):
        from detectron2.data.catalog import Metadata

        return Metadata(name=str(self.folder), thing_classes=list(self.meta["classes"]))

    def run(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """boxes (N, 4) float32, scores (N,), classes (N,) int64 for one (H, W, 3) uint8 BGR image."""
        image = np.asarray(image_bgr)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ImageFileError(
                f"expected an (height, width, 3) uint8 BGR image, got {image.dtype} of shape {image.shape}"
            )
        if not self.min_side <= min(image.shape[:2]) or max(image.shape[:2]) > self.max_side:
            raise ImageFileError(
                f"image of {image.shape[1]}x{image.shape[0]} pixels: the exported model takes sides of "
                f"{self.min_side} to {self.max_side} pixels"
            )
        boxes, scores, classes = self.backend(np.ascontiguousarray(image))
        return boxes, scores, classes

    def __call__(self, image_bgr: np.ndarray):
        from detectron2.structures import Boxes, Instances

        boxes, scores, classes = self.run(image_bgr)
        instances = Instances(tuple(image_bgr.shape[:2]))
        instances.pred_boxes = Boxes(torch.from_numpy(boxes))
        instances.scores = torch.from_numpy(scores)
        instances.pred_classes = torch.from_numpy(classes)
        return instances


def load(folder: str | Path, device: str = "cpu") -> ExportedPredictor:
    """The exported model in ``folder`` (``tools/export_model.py --output``), ready to run."""
    return ExportedPredictor(folder, device)
