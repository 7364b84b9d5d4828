"""Export a trained RPN + Fast R-CNN pair as one model: ONNX (for ONNX Runtime) or a
``torch.export`` program compiled by AOTInductor (``.pt2``, loadable from Python and C++).

``export_stage_pair`` is what ``tools/export_model.py`` runs: load and check the pair, build
``TwoStageGraph``, trace it once with a symbolic image height and width (so the exported model
takes any image size), write the model file, run it on an example image against the eager graph,
and record what a user of the file needs in ``meta.json`` beside it. The folder is written under
a temporary name and renamed when complete, so a failed export leaves nothing behind and an
existing folder is replaced only with ``overwrite``.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..analysis.pictures import category_ids, dataset_metadata
from ..atomic_files import atomic_folder, atomic_write_json
from ..engine.two_stage import StagePair, load_stage_pair
from ..errors import ExportError, OutputDirError
from .graph import TwoStageGraph
from .quantize import QuantizeSettings, calibration_records, quantize_export
from .runtime import INPUT_NAME, META_FILE, MODEL_FILES, OUTPUT_NAMES, file_sha256, load

__all__ = [
    "AOTI_OPTIONS",
    "EXPORT_FORMATS",
    "MAX_SIDE",
    "MIN_SIDE",
    "ONNX_OPSET",
    "build_graph",
    "export_stage_pair",
    "trace_graph",
    "write_onnx",
    "write_pt2",
]

EXPORT_FORMATS = tuple(MODEL_FILES)
#: ONNX opset: 18 is the first with ``Resize(antialias=1)``, which the test-size resize needs.
ONNX_OPSET = 18
#: The exported models take images with sides in this range (pixels).
MIN_SIDE, MAX_SIDE = 32, 8192
#: AOTInductor's options: freezing folds the weights into the program as constants (measured on
#: the deploy benchmark: 0.77 of detectron2's eager time, 0.80 without). The wrapper (the C++ that
#: calls the kernels and aten ops in order) compiled at -O0 and without line tables: its C++
#: build took 19.3 s of the demo pair's any-size compile at the default -O1 and 6.5 s so; the
#: .pt2 ran as fast as before relative to eager (deploy benchmark, 2026-12-05).
AOTI_OPTIONS = {
    "freezing": True,
    "aot_inductor.compile_wrapper_opt_level": "O0",
    "aot_inductor.enable_line_tables": False,
}
#: How far the written model's boxes may be from the eager graph's on the example image (pixels).
#: The example is at the test size, so every backend sees the same pixels; what remains is float
#: rounding in fused kernels (measured: under 1e-3 px on the demo template and on X50 32x4d).
MAX_BOX_DIFFERENCE_PX = 1e-2

#: How the exporters name an operator: ``OpOverload(op='aten.foo'`` or ``torch.ops.aten.foo``.
_OPERATOR = re.compile(r"OpOverload\(op='([\w.]+)'|target=torch\.ops\.([\w.]+)|\b(aten\.\w+)")


def build_graph(pair: StagePair) -> TwoStageGraph:
    """Both trained models (strictly loaded) as one ``TwoStageGraph``, FrozenBN folded; in the
    contiguous layout, whatever the stages run eagerly in: the exported backends' speed was
    measured so (docs/speed.md), ONNX Runtime picks its own layout anyway."""
    stage2 = pair.fast_rcnn
    return TwoStageGraph(
        pair.rpn.build_model(channels_last=False),
        stage2.build_model(channels_last=False),
        input_format=stage2.input_format,
        min_size=stage2.min_size_test,
        max_size=stage2.max_size_test,
        proposal_topk=stage2.proposal_topk_test,
    )


def example_image(min_size: int, max_size: int, seed: int = 0) -> torch.Tensor:
    """A fixed noise image at the test size (4:3 where ``max_size`` allows), to trace and verify
    with; resizing it is the identity, so every backend sees the same pixels."""
    rng = np.random.default_rng(seed)
    size = (min_size, max(min_size, min(min_size * 4 // 3, max_size)))
    return torch.from_numpy(rng.integers(0, 256, size=(*size, 3), dtype=np.uint8))


def _unsupported(error: Exception, what: str) -> ExportError:
    """The exporter's error as one paragraph naming the operator (from anywhere in the chain of
    causes, where torch.onnx puts it) that has no translation."""
    texts, cause = [], error
    while cause is not None and len(texts) < 10:
        texts.append(" ".join(str(cause).split()))
        cause = cause.__cause__ or cause.__context__
    operators = [next(g for g in m.groups() if g) for t in reversed(texts) for m in _OPERATOR.finditer(t)]
    named = f"operator {operators[0]}" if operators else "an operation of the model"
    detail = re.sub(r"\x1b\[[0-9;]*m", "", texts[-1])[:300]
    return ExportError(f"{what}: {named} cannot be exported ({detail})")


def _image_size_dims() -> tuple[dict]:
    """The input's height and width are symbolic, ``MIN_SIDE``..``MAX_SIDE``: any image size."""
    height = torch.export.Dim("height", min=MIN_SIDE, max=MAX_SIDE)
    width = torch.export.Dim("width", min=MIN_SIDE, max=MAX_SIDE)
    return ({0: height, 1: width},)


def trace_graph(graph: TwoStageGraph, example: torch.Tensor) -> torch.export.ExportedProgram:
    """``torch.export`` with the image's height and width symbolic: what is shipped takes any
    size. (A graph fixed at one size compiled about 3x faster, 28 vs 86 s for the X50 pair, which
    the speed benchmark's smoke test used until it left the ``.pt2`` row out.)"""
    try:
        with torch.no_grad():
            return torch.export.export(graph, (example,), dynamic_shapes=_image_size_dims(), strict=False)
    except Exception as e:  # torch.export's errors have many types; all mean "cannot trace this"
        raise _unsupported(e, "torch.export") from e


def write_onnx(graph: TwoStageGraph, example: torch.Tensor, path: Path) -> Path:
    """``torch.onnx.export`` (the torch.export-based exporter) at ``ONNX_OPSET``, checked by ``onnx``,
    with the resized image size as a new symbol (``deploy.graph._new_size_symbol``: a third faster)."""
    import onnx

    graph.size_as_new_symbol = True
    try:
        with torch.no_grad():
            program = torch.onnx.export(
                graph,
                (example,),
                dynamo=True,
                opset_version=ONNX_OPSET,
                dynamic_shapes=_image_size_dims(),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                verbose=False,
                custom_translation_table=_onnx_translations(),
            )
    except Exception as e:
        raise _unsupported(e, "torch.onnx.export") from e
    finally:
        graph.size_as_new_symbol = False
    program.save(str(path))
    onnx.checker.check_model(str(path))
    return path


def _onnx_translations() -> dict:
    """torchvision's RoI max pooling as ONNX's ``MaxRoiPool`` (the same Caffe algorithm: equal
    outputs, tested): onnxscript's own translation of ``torchvision::roi_pool`` takes the op's
    arguments in another order and fails (onnxscript 0.7)."""
    from onnxscript import opset18 as op

    def roi_pool(features, rois, spatial_scale: float, pooled_height: int, pooled_width: int):
        pooled = op.MaxRoiPool(
            features, rois, pooled_shape=[pooled_height, pooled_width], spatial_scale=spatial_scale
        )
        return pooled, op.Cast(pooled, to=7)  # torchvision's argmax output, which nothing reads

    return {torch.ops.torchvision.roi_pool.default: roi_pool}


def write_pt2(graph: TwoStageGraph, example: torch.Tensor, path: Path) -> Path:
    """``torch.export``, then AOTInductor compiles it into a ``.pt2`` package for this device."""
    program = trace_graph(graph, example)
    try:
        torch._inductor.aoti_compile_and_package(
            program, package_path=str(path), inductor_configs=AOTI_OPTIONS
        )
    except Exception as e:
        raise _unsupported(e, "AOTInductor") from e
    return path


def _metadata(pair: StagePair, graph: TwoStageGraph, fmt: str, model_file: Path) -> dict:
    frcn = pair.fast_rcnn
    datasets = frcn.dataset_names
    metadata = dataset_metadata(datasets[0] if datasets else None)
    classes = list(
        getattr(metadata, "thing_classes", None) or [f"class_{i}" for i in range(graph.num_classes)]
    )
    return {
        "format": fmt,
        "model_file": model_file.name,
        "model_sha256": file_sha256(model_file),
        "input": {
            "name": INPUT_NAME,
            "dtype": "uint8",
            "shape": "(height, width, 3)",
            "channels": "BGR (as cv2.imread reads it)",
            "min_side": MIN_SIDE,
            "max_side": MAX_SIDE,
        },
        "outputs": {
            "boxes": "(N, 4) float32: x1, y1, x2, y2 in the input image's pixels",
            "scores": "(N,) float32, best first",
            "classes": "(N,) int64, indices into classes",
        },
        "model_input_format": frcn.input_format,
        "test_size": {"min": frcn.min_size_test, "max": frcn.max_size_test},
        "score_threshold": graph.score_thresh,
        "nms_threshold": graph.nms_thresh,
        "detections_per_image": graph.detections_per_image,
        "proposals": {
            "pre_nms_topk": graph.pre_nms_topk,
            "post_nms_topk": graph.post_nms_topk,
            "nms_threshold": graph.rpn_nms_thresh,
        },
        "classes": classes,
        "category_ids": category_ids(metadata),
        "datasets_test": list(frcn.test_sets),
        "template": {
            name: stage.template.asdict() if stage.template else None
            for name, stage in (("rpn", pair.rpn), ("fast_rcnn", frcn))
        },
        "opset": ONNX_OPSET if fmt == "onnx" else None,
        "device": frcn.device,
        "sources": {
            name: {
                "dir": str(Path(directory).resolve()),
                "config": stage.kind,
                "weights": str(Path(stage.weights).resolve()),
                "sha256": file_sha256(stage.weights),
            }
            for name, stage, directory in (
                ("rpn", pair.rpn, pair.rpn_dir),
                ("fast_rcnn", frcn, pair.fast_rcnn_dir),
            )
        },
        "versions": {"torch": torch.__version__, **_library_versions(fmt)},
    }


def _library_versions(fmt: str) -> dict:
    if fmt != "onnx":
        return {}
    import onnx
    import onnxruntime

    return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def _verify(graph: TwoStageGraph, folder: Path, example: torch.Tensor, device: str) -> dict:
    """Run the written model on ``example`` and compare with the eager graph."""
    with torch.no_grad():
        expected = [t.cpu().numpy() for t in graph(example.to(device))]
    got = load(folder, device=device).run(example.numpy())
    if [len(t) for t in got] != [len(t) for t in expected] or not np.array_equal(got[2], expected[2]):
        raise ExportError(
            f"the exported model in {folder} disagrees with the PyTorch model on the example image: "
            f"{len(got[0])} detections vs {len(expected[0])}"
        )
    difference = float(np.abs(got[0] - expected[0]).max()) if len(got[0]) else 0.0
    if not difference <= MAX_BOX_DIFFERENCE_PX:  # also catches NaN
        raise ExportError(
            f"the exported model in {folder} disagrees with the PyTorch model on the example image: "
            f"its boxes differ by up to {difference:.3g} px (at most {MAX_BOX_DIFFERENCE_PX} px expected)"
        )
    return {
        "image_size": list(example.shape[:2]),
        "detections": len(got[0]),
        "max_box_difference_px": difference,
    }


def export_stage_pair(
    rpn_dir: str | Path,
    fast_rcnn_dir: str | Path,
    output: str | Path,
    fmt: str = "onnx",
    *,
    overwrite: bool = False,
    device: str = "cpu",
    opts: list[str] | None = None,
    quantize: QuantizeSettings | None = None,
) -> Path:
    """Export the pair of stage folders to ``output/`` (``model.onnx`` or ``model.pt2``, and
    ``meta.json``); returns ``output``. See the module docstring. With ``quantize``, the fp32 ONNX
    model is exported to a temporary folder and ``output`` gets its int8 version
    (``deploy.quantize``); the calibration set is checked before the export starts."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    if quantize is not None and fmt != "onnx":
        raise ExportError(
            f"--quantize {quantize.quantization} writes an ONNX model (ONNX Runtime's static quantization); "
            f"--format {fmt} cannot take it: use --format onnx (nothing was written)"
        )
    output = Path(output)
    if output.exists() and not overwrite:
        raise OutputDirError(
            f"--output {output} exists; pass --overwrite to replace it (nothing was written)"
        )
    pair = load_stage_pair(rpn_dir, fast_rcnn_dir, device, opts)
    if quantize is not None:
        records = calibration_records(quantize.dataset, quantize.images, pair.fast_rcnn.test_sets)
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{output.name}.fp32-", dir=output.parent) as scratch:
            fp32 = _export_pair(pair, Path(scratch) / "fp32", fmt, device)
            return quantize_export(
                fp32, output, quantize, overwrite=overwrite, fp32_is_temporary=True, records=records
            )
    return _export_pair(pair, output, fmt, device)


def _export_pair(pair: StagePair, output: Path, fmt: str, device: str) -> Path:
    graph = build_graph(pair).to(device)
    example = example_image(graph.min_size, graph.max_size)
    with atomic_folder(output) as partial:
        model_file = partial / MODEL_FILES[fmt]
        (write_onnx if fmt == "onnx" else write_pt2)(graph, example.to(device), model_file)
        meta = _metadata(pair, graph, fmt, model_file)
        atomic_write_json(partial / META_FILE, meta)
        meta["verified"] = _verify(graph, partial, example, device)
        atomic_write_json(partial / META_FILE, meta)
    return output
