"""A memory-mapped proposal store: stage 2's RAM stays bounded whatever the dataset and worker count.

detectron2's precomputed-proposal path (``load_proposals_into_dataset``) unpickles a whole file
into the dataset dicts: for COCO trainval35k at 2000 proposals per image that is about 4.7 GB,
held by the main process and carried into every loader worker (and pickled whole when workers
are spawned). The store keeps the same numbers on disk as plain ``.npy`` arrays and reads one
image's rows in the data mapper, through ``np.load(mmap_mode="r")``: resident memory is the
index plus the pages the current batches touch, shared by the OS page cache between workers.

Layout of ``proposals_<dataset>/`` (written next to the detectron2 pickle by tools/train_rpn.py;
a symlink to the versioned folder ``proposals_<dataset>.v<time>/``, swapped atomically on rewrite):

* ``boxes.npy``: float32 ``(total, 4)``, every image's boxes one after another, XYXY in absolute
  pixels of the original image, each image's rows sorted by decreasing objectness;
* ``objectness_logits.npy``: float32 ``(total,)``;
* ``ids.npy``: the image ids, sorted (int64, or unicode strings for datasets with string ids);
* ``offsets.npy``: int64 ``(images + 1,)``: the rows of ``ids[i]`` are ``offsets[i]:offsets[i+1]``;
* ``meta.json``: format name and version, ``bbox_mode``, the dataset name and image count.

Plain arrays, loaded with ``allow_pickle=False``: unlike the pickle, opening a store runs no code.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from detectron2.structures import BoxMode

from .files import ProposalFileError, check_ids_cover

__all__ = [
    "ProposalStore",
    "check_store_covers",
    "proposal_store_path",
    "write_proposal_store",
]

_FORMAT = "resnext_det.proposal_store"
_VERSION = 1
_ARRAYS = ("boxes", "objectness_logits", "ids", "offsets")


def proposal_store_path(directory: str | os.PathLike, dataset_name: str) -> Path:
    return Path(directory) / f"proposals_{dataset_name}"


def write_proposal_store(path: str | os.PathLike, proposals: dict, dataset_name: str = "") -> Path:
    """Write ``proposals`` (``ids``/``boxes``/``objectness_logits`` lists, as ``collect_proposals``
    returns them) as a store at ``path``; built under a temporary name, then renamed into place."""
    path = Path(path)
    ids = list(proposals["ids"])
    if len(set(map(str, ids))) != len(ids):
        raise ProposalFileError(f"{path}: duplicate image ids in the proposals to write")
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    boxes = [np.asarray(proposals["boxes"][i], np.float32).reshape(-1, 4) for i in order]
    logits = [np.asarray(proposals["objectness_logits"][i], np.float32).reshape(-1) for i in order]
    counts = [len(b) for b in boxes]
    arrays = {
        "boxes": np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32),
        "objectness_logits": np.concatenate(logits) if logits else np.zeros((0,), np.float32),
        "ids": np.asarray([ids[i] for i in order]),
        "offsets": np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64),
    }
    if arrays["ids"].dtype.kind not in "iuU":
        arrays["ids"] = arrays["ids"].astype(str)
    meta = {
        "format": _FORMAT,
        "version": _VERSION,
        "bbox_mode": int(BoxMode.XYXY_ABS),
        "dataset": dataset_name,
        "num_images": len(ids),
    }
    # The arrays go into a new versioned folder; ``path`` is a symlink to it, swapped in one
    # rename. A directory cannot replace another in one rename, a symlink can: a kill at any
    # moment leaves ``path`` naming either the old complete store or the new one.
    version = path.with_name(f"{path.name}.v{time.time_ns()}")
    partial = version.with_name(version.name + ".partial")
    partial.mkdir(parents=True)
    for name, array in arrays.items():
        np.save(partial / f"{name}.npy", array, allow_pickle=False)
    (partial / "meta.json").write_text(json.dumps(meta, indent=1))
    for file in partial.iterdir():
        with open(file, "rb") as f:
            os.fsync(f.fileno())
    os.replace(partial, version)
    old = path.resolve() if path.is_symlink() else None
    if path.is_dir() and not path.is_symlink():  # a store written before stores were versioned
        shutil.rmtree(path)
    link = path.with_name(path.name + ".link.partial")
    link.unlink(missing_ok=True)
    os.symlink(version.name, link)
    os.replace(link, path)
    if old is not None and old != version.resolve():
        shutil.rmtree(old, ignore_errors=True)
    return path


class ProposalStore:
    """Read-only access to one store; picklable (workers reopen the memory maps themselves).

    ``get(image_id)`` returns that image's (boxes, logits) as small in-memory copies. Opening checks
    the structure and raises ``ProposalFileError`` naming the file and what was expected.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._arrays: dict[str, np.ndarray] | None = None
        self.meta = self._read_meta()
        self._open()

    def _read_meta(self) -> dict:
        meta_file = self.path / "meta.json"
        if not meta_file.is_file():
            raise ProposalFileError(
                f"{meta_file} not found: {self.path} is not a proposal store written by tools/train_rpn.py"
            )
        try:
            meta = json.loads(meta_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ProposalFileError(f"{meta_file} is not valid JSON: {e}") from None
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise ProposalFileError(f"{meta_file}: expected format {_FORMAT!r}, found {meta!r:.200}")
        if meta.get("version") != _VERSION:
            raise ProposalFileError(
                f"{meta_file}: store version {meta.get('version')!r}, this resnext_det reads version "
                f"{_VERSION}; re-run tools/train_rpn.py --eval-only to rewrite it"
            )
        if meta.get("bbox_mode") != int(BoxMode.XYXY_ABS):
            raise ProposalFileError(f"{meta_file}: bbox_mode must be {int(BoxMode.XYXY_ABS)} (XYXY_ABS)")
        return meta

    def _open(self) -> dict[str, np.ndarray]:
        if self._arrays is not None:
            return self._arrays
        arrays = {}
        for name in _ARRAYS:
            file = self.path / f"{name}.npy"
            try:
                arrays[name] = np.load(file, mmap_mode="r", allow_pickle=False)
            except FileNotFoundError:
                raise ProposalFileError(f"{file} is missing: the store is incomplete") from None
            except (ValueError, OSError, EOFError) as e:  # truncated, not .npy, or a pickled array
                raise ProposalFileError(f"{file} is not a readable .npy array: {e}") from None
        boxes, logits, ids, offsets = (arrays[n] for n in _ARRAYS)
        total = len(logits)
        problems = []
        if boxes.dtype != np.float32 or boxes.shape != (total, 4):
            problems.append(f"boxes.npy is {boxes.dtype} {boxes.shape}, expected float32 ({total}, 4)")
        if logits.dtype != np.float32 or logits.ndim != 1:
            problems.append(f"objectness_logits.npy is {logits.dtype} {logits.shape}, expected float32 (N,)")
        if ids.ndim != 1 or ids.dtype.kind not in "iuU":
            problems.append(f"ids.npy is {ids.dtype} {ids.shape}, expected integers or strings (images,)")
        if offsets.shape != (len(ids) + 1,) or offsets.dtype != np.int64:
            problems.append(
                f"offsets.npy is {offsets.dtype} {offsets.shape}, expected int64 ({len(ids) + 1},)"
            )
        elif len(offsets) and (offsets[0] != 0 or offsets[-1] != total or np.any(np.diff(offsets) < 0)):
            problems.append(f"offsets.npy must rise from 0 to {total} (the number of boxes)")
        if not problems and len(ids) > 1 and not np.all(ids[1:] > ids[:-1]):
            problems.append("ids.npy must be sorted without duplicates")
        if not problems and len(ids) != self.meta.get("num_images"):
            problems.append(f"meta.json says {self.meta.get('num_images')} images, ids.npy has {len(ids)}")
        if problems:
            raise ProposalFileError(f"{self.path} is not a valid proposal store: " + "; ".join(problems))
        self._arrays = arrays
        return arrays

    def __getstate__(self):
        return {"path": self.path, "meta": self.meta, "_arrays": None}  # memory maps are reopened

    def __len__(self) -> int:
        return len(self._open()["ids"])

    def ids(self) -> np.ndarray:
        return self._open()["ids"]

    def _row(self, image_id):
        ids = self._open()["ids"]
        key = str(image_id) if ids.dtype.kind == "U" else image_id
        try:
            row = int(np.searchsorted(ids, key))
        except (TypeError, ValueError):  # e.g. a string id looked up in integer ids
            return None
        return row if row < len(ids) and ids[row] == key else None

    def __contains__(self, image_id) -> bool:
        return self._row(image_id) is not None

    def find(self, image_id) -> tuple[np.ndarray, np.ndarray] | None:
        """(boxes float32 (N, 4) XYXY_ABS, objectness logits float32 (N,)) of one image, or None."""
        row = self._row(image_id)
        if row is None:
            return None
        arrays = self._open()
        start, stop = int(arrays["offsets"][row]), int(arrays["offsets"][row + 1])
        return np.array(arrays["boxes"][start:stop]), np.array(arrays["objectness_logits"][start:stop])

    def get(self, image_id) -> tuple[np.ndarray, np.ndarray]:
        """Like ``find``, but an image without proposals is a ``KeyError``."""
        found = self.find(image_id)
        if found is None:
            raise KeyError(f"image id {image_id!r} has no proposals in {self.path}")
        return found

    def missing(self, image_ids) -> list:
        """The ids among ``image_ids`` that the store lacks."""
        return [i for i in image_ids if i not in self]


def check_store_covers(path: str | os.PathLike, dataset_name: str) -> ProposalStore:
    """Every image of ``dataset_name`` must have proposals in the store; return it, opened."""
    store = ProposalStore(path)
    check_ids_cover(path, dataset_name, store.__contains__)
    return store
