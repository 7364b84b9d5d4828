"""COCO AP of any predictor (exported or PyTorch) on a registered dataset.

A predictor maps a BGR image to ``Instances``; detectron2's ``inference_on_dataset`` and
``COCOEvaluator`` do the rest, exactly as for the training-time evaluation, so the numbers of an
exported model and of the PyTorch pair are computed the same way. Two variations serve the
int8 check and the corruption benchmark without a second evaluation loop: ``records`` evaluates
on some of the dataset's images (a temporary catalog entry: the evaluator reads the ground truth
of exactly those), ``image_transform`` changes each image between reading and predicting.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.evaluation import COCOEvaluator, inference_on_dataset
from torch import nn

__all__ = ["evaluate_predictor", "ground_truth_json", "subset_dataset"]

#: ``image_transform(image_bgr, record) -> image_bgr``: the record says which image it is
ImageTransform = Callable[[np.ndarray, dict], np.ndarray]


class _PredictorOnDatasetDicts(nn.Module):
    """The model ``inference_on_dataset`` expects: a batch of dataset dicts in, outputs out."""

    def __init__(self, predictor, image_transform: ImageTransform | None = None):
        super().__init__()
        self.predictor, self.image_transform = predictor, image_transform

    def forward(self, batch: list[dict]) -> list[dict]:
        outputs = []
        for record in batch:
            image = read_image(record["file_name"], format="BGR")
            if self.image_transform is not None:
                image = self.image_transform(image, record)
            outputs.append({"instances": self.predictor(image)})
        return outputs


def _subset_name(dataset_name: str, records: list[dict]) -> str:
    return f"{dataset_name}@{len(records)}images"


def ground_truth_json(dataset_name: str, output_dir: str | Path, records: list[dict] | None = None) -> str:
    """The COCO json that ``evaluate_predictor(predictor, dataset_name, output_dir, records=...)``
    evaluated against: the dataset's own, or the one COCOEvaluator converted it to (always, for
    ``records``: the subset has no file of its own)."""
    if records is not None:
        return str(Path(output_dir, f"{_subset_name(dataset_name, records)}_coco_format.json"))
    return MetadataCatalog.get(dataset_name).json_file


@contextmanager
def subset_dataset(dataset_name: str, records: list[dict]):
    """A temporary catalog entry of ``records`` (some of ``dataset_name``'s), with its class
    metadata, removed on exit; yields its name."""
    subset = _subset_name(dataset_name, records)
    copied = {
        k: v
        for k, v in MetadataCatalog.get(dataset_name).as_dict().items()
        if k in ("thing_classes", "thing_dataset_id_to_contiguous_id")
    }
    DatasetCatalog.register(subset, lambda: records)
    MetadataCatalog.get(subset).set(**copied)
    try:
        yield subset
    finally:
        DatasetCatalog.remove(subset)
        MetadataCatalog.remove(subset)


def evaluate_predictor(
    predictor,
    dataset_name: str,
    output_dir: str | Path,
    *,
    records: list[dict] | None = None,
    image_transform: ImageTransform | None = None,
) -> dict:
    """``{"bbox": {"AP": ..., "AP50": ..., ...}}`` of ``predictor`` on ``dataset_name`` (or on
    ``records``, some of its images); detectron2's ``coco_instances_results.json`` goes to
    ``output_dir``."""
    if records is not None:
        with subset_dataset(dataset_name, records) as subset:
            return evaluate_predictor(predictor, subset, output_dir, image_transform=image_transform)
    dicts = DatasetCatalog.get(dataset_name)
    evaluator = COCOEvaluator(dataset_name, tasks=("bbox",), distributed=False, output_dir=str(output_dir))
    model = _PredictorOnDatasetDicts(predictor, image_transform)
    return inference_on_dataset(model, [[d] for d in dicts], evaluator)
