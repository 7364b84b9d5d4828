"""Static int8 quantization of an exported ONNX detector, calibrated on a registered dataset's
images and checked on them before anything is written.

``quantize_export(fp32_folder, output, settings)`` is what ``tools/export_model.py --quantize int8``
runs (after exporting the fp32 model, or on an existing fp32 export with ``--exported``):

1. **Calibration images**: ``settings.images`` images of a registered dataset, drawn with a fixed
   seed; a split the model is evaluated on (its ``DATASETS.TEST``, or any split sharing an image
   with one) is refused: int8 would be tuned on the test images.
2. **Calibration through the model's own preprocessing**: each image goes in as the exported
   model takes it, (H, W, 3) uint8 BGR at its own size, so the activation ranges are those of
   the resized, normalised images the trunks see; one image at a time (ONNX Runtime's strided
   calibration), so memory holds one image's activations, whatever the count.
3. **ONNX Runtime's ``quantize_static``**, QDQ format: weights int8 per output channel, activations
   uint8 per tensor with the chosen range method (MinMax, entropy or percentile). Only
   ``Conv``, ``Gemm`` and ``MatMul`` are quantized (``QUANTIZED_OP_TYPES``): the resize, RoIAlign
   or RoI max pooling, NMS, box decoding and the boxes in image pixels take fp32 inputs and
   stay fp32; ``settings.keep_fp32`` leaves further nodes in fp32 (ONNX node names, or
   ``TwoStageGraph`` module names, e.g. ``bbox_pred``, which name every node inside; by default
   the trunks' stems, ``DEFAULT_KEEP_FP32``).
4. **Check on the calibration images**: COCO AP and AP50 of the fp32 and int8 models there, and
   their time per image; an AP drop over ``settings.max_ap_drop`` is refused; an int8 model
   slower than its fp32 model is a warning naming the CPU and the two times.

``meta.json`` records the calibration set, image count, method, the fp32 parts, the check and
the CPU (``deploy.cpu``) the times were measured on; its ``model_sha256`` is the int8 file's.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic_files import atomic_folder, atomic_write_json
from ..errors import DatasetFileError, ExportError, OutputDirError
from .cpu import cpu_description, cpu_features, has_int8_dot_product
from .predict import _read_image
from .runtime import INPUT_NAME, META_FILE, MODEL_FILES, file_sha256, load, read_meta

__all__ = [
    "CALIBRATION_METHODS",
    "DEFAULT_KEEP_FP32",
    "QUANTIZATIONS",
    "QUANTIZED_OP_TYPES",
    "QuantizeSettings",
    "calibration_records",
    "module_path",
    "nodes_of",
    "quantize_export",
    "quantize_onnx_file",
]

logger = logging.getLogger(__name__)

#: what ``--quantize`` takes
QUANTIZATIONS = ("int8",)
#: ``--calibration-method`` -> ONNX Runtime's ``CalibrationMethod`` member
CALIBRATION_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
#: the operators that run in int8; everything else (resize, RoI pooling, NMS, decoding) stays fp32
QUANTIZED_OP_TYPES = ("Conv", "Gemm", "MatMul")
#: kept in fp32 unless ``--keep-fp32`` says otherwise: each trunk's stem, the 7x7 convolution on
#: the normalised image (a few % of the multiply-adds). On the demo's val split, MinMax on 40
#: images lost 1.2 AP with the stems in int8 and 0.1 with them in fp32 (docs/deploy.md's table)
DEFAULT_KEEP_FP32 = ("rpn_backbone.stem", "box_backbone.stem")
#: the seed that draws the calibration images from their dataset
CALIBRATION_SEED = 0
#: the exporter's record of the module a node comes from (torch.onnx's node metadata)
_NAME_SCOPES = "pkg.torch.onnx.name_scopes"


@dataclass(frozen=True)
class QuantizeSettings:
    """``tools/export_model.py``'s quantization arguments."""

    dataset: str
    images: int = 200
    method: str = "minmax"
    keep_fp32: tuple[str, ...] = DEFAULT_KEEP_FP32
    max_ap_drop: float | None = None
    quantization: str = "int8"

    def __post_init__(self):
        if self.quantization not in QUANTIZATIONS:
            raise ExportError(
                f"--quantize must be one of {', '.join(QUANTIZATIONS)}, got {self.quantization!r}"
            )
        if self.method not in CALIBRATION_METHODS:
            raise ExportError(
                f"--calibration-method must be one of {', '.join(CALIBRATION_METHODS)}, got {self.method!r}"
            )
        if self.images < 1:
            raise ExportError(f"--calibration-images must be at least 1, got {self.images}")
        if self.max_ap_drop is not None and not self.max_ap_drop >= 0:
            raise ExportError(f"--max-ap-drop is the AP points int8 may lose (>= 0), got {self.max_ap_drop}")


def calibration_records(dataset: str, count: int, test_sets) -> list[dict]:
    """``count`` records of ``dataset`` (drawn with ``CALIBRATION_SEED``, in the dataset's order),
    after the checks of the module docstring's step 1."""
    from detectron2.data import DatasetCatalog

    from ..data.demo_dataset import prepare_demo_splits, register_named_demo_splits

    register_named_demo_splits([dataset, *test_sets])
    if dataset not in DatasetCatalog.list():
        raise DatasetFileError(
            f"--calibration-dataset {dataset!r} is not registered: register it with --dataset {dataset} "
            "JSON IMAGE_ROOT, or name a registered training split (e.g. coco_2014_train, "
            "coco_2014_valminusminival, resnext_demo_train); nothing was written"
        )
    if dataset in test_sets:
        raise DatasetFileError(
            f"--calibration-dataset {dataset} is a split this model is evaluated on (its DATASETS.TEST: "
            f"{', '.join(test_sets)}): calibrating on it tunes int8 to the test images. "
            "Calibrate on a training split; nothing was written"
        )
    prepare_demo_splits([dataset])
    records = DatasetCatalog.get(dataset)
    if len(records) < count:
        raise DatasetFileError(
            f"--calibration-dataset {dataset} has {len(records)} images, fewer than the "
            f"--calibration-images {count} asked for; nothing was written"
        )
    test_files = {
        os.path.realpath(r["file_name"])
        for name in test_sets
        if name in DatasetCatalog.list()
        for r in DatasetCatalog.get(name)
    }
    shared = [r["file_name"] for r in records if os.path.realpath(r["file_name"]) in test_files]
    if shared:
        raise DatasetFileError(
            f"--calibration-dataset {dataset} shares {len(shared)} images with this model's test "
            f"set ({', '.join(test_sets)}), e.g. {shared[0]}: calibrating on them tunes int8 to the "
            "test images. Calibrate on a training split; nothing was written"
        )
    chosen = sorted(random.Random(CALIBRATION_SEED).sample(range(len(records)), count))
    return [records[i] for i in chosen]


def _read_bgr(record: dict) -> np.ndarray:
    """The image as the exported model takes it; an unreadable file is an ImageFileError naming it."""
    return np.ascontiguousarray(_read_image(Path(record["file_name"]), "--calibration-dataset image"))


def _calibration_reader(images: list):
    """ONNX Runtime's ``CalibrationDataReader`` over ``images`` (each a callable that reads one),
    one at a time: ``set_range`` lets its strided calibration collect one image per pass, so
    memory holds one image's activations."""
    from onnxruntime.quantization import CalibrationDataReader
    from tqdm import tqdm

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.progress = tqdm(total=len(images), desc="calibration images", unit=" images", leave=False)
            self.set_range(0, len(images))

        def __len__(self):
            return len(images)

        def set_range(self, start_index: int, end_index: int):
            self.pending = iter(images[start_index:end_index])

        def get_next(self):
            read = next(self.pending, None)
            if read is None:
                self.progress.close()
                return None
            self.progress.update()
            return {INPUT_NAME: read()}

    return Reader()


def nodes_of(model, names) -> list[str]:
    """The ONNX node names that ``names`` stand for: a node's own name, or a ``TwoStageGraph``
    module (``bbox_pred``, ``res5``, ``rpn_head`` ...) whose nodes the exporter tagged with it.
    A name that matches nothing is an error listing the modules there are."""
    paths = {node.name: module_path(node) for node in model.graph.node}
    nodes = []
    for name in names:
        found = [node for node, path in paths.items() if name in (node, path) or path.startswith(name + ".")]
        if not found:
            modules = sorted({path.split(".")[0] for path in paths.values() if path})
            raise ExportError(
                f"--keep-fp32 {name}: no node of the model is named so or comes from such a module; "
                f"the model's modules: {', '.join(modules)} (and their submodules, e.g. rpn_backbone.stem)"
            )
        nodes += found
    return list(dict.fromkeys(nodes))


def module_path(node) -> str:
    """The dotted path of the ``TwoStageGraph`` submodule whose code made ``node`` (e.g.
    ``rpn_backbone.stem``), "" for ``TwoStageGraph``'s own code or a node the exporter did not
    tag. torch.onnx records the module scopes, outermost first, each a full dotted path, and
    then the node's own name: ``['', 'rpn_backbone', 'rpn_backbone.stem', 'conv2d']``."""
    for prop in node.metadata_props:
        if prop.key == _NAME_SCOPES:
            scopes = [s.strip().strip("'\"") for s in prop.value.strip("[]").split(",")]
            return next((s for s in reversed(scopes[:-1]) if s), "")
    return ""


def quantize_onnx_file(
    source: Path, target: Path, images: list, method: str = "minmax", keep_fp32=()
) -> list[str]:
    """ONNX Runtime's ``quantize_static`` of ``source`` into ``target`` (module docstring, steps
    2-3), calibrated on ``images`` (callables, each returning an (H, W, 3) uint8 BGR image);
    returns the nodes kept in fp32. ``quantize_export`` and the speed benchmark use it."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    excluded = nodes_of(onnx.load(str(source), load_external_data=False), keep_fp32)
    quantize_static(
        str(source),
        str(target),
        _calibration_reader(images),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(QUANTIZED_OP_TYPES),
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=excluded,
        calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHODS[method]),
        extra_options={"CalibStridedMinMax": 1},  # one image per calibration pass (step 2)
    )
    onnx.checker.check_model(str(target))
    return excluded


class _Timed:
    """A predictor that records how long each call takes."""

    def __init__(self, predictor):
        self.predictor, self.seconds = predictor, []

    def __call__(self, image):
        start = time.perf_counter()
        result = self.predictor(image)
        self.seconds.append(time.perf_counter() - start)
        return result


def _check_on_calibration_images(fp32_folder: Path, int8_folder: Path, dataset: str, records) -> dict:
    """COCO AP/AP50 and time per image of both models on the calibration images (evaluated as a
    dataset of their own: COCOEvaluator reads the ground truth of exactly those)."""
    from . import evaluate

    results = {}
    with tempfile.TemporaryDirectory(prefix="int8-check-") as scratch:
        for name, folder in (("fp32", fp32_folder), ("int8", int8_folder)):
            timed = _Timed(load(folder))
            box = evaluate.evaluate_predictor(timed, dataset, Path(scratch) / name, records=records)["bbox"]
            results[name] = {
                "AP": float(box["AP"]),
                "AP50": float(box["AP50"]),
                "seconds_per_image": float(np.median(timed.seconds)),
            }
    results["images"] = len(records)
    results["ap_drop"] = results["fp32"]["AP"] - results["int8"]["AP"]
    results["ap50_drop"] = results["fp32"]["AP50"] - results["int8"]["AP50"]
    results["int8_time_ratio"] = results["int8"]["seconds_per_image"] / results["fp32"]["seconds_per_image"]
    return results


def _speed_warning(check: dict, features: dict) -> str | None:
    """The warning for an int8 model slower than its fp32 model on this CPU (module docstring)."""
    ratio = check["int8_time_ratio"]
    if ratio < 1:
        return None
    why = (
        "this CPU has no VNNI or AMX: ONNX Runtime's int8 convolutions fall back on AVX2's "
        "VPMADDUBSW, little faster than fp32 (docs/deploy.md)"
        if not has_int8_dot_product(features)
        else "the int8 model's quantize/dequantize steps cost more than its convolutions save here"
    )
    return (
        f"int8 is slower than fp32 on this CPU ({cpu_description(features)}): "
        f"{check['int8']['seconds_per_image']:.3f} s vs {check['fp32']['seconds_per_image']:.3f} s per image "
        f"(median over the {check['images']} calibration images, {ratio:.2f}x); {why}. "
        "Deploy the fp32 export on this CPU"
    )


def quantize_export(
    fp32_folder: str | Path,
    output: str | Path,
    settings: QuantizeSettings,
    *,
    overwrite: bool = False,
    fp32_is_temporary: bool = False,
    records: list[dict] | None = None,
) -> Path:
    """Write ``output/``: ``fp32_folder``'s ONNX model quantized to int8 (module docstring), with
    its ``meta.json``; returns ``output``. Nothing is written when a check fails.
    ``fp32_is_temporary``: the fp32 export was made for this and is not kept (meta.json then
    records its checksum, not its folder). ``records``: the calibration images, when the caller
    has already drawn and checked them (``calibration_records``)."""
    fp32_folder, output = Path(fp32_folder), Path(output)
    meta = read_meta(fp32_folder)
    if meta.get("quantization"):
        recorded = meta["quantization"]
        came_from = recorded["fp32_model"]["folder"] or "export it again from its stages, without --quantize"
        raise ExportError(
            f"{fp32_folder} holds an already quantized model ({recorded['dtype']}, calibrated on "
            f"{recorded['calibration']['dataset']}): quantize the fp32 export it came from ({came_from}); "
            "nothing was written"
        )
    if meta["format"] != "onnx":
        raise ExportError(
            f"{fp32_folder} holds a {meta['format']} model: --quantize int8 quantizes an ONNX export "
            "(ONNX Runtime's static quantization); export with --format onnx"
        )
    if output.exists() and not overwrite:
        raise OutputDirError(
            f"--output {output} exists; pass --overwrite to replace it (nothing was written)"
        )
    if output.resolve() == fp32_folder.resolve():
        raise OutputDirError(
            f"--output {output} is the fp32 model's own folder; name another (nothing was written)"
        )
    if records is None:
        records = calibration_records(settings.dataset, settings.images, meta.get("datasets_test") or [])
    with atomic_folder(output) as partial:
        model_file = partial / MODEL_FILES["onnx"]
        started = time.perf_counter()
        excluded = quantize_onnx_file(
            fp32_folder / meta["model_file"],
            model_file,
            [functools.partial(_read_bgr, record) for record in records],
            settings.method,
            settings.keep_fp32,
        )
        quantize_seconds = time.perf_counter() - started
        features = cpu_features()
        meta = {
            **{k: v for k, v in meta.items() if k not in ("verified", "model_sha256", "model_file")},
            "model_file": model_file.name,
            "model_sha256": file_sha256(model_file),
            "quantization": {
                "dtype": settings.quantization,
                "tool": "onnxruntime.quantization.quantize_static",
                "format": "QDQ",
                "weights": "int8, symmetric, per output channel",
                "activations": "uint8, per tensor",
                "method": settings.method,
                "calibration": {
                    "dataset": settings.dataset,
                    "images": len(records),
                    "seed": CALIBRATION_SEED,
                    "file_names": [r["file_name"] for r in records[:5]],
                },
                "quantized_op_types": list(QUANTIZED_OP_TYPES),
                "fp32": "every other operator: resize, normalisation, RoIAlign / RoI max pooling, NMS, "
                "box decoding and clipping, the boxes in image pixels",
                "excluded_nodes": excluded,
                "keep_fp32": list(settings.keep_fp32),
                "fp32_model": {
                    "folder": None if fp32_is_temporary else str(fp32_folder.resolve()),
                    "sha256": meta["model_sha256"],
                },
                "seconds": round(quantize_seconds, 1),
            },
        }
        atomic_write_json(partial / META_FILE, meta)
        check = _check_on_calibration_images(fp32_folder, partial, settings.dataset, records)
        check["cpu"] = features
        meta["quantization"]["check"] = check
        if settings.max_ap_drop is not None and check["ap_drop"] > settings.max_ap_drop:
            raise ExportError(
                f"int8 loses {check['ap_drop']:.2f} AP on the {len(records)} calibration images of "
                f"{settings.dataset} (fp32 {check['fp32']['AP']:.2f}, int8 {check['int8']['AP']:.2f}), "
                f"more than --max-ap-drop {settings.max_ap_drop}: try --calibration-method entropy or "
                "percentile, more --calibration-images, or --keep-fp32 MODULE (e.g. bbox_pred); "
                "nothing was written"
            )
        warning = _speed_warning(check, features)
        meta["quantization"]["speed_warning"] = warning
        if warning:
            logger.warning(warning)
        atomic_write_json(partial / META_FILE, meta)
    return output
