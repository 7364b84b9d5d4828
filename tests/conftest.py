"""Shared fixtures. ``import resnext_det`` first: it prepares detectron2 and registers modules."""

from __future__ import annotations

import resnext_det  # noqa: F401

import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d


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


def _randomize_frozen_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every FrozenBN a non-identity affine map, as a pretrained checkpoint would: with the
    initial identity norms, folding them would test nothing."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, FrozenBatchNorm2d):
            n = module.num_features
            module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


@pytest.fixture(scope="session")
def randomize_frozen_norms():
    return _randomize_frozen_norms
