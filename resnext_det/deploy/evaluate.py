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
from torch.utils.data import DataLoader, Dataset

__all__ = ["evaluate_predictor", "ground_truth_json", "subset_dataset"]

#: ``image_transform(image_bgr, record) -> image_bgr``: the record says which image it is
ImageTransform = Callable[[np.ndarray, dict], np.ndarray]


class _RecordImages(Dataset):
    """Each record with its image read (and transformed: a corruption) as ``image_bgr``: the
    part of an evaluation that DataLoader workers can do while the model runs."""

    def __init__(self, records: list[dict], image_transform: ImageTransform | None):
        self.records, self.image_transform = records, image_transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        image = read_image(record["file_name"], format="BGR")
        if self.image_transform is not None:
            image = self.image_transform(image, record)
        return {**record, "image_bgr": image}


def _one_record_batches(batch: list[dict]) -> list[dict]:
    return batch


class _PredictorOnDatasetDicts(nn.Module):
    """The model ``inference_on_dataset`` expects: a batch of records (with their images) in,
    outputs out."""

    def __init__(self, predictor):
        super().__init__()
        self.predictor = predictor

    def forward(self, batch: list[dict]) -> list[dict]:
        return [{"instances": self.predictor(record["image_bgr"])} for record in batch]


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
    workers: int = 0,
) -> dict:
    """``{"bbox": {"AP": ..., "AP50": ..., ...}}`` of ``predictor`` on ``dataset_name`` (or on
    ``records``, some of its images); detectron2's ``coco_instances_results.json`` goes to
    ``output_dir``. ``workers`` processes read (and transform) the images ahead of the model
    (0: this process does), in the dataset's order: the results do not depend on them."""
    if records is not None:
        with subset_dataset(dataset_name, records) as subset:
            return evaluate_predictor(
                predictor, subset, output_dir, image_transform=image_transform, workers=workers
            )
    images = _RecordImages(DatasetCatalog.get(dataset_name), image_transform)
    loader = DataLoader(images, batch_size=1, num_workers=workers, collate_fn=_one_record_batches)
    evaluator = COCOEvaluator(dataset_name, tasks=("bbox",), distributed=False, output_dir=str(output_dir))
    return inference_on_dataset(_PredictorOnDatasetDicts(predictor), loader, evaluator)
