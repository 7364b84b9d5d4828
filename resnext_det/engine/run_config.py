"""One view of a run's config for the tools, whichever kind the user wrote (YAML or LazyConfig).

The preflight (``cli.preflight``) checks the same things for both kinds: the keys have other
names (``MODEL.DEVICE`` / ``train.device``), the checks and their messages do not. ``YamlRun`` and
``LazyRun`` are the only places that know where each kind keeps a setting and how it trains
(both through the one engine, ``engine.trainer``); the tools read a run through them
(``read_run_config`` in the launching process, ``setup_run`` in each worker) and are written once.
"""

from __future__ import annotations

from dataclasses import dataclass

from detectron2.config import instantiate
from detectron2.data import DatasetMapper
from detectron2.engine import DefaultTrainer
from detectron2.modeling.meta_arch import ProposalNetwork

from ..config import check_model_config, uses_channels_last
from ..errors import ConfigError
from ..proposals.handoff import attach_proposal_files, checked_proposal_files, dump_proposals
from .defaults import setup_cfg
from .lazy_config import attach_lazy_proposals, dataset_mapper, is_lazy_config, loader_dataset_names
from .lazy_train import (
    check_lazy_model,
    dump_lazy_proposals,
    lazy_dataset_names,
    load_tool_lazy_config,
    scale_to_processes,
    setup_lazy_run,
    train_lazy,
)
from .stages import results_by_dataset, train_stage

__all__ = ["LazyRun", "Setting", "YamlRun", "read_run_config", "setup_run"]


@dataclass(frozen=True)
class Setting:
    """A value of the config and the key a user writes to change it."""

    key: str
    value: object


class YamlRun:
    """A YAML config (``setup_cfg``: detectron2's keys plus this project's)."""

    def __init__(self, cfg, path: str):
        self.cfg, self.path = cfg, path

    def dataset_names(self, test_only: bool) -> list[str]:
        names = self.cfg.DATASETS.TEST if test_only else (*self.cfg.DATASETS.TRAIN, *self.cfg.DATASETS.TEST)
        return list(dict.fromkeys(names))

    @property
    def device(self) -> Setting:
        return Setting("MODEL.DEVICE", self.cfg.MODEL.DEVICE)

    @property
    def weights(self) -> Setting:
        return Setting("MODEL.WEIGHTS", self.cfg.MODEL.WEIGHTS)

    @property
    def amp(self) -> Setting:
        return Setting("SOLVER.AMP.ENABLED", self.cfg.SOLVER.AMP.ENABLED)

    @property
    def output_dir(self) -> str:
        return self.cfg.OUTPUT_DIR

    def total_batch(self, processes: int) -> Setting:
        """The batch the trainer will run: detectron2 scales it to the processes."""
        scaled = DefaultTrainer.auto_scale_workers(self.cfg, processes)
        return Setting("SOLVER.IMS_PER_BATCH", scaled.SOLVER.IMS_PER_BATCH)

    def check_model(self, stage1: bool) -> None:
        """The ResNeXt keys and the memory format, without building the model."""
        check_model_config(self.cfg)
        uses_channels_last(self.cfg)  # a bad SOLVER.MEMORY_FORMAT is named here, not in a worker
        if stage1 and self.cfg.MODEL.META_ARCHITECTURE != "ProposalNetwork":
            raise _not_stage1(self.path, self.cfg.MODEL.META_ARCHITECTURE, "rpn_*")

    def check_proposals(self, proposals_dir: str, test_only: bool) -> None:
        checked_proposal_files(self.cfg, proposals_dir, test_only)

    @property
    def test_sets(self) -> list[str]:
        return list(self.cfg.DATASETS.TEST)

    def train(self, resume: bool = False, eval_only: bool = False):
        """(model, {test dataset: results}) of training (or only evaluating) the model."""
        model, results = train_stage(self.cfg, resume=resume, eval_only=eval_only)
        return model, results_by_dataset(self.test_sets, results)

    def dump_proposals(self, model):
        return dump_proposals(self.cfg, model)

    @property
    def train_sets(self) -> list[str]:
        return list(self.cfg.DATASETS.TRAIN)

    def training_mapper(self):
        """detectron2's ``DatasetMapper`` with the config's training augmentations (``INPUT.*``)."""
        return DatasetMapper(self.cfg, is_train=True)

    @property
    def seed(self) -> Setting:
        return Setting("SEED", self.cfg.SEED)

    @property
    def input_format(self) -> str:
        return self.cfg.INPUT.FORMAT


class LazyRun:
    """A LazyConfig file (``load_tool_lazy_config``: checked overrides, datasets registered)."""

    def __init__(self, cfg, path: str):
        self.cfg, self.path = cfg, path

    def dataset_names(self, test_only: bool) -> list[str]:
        return lazy_dataset_names(self.cfg, with_train=not test_only)

    @property
    def device(self) -> Setting:
        return Setting("train.device", self.cfg.train.device)

    @property
    def weights(self) -> Setting:
        return Setting("train.init_checkpoint", self.cfg.train.init_checkpoint)

    @property
    def amp(self) -> Setting:
        return Setting("train.amp.enabled", self.cfg.train.get("amp", {}).get("enabled", False))

    @property
    def output_dir(self) -> str:
        return self.cfg.train.output_dir

    def total_batch(self, processes: int) -> Setting:
        """The batch the trainer will run: scaled to the processes by ``train.reference_world_size``."""
        scaled = scale_to_processes(self.cfg, processes, self.path)
        return Setting("dataloader.train.total_batch_size", scaled.dataloader.train.get("total_batch_size"))

    def check_model(self, stage1: bool) -> None:
        """The model built on the meta device (no memory, no time): a wrong argument is named."""
        model = check_lazy_model(self.cfg, self.path)
        if stage1 and not isinstance(model, ProposalNetwork):
            raise _not_stage1(self.path, type(model).__name__, "rpn_*.py")

    def check_proposals(self, proposals_dir: str, test_only: bool) -> None:
        attach_lazy_proposals(self.cfg, proposals_dir, self.path, test_only)

    @property
    def test_sets(self) -> list[str]:
        return loader_dataset_names(self.cfg, "test")

    def train(self, resume: bool = False, eval_only: bool = False):
        """(model, {test dataset: results}) of training (or only evaluating) the model."""
        return train_lazy(self.cfg, resume, eval_only, path=self.path)

    def dump_proposals(self, model):
        return dump_lazy_proposals(self.cfg, model)

    @property
    def train_sets(self) -> list[str]:
        return loader_dataset_names(self.cfg, "train") if "train" in self.cfg.dataloader else []

    def training_mapper(self):
        """``dataloader.train.mapper``, instantiated."""
        if "train" not in self.cfg.dataloader:
            raise ConfigError(f"{self.path} has no dataloader.train: its training inputs cannot be drawn")
        return instantiate(self.cfg.dataloader.train.mapper)

    @property
    def seed(self) -> Setting:
        """The training stream's seed (what ``SEED`` is for a YAML run's data)."""
        return Setting("dataloader.train.seed", self.cfg.dataloader.get("train", {}).get("seed", 0))

    @property
    def input_format(self) -> str:
        """The training images' colour order (``image_format`` of ``dataloader.train``'s mapper)."""
        loader, key = (self.cfg.dataloader.train, "dataloader.train") if "train" in self.cfg.dataloader else (
            self.cfg.dataloader.test, "dataloader.test")  # fmt: skip
        return dataset_mapper(loader, key, f"{self.path}: drawing its inputs").get("image_format", "BGR")


def _not_stage1(path: str, built: str, configs: str) -> ConfigError:
    return ConfigError(
        f"tools/train_rpn.py trains stage 1, a ProposalNetwork; {path} builds a {built}: "
        f"use an {configs} config"
    )


def read_run_config(args, test_only: bool = False) -> YamlRun | LazyRun:
    """The tool's config with its overrides (``--config-file`` and the command line's rest)."""
    if is_lazy_config(args.config_file):
        return LazyRun(load_tool_lazy_config(args, test_only=test_only), args.config_file)
    return YamlRun(setup_cfg(args.config_file, args.opts), args.config_file)


def setup_run(args, proposals_dir: str | None = None, test_only: bool = False) -> YamlRun | LazyRun:
    """In each worker process: the config with its overrides and, with ``proposals_dir``, stage
    1's proposals attached; then the run's set-up (output folder, logs, the config's copy, seed;
    detectron2's ``default_setup`` for YAML, ``setup_lazy_run`` for a LazyConfig)."""
    if is_lazy_config(args.config_file):
        return LazyRun(setup_lazy_run(args, proposals_dir, test_only), args.config_file)
    attach = None
    if proposals_dir is not None:

        def attach(cfg):
            attach_proposal_files(cfg, proposals_dir, test_only=test_only)

    return YamlRun(setup_cfg(args.config_file, args.opts, args, extra=attach), args.config_file)
