"""Checkpointers that survive being killed, never save diverged weights, and load only tensors.

detectron2's ``Checkpointer`` writes ``model_XXXXXXX.pth`` in place and then ``last_checkpoint``;
a job killed during the write leaves a truncated file that ``--resume`` then fails on (or a
``last_checkpoint`` naming a file that is not there). ``SafeCheckpointMixin`` changes four things:

* files are written under a temporary name and renamed (``resnext_det.atomic_files``), the
  ``last_checkpoint`` tag too, and only after its checkpoint is complete;
* ``--resume`` takes the newest *complete* checkpoint in the folder (``model_final`` first, then
  the highest iteration), checked by reading its zip directory and CRCs, whatever the tag says;
* a model with an infinite or NaN weight is not saved (``TrainingDivergedError``): the last good
  checkpoint stays the newest one;
* files written by ``torch.save`` (``.pth``, ``.pt``, or a converted file named ``.pkl``) load
  with ``torch.load(weights_only=True)``: tensors and plain containers only, no code runs.
  detectron2's ``.pkl`` model-zoo files (plain pickles) and pycls' ``.pyth`` files still load
  through detectron2; load those only from sources you trust.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from pathlib import Path

import torch
from detectron2.checkpoint import DetectionCheckpointer
from fvcore.common.checkpoint import Checkpointer

from ..atomic_files import atomic_torch_save, atomic_write_text
from ..errors import MissingFileError, TrainingDivergedError, WeightsMismatchError

__all__ = [
    "SafeCheckpointMixin",
    "SafeCheckpointer",
    "SafeDetectionCheckpointer",
    "complete_checkpoints",
    "is_complete_checkpoint",
    "newest_complete_checkpoint",
    "nonfinite_tensors",
    "read_checkpoint_file",
    "reads_as_torch_file",
]

_CHECKPOINT_NAME = re.compile(r"^model_(\d+|final)\.pth$")


#: (path, size, mtime) -> verdict: a resume asks several times, and each check reads the file.
_COMPLETE: dict[tuple[str, int, int], bool] = {}


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    """A ``torch.save`` file is a zip archive: truncation loses its central directory, and a
    corrupted member fails its CRC. Remembered per (path, size, modification time)."""
    try:
        stat = os.stat(path)
    except OSError:
        return False
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _COMPLETE:
        try:
            with zipfile.ZipFile(path) as archive:
                _COMPLETE[key] = archive.testzip() is None
        except (OSError, zipfile.BadZipFile, EOFError):
            _COMPLETE[key] = False
    return _COMPLETE[key]


def _newest_first(directory: str | os.PathLike, tagged: str) -> list[Path]:
    """Checkpoint files by recency: ``model_final.pth``, then ``model_<iteration>.pth`` by
    iteration; ``tagged`` (``last_checkpoint``'s name) breaks ties. Not yet checked."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    candidates = []
    for path in directory.iterdir():
        match = _CHECKPOINT_NAME.match(path.name)
        if match or path.name == tagged:
            order = math.inf if match and match[1] == "final" else int(match[1]) if match else -1
            candidates.append((order, path.name == tagged, path))
    candidates.sort(key=lambda c: (c[0], c[1]), reverse=True)
    return [path for _, _, path in candidates]


def complete_checkpoints(directory: str | os.PathLike, tagged: str = "") -> list[Path]:
    """Every complete checkpoint of a training folder, newest first (reads them all)."""
    return [path for path in _newest_first(directory, tagged) if is_complete_checkpoint(path)]


def newest_complete_checkpoint(directory: str | os.PathLike, tagged: str = "") -> Path | None:
    """The newest complete checkpoint; older ones are only read when newer ones are broken."""
    return next((p for p in _newest_first(directory, tagged) if is_complete_checkpoint(p)), None)


def nonfinite_tensors(state_dict: dict) -> list[str]:
    return [
        name
        for name, value in state_dict.items()
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]


#: Suffixes whose files detectron2 reads with its own readers, unless they are torch.save files.
_DETECTRON2_FORMATS = (".pkl", ".pyth")


def reads_as_torch_file(filename: str | os.PathLike) -> bool:
    """Whether ``read_checkpoint_file`` is the reader for this file: a ``torch.save`` file
    (a zip archive) whatever its name, or anything not named like detectron2's formats (a
    truncated ``.pth`` included, so that it gets ``read_checkpoint_file``'s message)."""
    return Path(filename).suffix not in _DETECTRON2_FORMATS or zipfile.is_zipfile(filename)


def read_checkpoint_file(filename: str | os.PathLike) -> dict:
    """A ``torch.save`` checkpoint as ``{"model": state dict, ...}``, read with
    ``weights_only=True``; a file that cannot be read that way is a ``WeightsMismatchError``.
    The one reader of checkpoint files: the checkpointers and the weight conversion use it."""
    if not os.path.isfile(filename):
        raise MissingFileError(f"weights file {filename} does not exist")
    try:
        loaded = torch.load(filename, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or a pickle with code in it
        raise WeightsMismatchError(
            f"{filename} cannot be read as a checkpoint ({type(e).__name__}: {str(e)[:200]}); "
            "is it complete, and a state dict saved by torch.save (not a pickled model object)?"
        ) from None
    if isinstance(loaded, dict) and "model" not in loaded:
        loaded = {"model": loaded}
    return loaded


class SafeCheckpointMixin:
    """Put before a ``fvcore`` ``Checkpointer`` subclass (see the module docstring)."""

    def save(self, name: str, tag: bool = True, **kwargs) -> None:
        """Save ``name.pth`` atomically; ``tag`` it as ``last_checkpoint`` (not for a side file
        such as ``model_best.pth``, which ``--resume`` must not start from)."""
        if not self.save_dir or not self.save_to_disk:
            return
        state = self.model.state_dict()
        bad = nonfinite_tensors(state)
        if bad:
            last = self.get_checkpoint_file() or "none yet"
            raise TrainingDivergedError(
                f"training diverged: {len(bad)} weight tensor(s) are infinite or NaN (first: "
                f"{', '.join(bad[:3])}), so checkpoint {name} was not saved; the last good checkpoint "
                f"is {last}. Lower SOLVER.BASE_LR (or add warm-up) and start again, or --resume from it"
            )
        data = {"model": state, **{key: obj.state_dict() for key, obj in self.checkpointables.items()}}
        data.update(kwargs)
        basename = f"{name}.pth"
        self.logger.info("Saving checkpoint to %s", os.path.join(self.save_dir, basename))
        atomic_torch_save(data, os.path.join(self.save_dir, basename))
        if tag:
            self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        atomic_write_text(os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename)

    def _tagged(self) -> str:
        try:
            return Path(self.save_dir, "last_checkpoint").read_text().strip()
        except OSError:
            return ""

    def has_checkpoint(self) -> bool:
        return bool(self.save_dir) and newest_complete_checkpoint(self.save_dir, self._tagged()) is not None

    def get_checkpoint_file(self) -> str:
        if not self.save_dir:
            return ""
        tagged = self._tagged()
        found = newest_complete_checkpoint(self.save_dir, tagged)
        if found is not None and tagged and found.name != tagged:
            self.logger.warning(
                "last_checkpoint names %s, but the newest complete checkpoint is %s: using it",
                os.path.join(self.save_dir, tagged),
                found,
            )
        return str(found) if found is not None else ""

    def _load_file(self, filename: str):
        # fvcore's hook for reading one file, which its subclasses override (detectron2's does).
        # Not calling detectron2's for torch files also avoids main's assertion that _load_file
        # runs inside load(); its `?matching_heuristics=True` suffix is not supported here.
        if reads_as_torch_file(filename):
            return read_checkpoint_file(filename)
        return super()._load_file(filename)


class SafeCheckpointer(SafeCheckpointMixin, Checkpointer):
    """fvcore's ``Checkpointer`` (classification pretraining), made safe."""


class SafeDetectionCheckpointer(SafeCheckpointMixin, DetectionCheckpointer):
    """detectron2's ``DetectionCheckpointer`` (both detection stages), made safe."""
