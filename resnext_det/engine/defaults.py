"""Config set-up and trainer shared by the tools (detectron2's ``DefaultTrainer`` pattern)."""

from __future__ import annotations

import os

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.engine import DefaultTrainer, default_setup
from detectron2.evaluation import COCOEvaluator
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from .. import compat
from ..checkpoint import check_weights_fit
from ..config import add_resnext_config
from ..data.demo_dataset import DEMO_SPLITS, register_demo_datasets
from ..data.proposal_mapper import build_store_test_loader, build_store_train_loader

__all__ = ["ResNeXtTrainer", "setup_cfg"]


def setup_cfg(config_file: str, opts: list[str] | None = None, args=None, extra=None) -> CfgNode:
    """get_cfg -> add_resnext_config -> merge file and ``KEY VALUE`` overrides -> freeze.

    ``extra(cfg)``, if given, may change the config before it is frozen. The demo datasets are
    registered (and generated once) when the config names them. With ``args`` (from
    ``default_argument_parser``) it also runs detectron2's ``default_setup``: output dir,
    logging, config dump, seed.
    """
    cfg = get_cfg()
    add_resnext_config(cfg)
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"config file {config_file!r} does not exist")
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts or []))
    if any(name in DEMO_SPLITS for name in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST)):
        register_demo_datasets()
    if extra is not None:
        extra(cfg)
    cfg.freeze()
    if args is not None:
        default_setup(cfg, args)
        logger = setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="resnext_det")
        if compat.APPLIED:
            logger.info("detectron2 compatibility fixes applied: %s", "; ".join(compat.APPLIED))
    return cfg


class ResNeXtTrainer(DefaultTrainer):
    """``DefaultTrainer`` that evaluates ``DATASETS.TEST`` with COCO AP (pycocotools), refuses
    resnext_det weights that do not fit the model (instead of loading part of them), and reads
    precomputed proposals from ``PROPOSALS.STORE_DIR`` when it is set."""

    def resume_or_load(self, resume: bool = True):
        weights = self.cfg.MODEL.WEIGHTS
        if weights and os.path.isfile(weights) and not (resume and self.checkpointer.has_checkpoint()):
            checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
            if isinstance(checkpoint, dict) and checkpoint.get("__author__") == "resnext_det":
                check_weights_fit(self.checkpointer.model, checkpoint["model"], source=weights)
        return super().resume_or_load(resume=resume)

    @classmethod
    def build_train_loader(cls, cfg):
        if cfg.MODEL.LOAD_PROPOSALS and cfg.PROPOSALS.STORE_DIR:
            return build_store_train_loader(cfg)
        return super().build_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        if cfg.MODEL.LOAD_PROPOSALS and cfg.PROPOSALS.STORE_DIR:
            return build_store_test_loader(cfg, dataset_name)
        return super().build_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return COCOEvaluator(dataset_name, output_dir=output_folder)
