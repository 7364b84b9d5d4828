"""Reproducible randomness, in one place: how seeds are derived, and how RNG states are kept.

Exact ``--resume`` (detection and pretraining) rests on every random draw being a function of
(SEED, position, rank): ``mix_seed`` derives one seed from such a tuple, the same on every
machine; ``RNGState`` is the checkpointable state of Python's, numpy's and torch's generators;
``seeded_rngs`` seeds them for a block and restores them afterwards. Detection and pretraining
both derive their seeds with ``mix_seed``.
"""

from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["RNGState", "mix_seed", "seed_all", "seeded_rngs"]


def mix_seed(*parts: int) -> int:
    """One 31-bit seed from several integers (a fixed polynomial hash: the same everywhere)."""
    seed = 0
    for part in parts:
        seed = (seed * 1_000_003 + int(part) + 0x9E3779B9) % (2**31 - 1)
    return seed


def seed_all(seed: int, cuda: bool = True) -> None:
    """Seed Python's, numpy's and torch's generators (torch's CUDA ones too, unless ``cuda`` is False)."""
    random.seed(seed)
    np.random.seed(seed)
    if cuda:
        torch.manual_seed(seed)
    else:
        torch.random.default_generator.manual_seed(seed)


class RNGState:
    """A checkpointable bundle of the Python, numpy and torch (CPU) RNG states."""

    def state_dict(self) -> dict:
        _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
        return {
            "python": random.getstate(),
            "numpy": torch.from_numpy(keys.astype(np.int64)),
            "numpy_pos": pos,
            "numpy_gauss": (has_gauss, cached_gaussian),  # numpy's cached second normal draw
            "torch": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        random.setstate(state["python"])
        has_gauss, cached_gaussian = state.get("numpy_gauss", (0, 0.0))  # older checkpoints: none
        keys = state["numpy"].numpy().astype(np.uint32)
        np.random.set_state(("MT19937", keys, state["numpy_pos"], has_gauss, cached_gaussian))
        torch.set_rng_state(state["torch"])


@contextmanager
def seeded_rngs(seed: int):
    """Seed Python's, numpy's and torch's CPU generators; restore their states afterwards."""
    saved = RNGState().state_dict()
    seed_all(seed, cuda=False)  # CUDA generators are left alone
    try:
        yield
    finally:
        RNGState().load_state_dict(saved)
