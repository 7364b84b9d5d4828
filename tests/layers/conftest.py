"""Fixtures for the layer tests."""

from __future__ import annotations

import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d


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


@pytest.fixture
def randomize_frozen_norms():
    return _randomize_frozen_norms
