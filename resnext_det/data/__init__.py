"""Datasets: the generated demo data (COCO 2014 names come registered with detectron2)."""

from .demo_dataset import DEMO_CATEGORIES, generate_demo_dataset, register_demo_datasets

__all__ = ["DEMO_CATEGORIES", "generate_demo_dataset", "register_demo_datasets"]
