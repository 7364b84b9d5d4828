"""``MODEL.RESNEXT.NORM "SyncBN"`` where PyTorch's SyncBatchNorm cannot run.

PyTorch's ``nn.SyncBatchNorm`` (detectron2's "SyncBN") needs GPUs; on a CPU it refuses to run,
which is how a config written for 8 GPUs fails on a laptop (detectron2#3972, #2174). The model
builders therefore resolve the norm once, when they build, from where they will run:

- several processes on GPUs: "SyncBN", as asked;
- several processes on CPUs (gloo): detectron2's ``NaiveSyncBatchNorm`` ("naiveSyncBN"), which
  synchronises the same batch statistics with ``all_reduce`` and works over gloo;
- one process: plain "BN", which computes exactly what SyncBN would over one process's batch.

Each fallback is announced once per process with a warning; the parameters and buffers are
BatchNorm's in every case, so checkpoints move freely between the three.
"""

from __future__ import annotations

import warnings

import torch
from torch import distributed as dist

__all__ = ["resolve_norm"]

_announced: set[tuple[str, int]] = set()


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def resolve_norm(norm, device: str | torch.device = "cpu"):
    """The norm to build for ``norm`` (a detectron2 norm name or callable) on ``device``."""
    if norm != "SyncBN":
        return norm
    world, kind = _world_size(), torch.device(device).type
    if world > 1 and kind == "cuda":
        return norm
    resolved = "naiveSyncBN" if world > 1 else "BN"
    if (resolved, world) not in _announced:
        _announced.add((resolved, world))
        how = (
            "detectron2's NaiveSyncBatchNorm (the same statistics, all-reduced over gloo)"
            if world > 1
            else "BatchNorm (with one process, SyncBN's statistics are this process's batch)"
        )
        warnings.warn(
            f"MODEL.RESNEXT.NORM 'SyncBN' needs several GPU processes; on {world} {kind} process(es) it "
            f"runs as {how}",
            stacklevel=2,
        )
    return resolved
