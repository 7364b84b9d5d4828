"""A YAML config's run: set-up (``setup_cfg``), its parts (``DetectionRecipe``, detectron2's
``DefaultTrainer`` pattern) and its trainer from the one engine (``trainer_from_yaml``)."""

from __future__ import annotations

import logging
import os

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer, default_setup, hooks
from detectron2.evaluation import COCOEvaluator
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from fvcore.nn.precise_bn import get_bn_modules

from .. import compat
from ..config import add_resnext_config, add_two_stage_config, check_moved_proposal_keys, uses_channels_last
from ..data.checked_mapper import build_checked_test_loader
from ..data.demo_dataset import register_named_demo_splits
from ..data.train_stream import build_resumable_train_loader
from ..data.voc import VOCBothMetricsEvaluator
from ..errors import ConfigError
from ..proposals.mapper import build_store_test_loader, build_store_train_loader
from .trainer import ResNeXtAMPTrainer, ResNeXtTrainer, RunParts, assemble_trainer
from .tta import TTASettings, with_test_augmentation
from .validation import validation_hooks

__all__ = ["DetectionRecipe", "apply_deterministic_mode", "merge_config", "setup_cfg", "trainer_from_yaml"]


def setup_cfg(
    config_file: str, opts: list[str] | None = None, args=None, extra=None, defaults=None
) -> CfgNode:
    """get_cfg -> add_resnext_config, add_two_stage_config -> merge file and ``KEY VALUE``
    overrides -> freeze.

    ``defaults(cfg)``, if given, sets values before the file and the overrides are merged (which
    then win over them); ``extra(cfg)`` may change the config after them, before it is frozen.
    The demo datasets are registered when the config names them (nothing is written: see
    ``prepare_demo_datasets``). With ``args`` (from ``default_argument_parser``) it also runs
    detectron2's ``default_setup``: output dir, logging, config dump, seed.
    """
    cfg = get_cfg()
    add_resnext_config(cfg)
    add_two_stage_config(cfg)
    if defaults is not None:
        defaults(cfg)
    merge_config(cfg, config_file, opts)
    register_named_demo_splits((*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST))
    if extra is not None:
        extra(cfg)
    cfg.freeze()
    if args is not None:
        default_setup(cfg, args)
        apply_deterministic_mode(cfg.get("DETERMINISTIC", False))
        logger = setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="resnext_det")
        if compat.APPLIED:
            logger.info("detectron2 compatibility fixes applied: %s", "; ".join(compat.APPLIED))
    return cfg


def merge_config(cfg: CfgNode, config_file: str, opts: list[str] | None = None) -> CfgNode:
    """Merge a YAML file and ``KEY VALUE`` overrides; a key that does not exist or a value of the
    wrong type is a ``ConfigError`` naming the file or the override (not yacs's bare KeyError)."""
    if config_file and not os.path.isfile(config_file):
        raise ConfigError(f"config file {config_file!r} does not exist")
    if str(config_file).endswith(".py"):
        raise ConfigError(
            f"config file {config_file} is a LazyConfig (.py): the detection tools take those; "
            "pretraining (tools/pretrain_imagenet.py, train_cifar.py) reads YAML configs only "
            "(configs/ImageNet, configs/CIFAR)"
        )
    try:
        if config_file:
            cfg.merge_from_file(config_file)
    except (KeyError, ValueError, AssertionError, TypeError) as e:
        raise ConfigError(f"config file {config_file}: {_yacs_message(e)}") from None
    opts = list(opts or [])
    if len(opts) % 2:
        raise ConfigError(f"command-line overrides must be KEY VALUE pairs; got an odd list {opts}")
    try:
        cfg.merge_from_list(opts)
    except (KeyError, ValueError, AssertionError, TypeError) as e:
        raise ConfigError(f"command-line override: {_yacs_message(e)}") from None
    if "PROPOSALS" in cfg:
        check_moved_proposal_keys(cfg)
    return cfg


def _yacs_message(error: Exception) -> str:
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    if "Non-existent" in text:
        text += " (a typo? resnext_det's keys are listed in resnext_det/config.py and detectron2's defaults)"
    return text


def apply_deterministic_mode(enabled: bool) -> None:
    """``DETERMINISTIC`` (``train.deterministic``): deterministic kernels (warn where none exists)
    and no cuDNN autotuning."""
    if not enabled:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS needs
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


logger = logging.getLogger("resnext_det")


def trainer_from_yaml(cfg: CfgNode) -> ResNeXtTrainer | ResNeXtAMPTrainer:
    """The engine's trainer (``engine.trainer``) for a YAML config: the parts built as
    ``DefaultTrainer`` builds them, in its order (the model's and the loader's random draws are
    the same), with the batch and schedule scaled to the processes (``SOLVER.REFERENCE_WORLD_SIZE``)."""
    cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
    model = DetectionRecipe.build_model(cfg)
    optimizer = DetectionRecipe.build_optimizer(cfg, model)
    loader = DetectionRecipe.build_train_loader(cfg)

    def precise_bn():
        if not (cfg.TEST.PRECISE_BN.ENABLED and get_bn_modules(model)):
            return None
        loader = DetectionRecipe.build_train_loader(cfg)
        return hooks.PreciseBN(cfg.TEST.EVAL_PERIOD, model, loader, cfg.TEST.PRECISE_BN.NUM_ITER)

    parts = RunParts(
        model=model,
        optimizer=optimizer,
        train_loader=loader,
        lr_scheduler=DetectionRecipe.build_lr_scheduler(cfg, optimizer),
        max_iter=cfg.SOLVER.MAX_ITER,
        output_dir=cfg.OUTPUT_DIR,
        weights=cfg.MODEL.WEIGHTS,
        checkpointing={"period": cfg.SOLVER.CHECKPOINT_PERIOD},
        eval_period=cfg.TEST.EVAL_PERIOD,
        evaluate=lambda: DetectionRecipe.test(cfg, model),
        seed=max(cfg.SEED, 0),
        amp=cfg.SOLVER.AMP.ENABLED,
        ddp={"broadcast_buffers": False},
        precise_bn=precise_bn,
        hooks_after_eval=lambda checkpointer: validation_hooks(cfg, model, checkpointer),
    )
    return assemble_trainer(parts)


class DetectionRecipe(DefaultTrainer):
    """How a YAML config's parts are built: detectron2's ``DefaultTrainer`` class methods
    (``build_optimizer``, ``build_lr_scheduler``, ``test``, ``auto_scale_workers``) with this
    project's model layout, loaders, evaluators and test-time augmentation. Never instantiated:
    the run itself is the engine's (``trainer_from_yaml``).

    * COCO AP (pycocotools) on ``DATASETS.TEST``; proposals from ``PROPOSALS.STORE_DIR`` if set.
    * An exact ``--resume`` needs the resumable data stream (``resnext_det.data.train_stream``).
    """

    def __init__(self, cfg):
        raise TypeError("DetectionRecipe only builds parts; train with engine.trainer_from_yaml(cfg)")

    @classmethod
    def build_model(cls, cfg):
        """detectron2's model, in channels_last where ``SOLVER.MEMORY_FORMAT`` says so (on the CPU
        by default): the weights' layout sets every convolution's output layout."""
        model = super().build_model(cfg)
        return model.to(memory_format=torch.channels_last) if uses_channels_last(cfg) else model

    @classmethod
    def build_train_loader(cls, cfg):
        if cfg.MODEL.LOAD_PROPOSALS and cfg.PROPOSALS.STORE_DIR:
            return build_store_train_loader(cfg)
        return build_resumable_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        if cfg.MODEL.LOAD_PROPOSALS and cfg.PROPOSALS.STORE_DIR:
            return build_store_test_loader(cfg, dataset_name)
        return build_checked_test_loader(cfg, dataset_name)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """detectron2's evaluation; with ``TEST.AUG.ENABLED``, of the model under test-time
        augmentation (``engine.tta.with_test_augmentation``)."""
        aug = TTASettings.from_yaml(cfg)
        if aug is not None:
            model = with_test_augmentation(model, aug, cfg.INPUT.FORMAT)
        return super().test(cfg, model, evaluators)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """COCO's AP, or both VOC metrics for a detector on a Pascal VOC folder (``--voc-dataset``;
        an RPN's proposal recall is COCOEvaluator's on any dataset, which it converts)."""
        voc = MetadataCatalog.get(dataset_name).get("evaluator_type", "coco") == "pascal_voc"
        if voc and cfg.MODEL.META_ARCHITECTURE != "ProposalNetwork":
            return VOCBothMetricsEvaluator(dataset_name)
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return COCOEvaluator(dataset_name, output_dir=output_folder)
