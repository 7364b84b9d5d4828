"""Datasets: the generated demo data (COCO 2014 names come registered with detectron2), and the
resumable training loader for LazyConfig files."""

from .demo_dataset import DEMO_CATEGORIES, generate_demo_dataset, register_demo_datasets
from .train_stream import build_resumable_detection_loader

__all__ = [
    "DEMO_CATEGORIES",
    "build_resumable_detection_loader",
    "generate_demo_dataset",
    "register_demo_datasets",
]
