"""Run an exported model: ``load(folder)`` -> a predictor with ``TwoStagePredictor``'s call.

The folder holds ``meta.json`` and the model file it names; the backend follows its format:
ONNX Runtime (default) or OpenVINO for ``model.onnx`` (fp32 or int8 alike: the int8 model's
quantize/dequantize pairs are standard ONNX, which both run), AOTInductor's loader for
``model.pt2``. Before anything runs,
the model file's size and sha256 are checked against ``meta.json``, so a truncated copy or a
file from another export is refused by name rather than failing inside the runtime.

Without this project, the ONNX file runs with ``onnxruntime`` alone: one input ``image_bgr``
(H, W, 3) uint8, outputs ``boxes``, ``scores``, ``classes`` (see ``meta.json``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import ExportError, ImageFileError
from .cpu import cpu_description, has_int8_dot_product
from .graph import resized_size

__all__ = [
    "BACKENDS",
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
#: the runtimes that can run each format, the default first
BACKENDS = {"onnx": ("onnxruntime", "openvino"), "pt2": ("aotinductor",)}
_REQUIRED_META = ("format", "model_file", "model_sha256", "classes", "input")
logger = logging.getLogger(__name__)


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
        options = onnxruntime.SessionOptions()
        # torch's thread count (OMP_NUM_THREADS, torch.set_num_threads): ONNX Runtime's default, one
        # spinning thread per core, would contend with every other process's (tests/README.md)
        options.intra_op_num_threads = torch.get_num_threads()
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for unreadable models
            raise ExportError(
                f"{path}: ONNX Runtime cannot load it ({' '.join(str(e).split())[:300]})"
            ) from None

    def __call__(self, image: np.ndarray):
        return self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: image})


class _OpenVINO:
    """OpenVINO's CPU plugin on the ONNX file, with two differences from ONNX Runtime's run, both
    measured on the demo's trained pair (2026-12-06):

    - the resize to the test size is done here, with PIL (detectron2's test-time resize, whose
      pixels the graph's own resize reproduces); the graph then gets an image at the test size,
      where its resize is the identity. OpenVINO's antialiased uint8 resize rounds its own way:
      boxes moved 0.04 px at a 2x enlargement, 0.7 px at a reduction, and AP50 dropped 1.1 on
      the demo's val split; at the test size it gives ONNX Runtime's detections (1e-4 px);
    - fp32 precision: by default the plugin runs an fp32 model in bf16 on a CPU with bf16 units,
      which moves the boxes, and it then ran the int8 model's RoIAlign 20x slower; asked for f32,
      the int8 model's convolutions still run in int8.
    """

    def __init__(self, path: Path, device: str, test_size: dict):
        try:
            import openvino
        except ImportError:
            raise ExportError(
                "--backend openvino needs OpenVINO: pip install openvino (or pip install -e '.[deploy]')"
            ) from None
        if device != "cpu":
            raise ExportError(f"--backend openvino runs on the cpu here, not {device}: use onnxruntime")
        self.min_size, self.max_size = int(test_size["min"]), int(test_size["max"])
        core = openvino.Core()
        config = {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "INFERENCE_PRECISION_HINT": "f32"}
        try:
            self.model = core.compile_model(core.read_model(str(path)), "CPU", config)
        except Exception as e:  # OpenVINO raises RuntimeError with its own text
            raise ExportError(f"{path}: OpenVINO cannot load it ({' '.join(str(e).split())[:300]})") from None
        self.request = self.model.create_infer_request()

    def __call__(self, image: np.ndarray):
        height, width = image.shape[:2]
        new_height, new_width = resized_size(height, width, self.min_size, self.max_size)
        if (new_height, new_width) != (height, width):
            image = np.asarray(Image.fromarray(image).resize((new_width, new_height), Image.BILINEAR))
        outputs = self.request.infer({INPUT_NAME: np.ascontiguousarray(image)})
        boxes, scores, classes = (np.array(outputs[self.model.output(name)]) for name in OUTPUT_NAMES)
        # the graph's last step, from the test size to the input's pixels: scale, clip, drop empty
        boxes = boxes * np.array([width / new_width, height / new_height] * 2, dtype=np.float32)
        boxes = np.clip(boxes, 0, np.array([width, height, width, height], dtype=np.float32))
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return boxes[keep], scores[keep], classes[keep]


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

    def __init__(self, folder: str | Path, device: str = "cpu", backend: str | None = None):
        self.folder = Path(folder)
        self.meta = read_meta(self.folder)
        backends = BACKENDS[self.meta["format"]]
        self.backend_name = backend or backends[0]
        if self.backend_name not in backends:
            raise ExportError(
                f"--backend {self.backend_name} cannot run {self.folder}'s {self.meta['format']} model: "
                f"use {' or '.join(backends)}"
            )
        exported_on = self.meta.get("device", "cpu")
        if self.meta["format"] == "pt2" and exported_on.split(":")[0] != device.split(":")[0]:
            raise ExportError(
                f"{self.folder} was compiled by AOTInductor for {exported_on}, not {device}: export it "
                f"again with --device {device}, or use the ONNX format"
            )
        path = _checked_model_file(self.folder, self.meta)
        if self.backend_name == "openvino":
            self.backend = _OpenVINO(path, device, self.meta["test_size"])
        else:
            self.backend = {"onnxruntime": _OnnxRuntime, "aotinductor": _AOTInductor}[self.backend_name](
                path, device
            )
        _warn_if_int8_is_slow_here(self.folder, self.meta)
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


def _warn_if_int8_is_slow_here(folder: Path, meta: dict) -> None:
    """An int8 model on a CPU without VNNI / AMX may run slower than its fp32 model (deploy.cpu):
    say so, with what the export measured and where."""
    quantization = meta.get("quantization")
    if not quantization or has_int8_dot_product():
        return
    check = quantization.get("check", {})
    measured = (
        f"the export measured {check['int8_time_ratio']:.2f}x fp32's time per image on "
        f"{cpu_description(check['cpu'])}"
        if "int8_time_ratio" in check
        else "the export recorded no time"
    )
    logger.warning(
        f"{folder} is an int8 model and this CPU ({cpu_description()}) has no VNNI or AMX, so int8 may "
        f"be slower than fp32 here ({measured}); its fp32 export may be the faster choice (docs/deploy.md)"
    )


def load(folder: str | Path, device: str = "cpu", backend: str | None = None) -> ExportedPredictor:
    """The exported model in ``folder`` (``tools/export_model.py --output``), ready to run by
    ``backend`` (``BACKENDS``; None: the format's default, ONNX Runtime for ONNX)."""
    return ExportedPredictor(folder, device, backend)
