"""The two stages of the paper's detection schedule (appendix B), as library functions.

Stage 1 trains a ``ProposalNetwork`` and writes proposal files for every dataset of its config;
stage 2 trains Fast R-CNN on them, after checking that they cover every image. The tools are
thin wrappers over these.
"""

from __future__ import annotations

import logging
from pathlib import Path

from detectron2.evaluation import verify_results
from detectron2.utils import comm

from ..atomic_files import atomic_write_json
from ..checkpoint.safe_checkpointer import SafeDetectionCheckpointer
from ..layers.frozen_bn import fold_frozen_batchnorm
from .defaults import DetectionRecipe, trainer_from_yaml

__all__ = [
    "train_stage",
    "results_by_dataset",
    "write_proposal_recall",
]

logger = logging.getLogger("resnext_det")


def train_stage(cfg, resume: bool = False, eval_only: bool = False):
    """Train (or only evaluate) the model of ``cfg``; return (model, evaluation results)."""
    if eval_only:
        model = DetectionRecipe.build_model(cfg)
        SafeDetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=resume
        )
        if cfg.TEST.FOLD_FROZEN_BN:
            fold_frozen_batchnorm(model)
        return model, DetectionRecipe.test(cfg, model)
    trainer = trainer_from_yaml(cfg)
    trainer.resume_or_load(resume=resume)
    results = trainer.train()
    if cfg.TEST.EXPECTED_RESULTS and comm.is_main_process():
        verify_results(cfg, results)  # as detectron2's DefaultTrainer.train does
    return trainer.checkpointer.model, results


def results_by_dataset(test_sets, results) -> dict:
    """{test set: results}: detectron2's evaluation (``DefaultTrainer.test``, and the engine's
    evaluation hook) un-nests the results of a single test set; nest them again."""
    if results and len(test_sets) == 1 and test_sets[0] not in results:
        return {test_sets[0]: results}
    return dict(results or {})


def write_proposal_recall(results: dict, output_dir) -> dict:
    """Log AR@100 / AR@1000 of {test dataset: results} and write them to
    ``output_dir/proposal_recall.json``."""
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
