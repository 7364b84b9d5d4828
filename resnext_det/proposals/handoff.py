"""Stage 1 -> stage 2 (appendix B): write every dataset's proposals, check them, point stage 2 at them.

Stage 1 writes each dataset's proposals once, as the memory-mapped store (``store``). Stage 2
first checks that it exists, is well-formed and covers every image of its datasets, then reads it
through ``PROPOSALS.STORE_DIR``. detectron2's pickle (``files``) is a conversion away, both ways
(``tools/convert_proposals.py``), for other detectron2 code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from detectron2.utils import comm

from ..data.checked_mapper import build_checked_test_loader
from ..errors import ProposalFileError
from .files import (
    collect_proposals,
    gather_proposals,
    proposal_file_path,
)
from .store import ProposalStore, check_store_covers, proposal_store_path, write_proposal_store

__all__ = [
    "attach_proposal_files",
    "checked_proposal_files",
    "checked_stage1_outputs",
    "dump_proposals",
    "stage1_proposals",
    "write_stage1_proposals",
]

logger = logging.getLogger("resnext_det")


def dump_proposals(cfg, model, output_dir: str | None = None) -> dict[str, Path]:
    """Write every dataset's proposals in DATASETS.TRAIN and DATASETS.TEST as the memory-mapped
    store ``proposals_<dataset>/`` that stage 2 reads (bounded RAM, no pickle), with the RPN's own
    top-k. detectron2's pickle is one ``tools/convert_proposals.py`` away."""
    r = cfg.MODEL.RPN  # the RPN's own top-k, as it ran in training and in evaluation
    plan = [(name, r.POST_NMS_TOPK_TRAIN, r.PRE_NMS_TOPK_TRAIN) for name in cfg.DATASETS.TRAIN]
    plan += [(name, r.POST_NMS_TOPK_TEST, r.PRE_NMS_TOPK_TEST) for name in cfg.DATASETS.TEST]
    return write_stage1_proposals(
        model, plan, lambda name: build_checked_test_loader(cfg, name), output_dir or cfg.OUTPUT_DIR
    )


def write_stage1_proposals(
    model, plan: list[tuple[str, int, int]], test_loader: Callable[[str], object], output_dir
) -> dict[str, Path]:
    """``plan``: (dataset, post-NMS top-k, pre-NMS top-k) per dataset, the first entry of a dataset
    named twice wins; ``test_loader(dataset)``: its images at the test size. Writes each dataset's
    store into ``output_dir`` (on the main process; all processes run the model)."""
    output_dir = Path(output_dir)
    written = {}
    for name, post, pre in plan:
        if name in written:
            continue
        part = collect_proposals(model, test_loader(name), post, pre)
        merged = gather_proposals(part)
        path = proposal_store_path(output_dir, name)
        if comm.is_main_process():
            write_proposal_store(path, merged, dataset_name=name)
            logger.info("wrote %s/: %d images, top %d proposals each", path, len(merged["ids"]), post)
        comm.synchronize()
        written[name] = path
    return written


def checked_proposal_files(cfg, proposals_dir: str, test_only: bool = False) -> dict[str, str]:
    """{dataset: stage 1's store} for DATASETS.TRAIN and TEST (only TEST with ``test_only``),
    checked as ``checked_stage1_outputs`` does."""
    names = cfg.DATASETS.TEST if test_only else (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST)
    return checked_stage1_outputs(names, proposals_dir)


def checked_stage1_outputs(dataset_names, proposals_dir: str) -> dict[str, str]:
    """{dataset: stage 1's store ``proposals_<dataset>/``} for each dataset, after checking that
    each exists, is well-formed and covers every image. A detectron2 pickle in its place (from
    other detectron2 code, or an earlier version of tools/train_rpn.py) is named, with the command
    that converts it."""
    return {name: str(_checked_store(proposals_dir, name).path) for name in dict.fromkeys(dataset_names)}


def _checked_store(proposals_dir: str, dataset_name: str) -> ProposalStore:
    """Stage 1's store of ``dataset_name``, opened and checked to cover it (``checked_stage1_outputs``)."""
    store = proposal_store_path(proposals_dir, dataset_name)
    if not store.is_dir():
        pickle_file = proposal_file_path(proposals_dir, dataset_name)
        if pickle_file.is_file():
            raise ProposalFileError(
                f"{pickle_file} is detectron2's proposal pickle, but stage 2 reads stage 1's store "
                f"{store}/: convert it with python tools/convert_proposals.py {pickle_file}"
            )
        raise ProposalFileError(
            f"{store}/ does not exist; run tools/train_rpn.py first (its OUTPUT_DIR is --proposals)"
        )
    return check_store_covers(store, dataset_name)


def attach_proposal_files(cfg, proposals_dir: str, test_only: bool = False) -> None:
    """Point an unfrozen cfg at stage 1's checked stores (``PROPOSALS.STORE_DIR``)."""
    checked_proposal_files(cfg, proposals_dir, test_only)
    cfg.PROPOSALS.STORE_DIR = str(proposals_dir)


def stage1_proposals(
    proposals_dir: str, dataset_name: str
) -> Callable[[object], tuple[np.ndarray, np.ndarray]]:
    """``image_id -> (boxes XYXY_ABS (N, 4), objectness logits (N,))``, best first, for every image
    of ``dataset_name`` from stage 1's store (checked to cover the dataset, as for stage 2)."""
    lookup = _checked_store(proposals_dir, dataset_name).get  # opened once, and checked

    def best_first(image_id):
        boxes, logits = lookup(image_id)
        order = np.argsort(-logits, kind="stable")
        return boxes[order], logits[order]

    return best_first
