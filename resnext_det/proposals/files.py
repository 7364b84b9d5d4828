"""Precomputed proposal files: written by stage 1 (the RPN), read by stage 2 (Fast R-CNN).

The format is detectron2's (``detectron2.data.build.load_proposals_into_dataset``): a pickled
dict with

* ``"ids"``: the dataset's ``image_id`` of each entry (ints for COCO),
* ``"boxes"``: per image, a float32 ``(N, 4)`` array, XYXY in absolute pixels of the original
  image, sorted by decreasing objectness,
* ``"objectness_logits"``: per image, a float32 ``(N,)`` array (logits, not probabilities),
* ``"bbox_mode"``: ``int(BoxMode.XYXY_ABS)`` (= 0). Stored as a plain int, not the enum, so that
  unpickling needs no detectron2 import.

One file per dataset (``proposals_<dataset>.pkl``): detectron2 has no single trainval35k name,
so the paper's training set is ``coco_2014_train`` + ``coco_2014_valminusminival``, two files.
Files are written to a temporary name and renamed, and checked for coverage before stage 2 uses
them. A pickle can name any Python callable to run while it loads, so ``read_proposal_file``
unpickles with ``ProposalUnpickler``, which only rebuilds numpy arrays and detectron2's
``BoxMode``, and then checks the structure. detectron2's own loader (``DATASETS.PROPOSAL_FILES_*``)
has no such guard: load proposal pickles only from sources you trust, and prefer the store
(``proposal_store.py``, plain ``.npy`` arrays), which stage 1 writes too and stage 2 prefers.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.structures import BoxMode
from detectron2.utils import comm

from ..atomic_files import atomic_path
from ..errors import ProposalFileError
from ..safe_pickle import NUMPY_GLOBALS, RestrictedUnpickler

__all__ = [
    "ProposalFileError",
    "proposal_file_path",
    "collect_proposals",
    "write_proposal_file",
    "read_proposal_file",
    "check_ids_cover",
    "check_proposals_cover",
]


#: What a proposal pickle may rebuild: numpy arrays, dtypes and scalars, and the BoxMode enum.
_ALLOWED_GLOBALS = NUMPY_GLOBALS | {("detectron2.structures.boxes", "BoxMode")}


class ProposalUnpickler(RestrictedUnpickler):
    """Loads plain containers, numbers, strings and numpy arrays; refuses anything else."""

    def __init__(self, file, **kwargs):
        super().__init__(file, _ALLOWED_GLOBALS, "a proposal file holds only numpy arrays and ids", **kwargs)


def proposal_file_path(directory: str | os.PathLike, dataset_name: str) -> Path:
    return Path(directory) / f"proposals_{dataset_name}.pkl"


@torch.no_grad()
def collect_proposals(model, data_loader, post_nms_topk: int, pre_nms_topk: int) -> dict:
    """Run a ``ProposalNetwork`` over a loader; return this process's part of a proposal file.

    ``post_nms_topk`` / ``pre_nms_topk`` replace the RPN's test-time values while collecting
    (e.g. 2000 / 12000 for a training set, as Detectron's C4 baselines used). Boxes come back in
    the original image's coordinates, as detectron2's postprocessing rescales them.
    """
    rpn = model.proposal_generator
    saved = dict(rpn.post_nms_topk), dict(rpn.pre_nms_topk)
    rpn.post_nms_topk[False], rpn.pre_nms_topk[False] = post_nms_topk, pre_nms_topk
    was_training = model.training
    model.eval()
    ids, boxes, logits = [], [], []
    try:
        for inputs in data_loader:
            for record, output in zip(inputs, model(inputs), strict=True):
                proposals = output["proposals"]
                ids.append(record["image_id"])
                boxes.append(proposals.proposal_boxes.tensor.cpu().numpy().astype(np.float32))
                logits.append(proposals.objectness_logits.cpu().numpy().astype(np.float32))
    finally:
        rpn.post_nms_topk.update(saved[0])
        rpn.pre_nms_topk.update(saved[1])
        model.train(was_training)
    return {"ids": ids, "boxes": boxes, "objectness_logits": logits}


def gather_proposals(part: dict) -> dict | None:
    """Merge every process's part on the main process (None elsewhere)."""
    parts = comm.gather(part, dst=0)
    if not comm.is_main_process():
        return None
    merged = {"ids": [], "boxes": [], "objectness_logits": []}
    seen = set()
    for p in parts:
        for i, image_id in enumerate(p["ids"]):
            if image_id in seen:  # a distributed inference sampler never repeats; be safe anyway
                continue
            seen.add(image_id)
            for key in merged:
                merged[key].append(p[key][i])
    return merged


def write_proposal_file(path: str | os.PathLike, proposals: dict) -> Path:
    """Write atomically: a crash leaves either no file or a complete one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {**proposals, "bbox_mode": int(BoxMode.XYXY_ABS)}
    with atomic_path(path) as partial, open(partial, "wb") as f:
        pickle.dump(content, f, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def read_proposal_file(path: str | os.PathLike) -> dict:
    """Load and check the structure of a proposal file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ProposalFileError(f"proposal file {path} does not exist; run tools/train_rpn.py first")
    try:
        with open(path, "rb") as f:
            content = ProposalUnpickler(f, encoding="latin1").load()
    except Exception as e:
        raise ProposalFileError(
            f"{path} is not a readable proposal pickle: {type(e).__name__}: {e}"
        ) from None
    if not isinstance(content, dict) or not {"ids", "boxes", "objectness_logits"} <= set(content):
        keys = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise ProposalFileError(f"{path}: expected a dict with ids, boxes, objectness_logits; found {keys}")
    for key in ("ids", "boxes", "objectness_logits"):
        value = content[key]
        if not isinstance(value, list | tuple | np.ndarray) or getattr(value, "ndim", 1) == 0:
            raise ProposalFileError(f"{path}: {key!r} is a {type(value).__name__}, expected a list per image")
    lengths = {k: len(content[k]) for k in ("ids", "boxes", "objectness_logits")}
    if len(set(lengths.values())) != 1:
        raise ProposalFileError(f"{path}: ids, boxes and objectness_logits differ in length: {lengths}")
    for image_id, b, s in zip(content["ids"], content["boxes"], content["objectness_logits"], strict=True):
        if not isinstance(image_id, int | str | np.integer) or isinstance(image_id, bool):
            raise ProposalFileError(f"{path}: image id {image_id!r} is not an int or a string")
        if not all(isinstance(a, np.ndarray) and a.dtype.kind in "fiu" for a in (b, s)):
            raise ProposalFileError(
                f"{path}: image {image_id!r}: boxes and objectness_logits must be numeric numpy arrays, "
                f"found {type(b).__name__} and {type(s).__name__}"
            )
        if b.ndim != 2 or b.shape[1] != 4 or s.shape != (b.shape[0],):
            raise ProposalFileError(
                f"{path}: image {image_id!r} has boxes of shape {b.shape} and logits of shape "
                f"{s.shape}; expected (N, 4) and (N,)"
            )
        if not (np.isfinite(b).all() and np.isfinite(s).all()):
            raise ProposalFileError(f"{path}: image {image_id!r} has infinite or NaN boxes or logits")
    return content


def check_ids_cover(path: str | os.PathLike, dataset_name: str, has_image) -> None:
    """Every image of ``dataset_name`` must satisfy ``has_image(image_id)`` (proposals in ``path``,
    a pickle or a store), or ``ProposalFileError`` names the file and the first missing ids."""
    dataset_ids = [record["image_id"] for record in DatasetCatalog.get(dataset_name)]
    missing = [i for i in dataset_ids if not has_image(i)]
    if missing:
        raise ProposalFileError(
            f"{path} has no proposals for {len(missing)} of the {len(dataset_ids)} images of "
            f"{dataset_name} (e.g. image ids {missing[:5]}): it was written for another dataset or "
            "is incomplete; re-run tools/train_rpn.py with this dataset in its config"
        )


def check_proposals_cover(path: str | os.PathLike, dataset_name: str) -> dict:
    """Every image of ``dataset_name`` must have proposals in ``path``; return the file content."""
    content = read_proposal_file(path)
    available = {str(i) for i in content["ids"]}
    check_ids_cover(path, dataset_name, lambda image_id: str(image_id) in available)
    return content
