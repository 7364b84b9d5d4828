"""The two stages of the paper's detection schedule (appendix B), as library functions.

Stage 1 trains a ``ProposalNetwork`` and writes proposal files for every dataset of its config;
stage 2 trains Fast R-CNN on them, after checking that they cover every image. The tools are
thin wrappers over these.
"""

from __future__ import annotations

import logging
from pathlib import Path

from detectron2.utils import comm

from ..atomic_files import atomic_write_json
from ..checkpoint.safe_checkpointer import SafeDetectionCheckpointer
from ..data.coco import check_dataset_files, register_datasets_from_args
from ..data.proposal_store import check_store_covers, proposal_store_path, write_proposal_store
from ..data.proposals import (
    check_proposals_cover,
    collect_proposals,
    gather_proposals,
    proposal_file_path,
    write_proposal_file,
)
from ..modeling.fold import fold_frozen_batchnorm
from .cli import check_device
from .defaults import ResNeXtTrainer, setup_cfg
from .output_dir import prepare_output_dir

__all__ = [
    "train_stage",
    "dump_proposals",
    "attach_proposal_files",
    "checked_proposal_files",
    "report_proposal_recall",
    "results_by_dataset",
    "preflight",
]

logger = logging.getLogger("resnext_det")


def _unwrap(model):
    return getattr(model, "module", model)


def train_stage(cfg, resume: bool = False, eval_only: bool = False):
    """Train (or only evaluate) the model of ``cfg``; return (model, evaluation results)."""
    if eval_only:
        model = ResNeXtTrainer.build_model(cfg)
        SafeDetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=resume
        )
        if cfg.TEST.FOLD_FROZEN_BN:
            fold_frozen_batchnorm(model)
        return model, ResNeXtTrainer.test(cfg, model)
    trainer = ResNeXtTrainer(cfg)
    trainer.resume_or_load(resume=resume)
    trainer.train()
    # DefaultTrainer's EvalHook keeps the final evaluation in this private attribute on v0.6 and
    # main alike (train() returns it only with TEST.EXPECTED_RESULTS); the tool tests read it
    # back on both builds, and evaluating again would cost a second pass over DATASETS.TEST.
    return _unwrap(trainer.model), getattr(trainer, "_last_eval_results", {})


def results_by_dataset(cfg, results) -> dict:
    """DefaultTrainer.test un-nests the results of a single test set; nest them again."""
    if results and len(cfg.DATASETS.TEST) == 1 and cfg.DATASETS.TEST[0] not in results:
        return {cfg.DATASETS.TEST[0]: results}
    return dict(results or {})


def dump_proposals(cfg, model, output_dir: str | None = None) -> dict[str, Path]:
    """Write every dataset's proposals in DATASETS.TRAIN and DATASETS.TEST twice: as detectron2's
    ``proposals_<dataset>.pkl`` (for any detectron2 code) and as the memory-mapped store
    ``proposals_<dataset>/`` that stage 2 prefers (bounded RAM, no pickle)."""
    output_dir = Path(output_dir or cfg.OUTPUT_DIR)
    p = cfg.PROPOSALS
    plan = [(name, p.TRAIN_POST_NMS_TOPK, p.TRAIN_PRE_NMS_TOPK) for name in cfg.DATASETS.TRAIN]
    plan += [(name, p.TEST_POST_NMS_TOPK, p.TEST_PRE_NMS_TOPK) for name in cfg.DATASETS.TEST]
    written = {}
    for name, post, pre in plan:
        if name in written:
            continue
        part = collect_proposals(model, ResNeXtTrainer.build_test_loader(cfg, name), post, pre)
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


def report_proposal_recall(cfg, results: dict) -> dict:
    """Log AR@100 / AR@1000 per test set and write them to OUTPUT_DIR/proposal_recall.json."""
    recall = {
        name: {k: v for k, v in r.get("box_proposals", {}).items() if k in ("AR@100", "AR@1000")}
        for name, r in results_by_dataset(cfg, results).items()
    }
    if not comm.is_main_process() or not recall:
        return recall
    for name, values in recall.items():
        logger.info("proposal recall on %s: %s", name, ", ".join(f"{k} {v:.1f}" for k, v in values.items()))
    atomic_write_json(Path(cfg.OUTPUT_DIR, "proposal_recall.json"), recall)
    return recall


def checked_proposal_files(cfg, proposals_dir: str, test_only: bool = False) -> dict[str, str]:
    """{dataset: stage 1's store or file} for DATASETS.TRAIN and TEST (only TEST with
    ``test_only``), after checking that each exists, is well-formed and covers every image.

    Stores (``proposals_<dataset>/``) are used when stage 1 wrote one for every dataset, else
    detectron2's pickles (``proposals_<dataset>.pkl``, e.g. from other detectron2 code).
    """
    names = list(dict.fromkeys(cfg.DATASETS.TEST if test_only else (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST)))
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


def preflight(args, proposals_dir: str | None = None, test_only: bool = False):
    """Check a tool's inputs in the launching process, before any worker starts.

    Registers ``--dataset``s, loads the config (generating the demo data once, if named), checks
    the device, every dataset's files and, with ``proposals_dir``, stage 1's proposal files. A
    training run (a tool with ``--overwrite``, without ``--eval-only``) also checks its
    OUTPUT_DIR (``prepare_output_dir``). Returns the cfg; user errors are ``ResNeXtDetError``s.
    """
    register_datasets_from_args(args)
    cfg = setup_cfg(args.config_file, args.opts)
    check_device(cfg.MODEL.DEVICE)
    check_dataset_files(cfg)
    if proposals_dir is not None:
        checked_proposal_files(cfg, proposals_dir, test_only)
    if hasattr(args, "overwrite") and not args.eval_only:
        prepare_output_dir(cfg.OUTPUT_DIR, args.resume, args.overwrite)
    return cfg
