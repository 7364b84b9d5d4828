"""detectron2's proposal pickle <-> the store stage 2 reads, both ways (``tools/convert_proposals.py``).

Stage 1 writes one format, the memory-mapped store. Other detectron2 code (its
``DATASETS.PROPOSAL_FILES_*``, Detectron's released proposals converted to detectron2) reads and
writes the pickle; these two functions move the same numbers between them, unchanged (float32
boxes XYXY in the original image's pixels, objectness logits, best first).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import OutputDirError, ProposalFileError
from .files import read_proposal_file, write_proposal_file
from .store import ProposalStore, write_proposal_store

__all__ = ["dataset_of", "pickle_to_store", "store_to_pickle"]


def dataset_of(path: str | os.PathLike) -> str:
    """The dataset a stage-1 output is named after (``proposals_<dataset>.pkl`` or ``.../``)."""
    name = Path(path).name.removesuffix(".pkl")
    if not name.startswith("proposals_") or name == "proposals_":
        raise ProposalFileError(
            f"{path}: cannot tell its dataset from the name; expected proposals_<dataset>.pkl or "
            "proposals_<dataset>/ (or give --dataset)"
        )
    return name.removeprefix("proposals_")


def _refuse_existing(output: Path, overwrite: bool) -> None:
    if output.exists() and not overwrite:
        raise OutputDirError(f"{output} exists; pass --overwrite to replace it, or choose another output")


def pickle_to_store(pickle_file, store_dir, dataset_name: str, overwrite: bool = False) -> Path:
    """detectron2's pickle (read with the restricted unpickler, its structure checked) as a store."""
    _refuse_existing(Path(store_dir), overwrite)
    return write_proposal_store(store_dir, read_proposal_file(pickle_file), dataset_name=dataset_name)


def store_to_pickle(store_dir, pickle_file, overwrite: bool = False) -> Path:
    """A store as detectron2's precomputed-proposal pickle (``load_proposals_into_dataset``'s)."""
    _refuse_existing(Path(pickle_file), overwrite)
    store = ProposalStore(store_dir)
    ids = [i.item() for i in store.ids()]
    pairs = [store.get(i) for i in ids]
    content = {"ids": ids, "boxes": [b for b, _ in pairs], "objectness_logits": [s for _, s in pairs]}
    return write_proposal_file(pickle_file, content)
