"""Deploy a trained RPN + Fast R-CNN pair as one model (appendix B's two stages, image to detections).

- ``TwoStageGraph``: both stages and the box bookkeeping between them as one traceable module;
- ``export_stage_pair``: ONNX (ONNX Runtime) or ``torch.export`` + AOTInductor (``.pt2``), with
  ``meta.json``;
- ``quantize_export``: an ONNX export statically quantized to int8, calibrated on a dataset's
  images and checked on them (``QuantizeSettings``);
- ``load(folder)``: the exported model as a predictor with ``TwoStagePredictor``'s call;
- ``evaluate_predictor`` / ``predict_to_folder``: COCO AP of a predictor; images, folders, videos.
"""

from .evaluate import evaluate_predictor
from .export import EXPORT_FORMATS, ONNX_OPSET, build_graph, export_stage_pair
from .graph import TwoStageGraph
from .predict import open_source, predict_to_folder
from .quantize import QuantizeSettings, quantize_export
from .runtime import BACKENDS, ExportedPredictor, load, read_meta

__all__ = [
    "BACKENDS",
    "EXPORT_FORMATS",
    "ONNX_OPSET",
    "ExportedPredictor",
    "QuantizeSettings",
    "TwoStageGraph",
    "build_graph",
    "evaluate_predictor",
    "export_stage_pair",
    "load",
    "open_source",
    "predict_to_folder",
    "quantize_export",
    "read_meta",
]
