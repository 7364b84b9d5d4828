"""COCO AP of any predictor (exported or PyTorch) on a registered dataset.

A predictor maps a BGR image to ``Instances``; detectron2's ``inference_on_dataset`` and
``COCOEvaluator`` do the rest, exactly as for the training-time evaluation, so the numbers of an
exported model and of the PyTorch pair are computed the same way.
"""

from __future__ import annotations

from pathlib import Path

from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import read_image
from detectron2.evaluation import COCOEvaluator, inference_on_dataset
from torch import nn

__all__ = ["evaluate_predictor"]


class _PredictorOnDatasetDicts(nn.Module):
    """The model ``inference_on_dataset`` expects: a batch of dataset dicts in, outputs out."""

    def __init__(self, predictor):
        super().__init__()
        self.predictor = predictor

    def forward(self, batch: list[dict]) -> list[dict]:
        return [{"instances": self.predictor(read_image(d["file_name"], format="BGR"))} for d in batch]


def evaluate_predictor(predictor, dataset_name: str, output_dir: str | Path) -> dict:
    """``{"bbox": {"AP": ..., "AP50": ..., ...}}`` of ``predictor`` on ``dataset_name``; detectron2's
    ``coco_instances_results.json`` goes to ``output_dir``."""
    dicts = DatasetCatalog.get(dataset_name)
    evaluator = COCOEvaluator(dataset_name, tasks=("bbox",), distributed=False, output_dir=str(output_dir))
    return inference_on_dataset(_PredictorOnDatasetDicts(predictor), [[d] for d in dicts], evaluator)
