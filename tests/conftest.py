"""Shared fixtures. ``import resnext_det`` first: it prepares detectron2 and registers modules."""

from __future__ import annotations

import resnext_det  # noqa: F401

import pytest
import torch


@pytest.fixture(autouse=True)
def _fixed_seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """The generated demo dataset, written once per test session and registered."""
    from resnext_det.data import generate_demo_dataset, register_demo_datasets

    root = tmp_path_factory.mktemp("resnext_demo")
    generate_demo_dataset(root)
    register_demo_datasets(root)
    return root
