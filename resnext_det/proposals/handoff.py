"""Stage 1 -> stage 2 (appendix B): write every dataset's proposals, check them, point stage 2 at them.

Stage 1 writes each dataset's proposals twice: detectron2's pickle (``files``, for any
detectron2 code) and the memory-mapped store (``store``) that stage 2 prefers. Stage 2 first
checks that what it will read exists, is well-formed and covers every image of its datasets,
then reads it through ``PROPOSALS.STORE_DIR`` (stores) or ``DATASETS.PROPOSAL_FILES_*`` (pickles).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from detectron2.utils import comm

from ..data.checked_mapper import build_checked_test_loader
from .files import (
    check_proposals_cover,
    collect_proposals,
    gather_proposals,
    proposal_file_path,
    write_proposal_file,
)
from .store import check_store_covers, proposal_store_path, write_proposal_store

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
    """Write every dataset's proposals in DATASETS.TRAIN and DATASETS.TEST twice: as detectron2's
    ``proposals_<dataset>.pkl`` (for any detectron2 code) and as the memory-mapped store
    ``proposals_<dataset>/`` that stage 2 prefers (bounded RAM, no pickle)."""
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
    pickle and store into ``output_dir`` (on the main process; all processes run the model)."""
    output_dir = Path(output_dir)
    written = {}
    for name, post, pre in plan:
        if name in written:
            continue
        part = collect_proposals(model, test_loader(name), post, pre)
        merged = gather_proposals(part)
        path = proposal_file_path(output_dir, name)
        if comm.is_main_process():
            write_proposal_file(path, merged)
            store = write_proposal_store(proposal_store_path(output_dir, name), merged, dataset_name=name)
            logger.info(
                "wrote %s and %s/: %d images, top %d proposals each", path, store, len(merged["ids"]), post
            )
        comm.synchronize()
        written[name] = path
    return written


def checked_proposal_files(cfg, proposals_dir: str, test_only: bool = False) -> dict[str, str]:
    """{dataset: stage 1's store or file} for DATASETS.TRAIN and TEST (only TEST with
    ``test_only``), checked as ``checked_stage1_outputs`` does."""
    names = cfg.DATASETS.TEST if test_only else (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST)
    return checked_stage1_outputs(names, proposals_dir)


def checked_stage1_outputs(dataset_names, proposals_dir: str) -> dict[str, str]:
    """{dataset: stage 1's store or file} for each dataset, after checking that each exists, is
    well-formed and covers every image.

    Stores (``proposals_<dataset>/``) are used when stage 1 wrote one for every dataset, else
    detectron2's pickles (``proposals_<dataset>.pkl``, e.g. from other detectron2 code).
    """
    names = list(dict.fromkeys(dataset_names))
    if all(proposal_store_path(proposals_dir, n).is_dir() for n in names):
        for name in names:
            check_store_covers(proposal_store_path(proposals_dir, name), name)
        return {name: str(proposal_store_path(proposals_dir, name)) for name in names}
    files = {}
    for name in names:
        path = proposal_file_path(proposals_dir, name)
        check_proposals_cover(path, name)
        files[name] = str(path)
    return files


def attach_proposal_files(cfg, proposals_dir: str, test_only: bool = False) -> None:
    """Point an unfrozen cfg at stage 1's checked proposals: ``PROPOSALS.STORE_DIR`` for stores,
    else DATASETS.PROPOSAL_FILES_TRAIN/TEST for detectron2 pickles."""
    files = checked_proposal_files(cfg, proposals_dir, test_only)
    if all(Path(f).is_dir() for f in files.values()):
        cfg.PROPOSALS.STORE_DIR = str(proposals_dir)
        return
    if not test_only:
        cfg.DATASETS.PROPOSAL_FILES_TRAIN = tuple(files[n] for n in cfg.DATASETS.TRAIN)
    cfg.DATASETS.PROPOSAL_FILES_TEST = tuple(files[n] for n in cfg.DATASETS.TEST)


def stage1_proposals(
    proposals_dir: str, dataset_name: str
) -> Callable[[object], tuple[np.ndarray, np.ndarray]]:
    """``image_id -> (boxes XYXY_ABS (N, 4), objectness logits (N,))``, best first, for every image
    of ``dataset_name`` from stage 1's output: its store, else its pickle (checked to cover the
    dataset, as for stage 2)."""
    store_path = proposal_store_path(proposals_dir, dataset_name)
    if store_path.is_dir():
        store = check_store_covers(store_path, dataset_name)
        lookup = store.get
    else:
        content = check_proposals_cover(proposal_file_path(proposals_dir, dataset_name), dataset_name)
        by_id = {
            str(i): (np.asarray(b), np.asarray(s))
            for i, b, s in zip(content["ids"], content["boxes"], content["objectness_logits"], strict=True)
        }

        def lookup(image_id):
            return by_id[str(image_id)]

    def best_first(image_id):
        boxes, logits = lookup(image_id)
        order = np.argsort(-logits, kind="stable")
        return boxes[order], logits[order]

    return best_first
