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
from ..layers.frozen_bn import fold_frozen_batchnorm
from .defaults import ResNeXtTrainer

__all__ = [
    "train_stage",
    "report_proposal_recall",
    "results_by_dataset",
    "write_proposal_recall",
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


def report_proposal_recall(cfg, results: dict) -> dict:
    """Log AR@100 / AR@1000 per test set and write them to OUTPUT_DIR/proposal_recall.json."""
    return write_proposal_recall(results_by_dataset(cfg, results), cfg.OUTPUT_DIR)


def write_proposal_recall(results: dict, output_dir) -> dict:
    """``report_proposal_recall`` for {test dataset: results} (a LazyConfig run's)."""
    recall = {
        name: {k: v for k, v in r.get("box_proposals", {}).items() if k in ("AR@100", "AR@1000")}
        for name, r in results.items()
    }
    if not comm.is_main_process() or not recall:
        return recall
    for name, values in recall.items():
        logger.info("proposal recall on %s: %s", name, ", ".join(f"{k} {v:.1f}" for k, v in values.items()))
    atomic_write_json(Path(output_dir, "proposal_recall.json"), recall)
    return recall
