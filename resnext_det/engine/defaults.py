"""Config set-up and trainer shared by the tools (detectron2's ``DefaultTrainer`` pattern)."""

from __future__ import annotations

import logging
import os
import weakref

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer, TrainerBase, default_setup, hooks
from detectron2.evaluation import COCOEvaluator
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from .. import compat
from ..checkpoint import check_weights_file_fits
from ..checkpoint.safe_checkpointer import SafeDetectionCheckpointer
from ..config import add_resnext_config, add_two_stage_config, uses_channels_last
from ..data.checked_mapper import build_checked_test_loader
from ..data.demo_dataset import DEMO_SPLITS, register_demo_datasets
from ..data.train_stream import ResumableTrainLoader, build_resumable_train_loader
from ..data.voc import VOCBothMetricsEvaluator
from ..errors import ConfigError, diverged
from ..proposals.mapper import build_store_test_loader, build_store_train_loader
from ..seeding import mix_seed, seed_all
from .tta import FastRCNNWithTTA
from .validation import validation_hooks

__all__ = ["ResNeXtTrainer", "SeedEachIteration", "apply_deterministic_mode", "merge_config", "setup_cfg"]


def setup_cfg(config_file: str, opts: list[str] | None = None, args=None, extra=None) -> CfgNode:
    """get_cfg -> add_resnext_config, add_two_stage_config -> merge file and ``KEY VALUE``
    overrides -> freeze.

    ``extra(cfg)``, if given, may change the config before it is frozen. The demo datasets are
    registered when the config names them (nothing is written: see ``prepare_demo_datasets``).
    With ``args`` (from ``default_argument_parser``) it also runs detectron2's ``default_setup``: output dir,
    logging, config dump, seed.
    """
    cfg = get_cfg()
    add_resnext_config(cfg)
    add_two_stage_config(cfg)
    merge_config(cfg, config_file, opts)
    if any(name in DEMO_SPLITS for name in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST)):
        register_demo_datasets()
    if extra is not None:
        extra(cfg)
    cfg.freeze()
    if args is not None:
        default_setup(cfg, args)
        apply_deterministic_mode(cfg)
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
            f"config file {config_file} is a LazyConfig (.py): tools/train_rpn.py, train_fast_rcnn.py and "
            "eval_coco.py (evaluation) take those; this needs a YAML config (the twin in configs/)"
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
    return cfg


def _yacs_message(error: Exception) -> str:
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    if "Non-existent" in text:
        text += " (a typo? resnext_det's keys are listed in resnext_det/config.py and detectron2's defaults)"
    return text


def apply_deterministic_mode(cfg: CfgNode) -> None:
    """``cfg.DETERMINISTIC``: deterministic kernels (warn where none exists) and no cuDNN autotuning."""
    if not cfg.get("DETERMINISTIC", False):
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS needs
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


logger = logging.getLogger("resnext_det")


class SeedEachIteration(hooks.HookBase):
    """The model's own random draws (the RPN's and ROI heads' sampling of anchors and proposals)
    come from generators seeded by (stream seed, iteration, rank) before each step, so they repeat
    after ``--resume`` too."""

    def before_step(self):
        seed_all(mix_seed(self.trainer.stream_seed, self.trainer.iter, comm.get_rank(), 1))


class ResNeXtTrainer(DefaultTrainer):
    """``DefaultTrainer`` with what long runs on shared machines need.

    * COCO AP (pycocotools) on ``DATASETS.TEST``; proposals from ``PROPOSALS.STORE_DIR`` if set.
    * resnext_det weights that do not fit the model are refused (no partial load).
    * Exact ``--resume``: a resumable data stream (``resnext_det.data.train_stream``), model RNGs
      seeded per iteration, the optimizer's momentum in every checkpoint, and checkpoints that
      are written atomically and never hold diverged weights (``SafeDetectionCheckpointer``).
    * A non-finite loss stops training with ``TrainingDivergedError`` (iteration, losses, the
      last good checkpoint), before the optimizer applies that step.
    """

    @property
    def _stream(self):
        loader = self.data_loader
        return loader.stream if isinstance(loader, ResumableTrainLoader) else None

    @property
    def stream_seed(self) -> int:
        return self._stream.seed if self._stream is not None else max(self.cfg.SEED, 0)

    def resume_or_load(self, resume: bool = True):
        if not (resume and self.checkpointer.has_checkpoint()):
            check_weights_file_fits(self.checkpointer.model, self.cfg.MODEL.WEIGHTS)
        result = super().resume_or_load(resume=resume)
        if self._stream is not None:
            self._stream.start_iter = self.start_iter
        return result

    def build_hooks(self):
        self.checkpointer = SafeDetectionCheckpointer(
            self.checkpointer.model, self.cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        built = [SeedEachIteration(), *super().build_hooks()]
        # right after the evaluation (the best checkpoint reads it; the same place in every
        # process, as both gather across processes) and so before the main process's writer
        after_eval = next(i for i, h in enumerate(built) if isinstance(h, hooks.EvalHook)) + 1
        built[after_eval:after_eval] = validation_hooks(self.cfg, self.model, self.checkpointer)
        return built

    def run_step(self):
        try:
            super().run_step()
        except FloatingPointError as e:
            raise diverged(e, self.iter, self.checkpointer.get_checkpoint_file()) from None

    # The inner trainer's state (optimizer momentum, AMP scaler) is saved as "_trainer", as
    # detectron2 main does; v0.6's DefaultTrainer does not save it. One code path for both:
    # TrainerBase's (iteration, hooks) plus `_trainer`, DefaultTrainer's inner SimpleTrainer or
    # AMPTrainer, which detectron2 has no public accessor for.
    def state_dict(self):
        state = TrainerBase.state_dict(self)
        state["_trainer"] = self._trainer.state_dict()
        if self._stream is not None:
            state["stream_seed"] = self._stream.seed
        return state

    def load_state_dict(self, state):
        TrainerBase.load_state_dict(self, state)
        if "_trainer" in state:
            self._trainer.load_state_dict(state["_trainer"])
        else:  # main's DefaultTrainer would fail with KeyError '_trainer' here
            logger.warning(
                "the checkpoint has no optimizer state (written by detectron2 0.6's DefaultTrainer?): "
                "resuming at iteration %d with the optimizer's momentum starting from zero",
                self.iter,
            )
        if self._stream is not None and "stream_seed" in state:
            self._stream.seed = int(state["stream_seed"])

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
        augmentation (``engine.tta``: a Fast R-CNN on precomputed proposals; an end-to-end
        Faster R-CNN through detectron2's ``GeneralizedRCNNWithTTA``)."""
        if cfg.TEST.AUG.ENABLED:
            model = cls.with_tta(cfg, model)
        return super().test(cfg, model, evaluators)

    @staticmethod
    def with_tta(cfg, model):
        if cfg.MODEL.META_ARCHITECTURE == "ProposalNetwork":
            raise ConfigError(
                "TEST.AUG.ENABLED applies to detectors: stage 1 (an RPN) has no test-time augmentation; "
                "enable it for stage 2 (tools/eval_coco.py) instead"
            )
        if cfg.MODEL.LOAD_PROPOSALS:
            return FastRCNNWithTTA(cfg, model)
        from detectron2.modeling import GeneralizedRCNNWithTTA

        return GeneralizedRCNNWithTTA(cfg, model)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """COCO's AP, or both VOC metrics for a detector on a Pascal VOC folder (``--voc-dataset``;
        an RPN's proposal recall is COCOEvaluator's on any dataset, which it converts)."""
        voc = MetadataCatalog.get(dataset_name).get("evaluator_type", "coco") == "pascal_voc"
        if voc and cfg.MODEL.META_ARCHITECTURE != "ProposalNetwork":
            return VOCBothMetricsEvaluator(dataset_name)
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return COCOEvaluator(dataset_name, output_dir=output_folder)
