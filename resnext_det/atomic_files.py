"""Write a file so that a crash at any moment leaves either the old file or the complete new one.

A job killed mid-write (preemption, the OOM killer, a full disk) must not leave a truncated
checkpoint or metrics file under the name the next stage reads. Everything a stage writes goes
to ``<name>.partial`` in the same directory, is flushed to disk, and is then renamed over the
final name: a rename within one file system is atomic (POSIX ``rename``, ``os.replace``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

__all__ = ["atomic_folder", "atomic_path", "atomic_write_json", "atomic_write_text", "atomic_torch_save"]

PARTIAL_SUFFIX = ".partial"


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    try:
        yield partial
        with open(partial, "rb+") as f:  # the data must be on disk before the name points to it
            os.fsync(f.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new, empty hidden folder beside ``path`` to fill; on success it replaces ``path``
    (an existing folder or file there is removed first), on error it is removed and ``path`` is
    left as it was. (A folder cannot replace another in one rename: between the removal and the
    rename there is no ``path``; proposals/store.py swaps a symlink where that matters.)"""
    path = Path(path)
    partial = path.with_name(f".{path.name}{PARTIAL_SUFFIX}-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        os.replace(partial, path)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as partial:
        partial.write_text(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj, indent: int = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent))


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    with atomic_path(path) as partial:
        torch.save(obj, partial)
    return Path(path)
