"""LazyConfig ``.py`` files in the project's tools: loading, ``key=value`` overrides, checks.

detectron2's newer configs are Python files (``LazyConfig``) with five parts: ``model``,
``dataloader`` (``train``, ``test``, ``evaluator``), ``optimizer``, ``lr_multiplier`` and
``train`` (``output_dir``, ``init_checkpoint``, ``max_iter``, ``device``, ``checkpointer``,
``eval_period``, ``log_period``, ``amp``, ``ddp``; optional ``seed``). The tools take one
wherever they take a YAML config (``--config-file x.py``), with overrides in the ``key=value`` form
of detectron2's ``lazyconfig_train_net.py``.

Unlike ``OmegaConf.update``, which creates any key it is given, an override here must name a key
that exists, or an argument of the callable that its node calls: a typo is an error, as in the
YAML tools. So is a YAML-style ``KEY VALUE`` pair, with the LazyConfig key to use where there is
one.
"""

from __future__ import annotations

import copy
import inspect
import os

from detectron2.config import LazyCall, LazyConfig
from omegaconf import DictConfig, OmegaConf

from ..config import channels_last_for
from ..errors import ConfigError

__all__ = [
    "lazy_channels_last",
    "YAML_TO_LAZY_KEYS",
    "attach_lazy_proposals",
    "check_lazy_sections",
    "dataset_mapper",
    "dataset_names",
    "is_lazy_config",
    "load_lazy_config",
    "located",
    "loader_dataset_names",
    "with_test_dataset",
]

#: The YAML keys users reach for first, and where a LazyConfig keeps the same setting.
YAML_TO_LAZY_KEYS = {
    "MODEL.WEIGHTS": "train.init_checkpoint",
    "OUTPUT_DIR": "train.output_dir",
    "MODEL.DEVICE": "train.device",
    "SOLVER.MAX_ITER": "train.max_iter",
    "SOLVER.BASE_LR": "optimizer.lr",
    "SOLVER.IMS_PER_BATCH": "dataloader.train.total_batch_size",
    "SOLVER.CHECKPOINT_PERIOD": "train.checkpointer.period",
    "TEST.EVAL_PERIOD": "train.eval_period",
    "DATASETS.TRAIN": "dataloader.train.dataset.names",
    "DATASETS.TEST": "dataloader.test.dataset.names",
    "DATALOADER.NUM_WORKERS": "dataloader.train.num_workers",
    "SEED": "dataloader.train.seed",
    "TEST.VAL_LOSS_PERIOD": "train.val_loss_period",
    "TEST.BEST_METRIC": "train.best_metric",
    "DETERMINISTIC": "train.deterministic",
    "SOLVER.REFERENCE_WORLD_SIZE": "train.reference_world_size",
    "TEST.FOLD_FROZEN_BN": "train.fold_frozen_bn",
    "TEST.AUG.ENABLED": "train.test_aug.enabled",
    "TEST.AUG.MIN_SIZES": "train.test_aug.min_sizes",
    "TEST.AUG.MAX_SIZE": "train.test_aug.max_size",
    "TEST.AUG.FLIP": "train.test_aug.flip",
}

#: What every tool reads from a LazyConfig file; training also needs the optimizer and schedule.
_EVALUATION_KEYS = (
    "model",
    "dataloader.test",
    "dataloader.evaluator",
    "train.output_dir",
    "train.init_checkpoint",
    "train.device",
)
_TRAINING_KEYS = (
    "dataloader.train",
    "optimizer",
    "lr_multiplier",
    "train.max_iter",
    "train.checkpointer",
    "train.eval_period",
    "train.log_period",
    "train.amp.enabled",
    "train.ddp",
)

#: The values the tools read from ``train`` and ``dataloader.train``, and their types: a wrong
#: one (``train.max_iter=abc``) is refused here instead of failing deep inside the trainer.
_VALUE_TYPES = {
    "train.output_dir": (str, "a folder path"),
    "train.init_checkpoint": (str, 'a weights file path, or "" for random initialisation'),
    "train.device": (str, '"cpu" or "cuda"'),
    "train.max_iter": (int, "a positive integer"),
    "train.checkpointer.period": (int, "a positive integer"),
    "train.eval_period": (int, "an integer (0: at the end only)"),
    "train.log_period": (int, "a positive integer"),
    "train.amp.enabled": (bool, "true or false"),
    "train.seed": (int, "an integer (negative: drawn)"),
    "train.val_loss_period": (int, "an integer (0: no validation loss)"),
    "train.best_metric": (str, 'a metric key such as "bbox/AP", or "" for the default'),
    "train.deterministic": (bool, "true or false"),
    "train.reference_world_size": (int, "an integer (0: the batch and schedule as written)"),
    "train.fold_frozen_bn": (bool, "true or false"),
    "train.test_aug.enabled": (bool, "true or false"),
    "train.test_aug.max_size": (int, "a positive integer"),
    "train.test_aug.flip": (bool, "true or false"),
    "dataloader.train.total_batch_size": (int, "a positive integer"),
}
_POSITIVE = {"train.max_iter", "train.checkpointer.period", "train.log_period", "train.test_aug.max_size"}
_POSITIVE.add("dataloader.train.total_batch_size")

_ABSENT = object()


def is_lazy_config(path) -> bool:
    """A ``.py`` config file is a LazyConfig; anything else is a YAML (CfgNode) config."""
    return str(path).endswith(".py")


def load_lazy_config(path: str, overrides=(), training: bool = True) -> DictConfig:
    """``LazyConfig.load(path)`` with ``key=value`` ``overrides`` applied, every key the tools read
    present (``training``: the optimizer and schedule too); each mistake is a ``ConfigError``
    that names the file or the override."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    try:
        cfg = LazyConfig.load(path)
    except Exception as e:  # the file is the user's code: whatever it raises is their error
        raise ConfigError(f"config file {path} could not be loaded: {type(e).__name__}: {e}") from None
    _apply_checked_overrides(cfg, list(overrides), path)
    check_lazy_sections(cfg, path, training)
    return cfg


def check_lazy_sections(cfg, path: str, training: bool = True) -> None:
    keys = _EVALUATION_KEYS + (_TRAINING_KEYS if training else ())
    missing = [k for k in keys if OmegaConf.select(cfg, k, default=_ABSENT) is _ABSENT]
    if missing:
        raise ConfigError(
            f"config file {path} lacks {', '.join(missing)}: a LazyConfig for the tools has detectron2's "
            "model / dataloader.train, test, evaluator / optimizer / lr_multiplier / train layout "
            "(see configs/lazy/common/c4.py)"
        )
    for key, (kind, expected) in _VALUE_TYPES.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is _ABSENT or (key == "train.seed" and value is None):  # the seed may be left out
            continue
        wrong_type = not isinstance(value, kind) or (kind is int and isinstance(value, bool))
        if wrong_type or (key in _POSITIVE and value < 1):
            raise ConfigError(f"config file {path}: {key} is {value!r}; expected {expected}")
    for loader in ("dataloader.test",) + (("dataloader.train",) if training else ()):
        if OmegaConf.select(cfg, f"{loader}.dataset.names", default=_ABSENT) is _ABSENT:
            raise ConfigError(
                f"config file {path}: {loader}.dataset must name its datasets (a LazyCall of "
                "detectron2's get_detection_dataset_dicts(names=...)); the tools check and register them"
            )


def _apply_checked_overrides(cfg, overrides: list[str], path: str) -> None:
    for override in overrides:
        if "=" not in override:
            raise ConfigError(_not_key_value(override, path))
        check_override_key(cfg, override.split("=", 1)[0].strip(), path)
    try:
        LazyConfig.apply_overrides(cfg, overrides)
    except Exception as e:  # hydra's grammar errors and OmegaConf's type errors alike
        raise ConfigError(
            f"command-line override of {path}: {type(e).__name__}: {' '.join(str(e).split())}"
        ) from None


def _not_key_value(word: str, path: str) -> str:
    hint = YAML_TO_LAZY_KEYS.get(word)
    message = (
        f"command-line override {word!r}: a .py config ({path}) takes detectron2's LazyConfig "
        "overrides, key=value (e.g. train.max_iter=100), not YAML's KEY VALUE pairs"
    )
    return message + (f"; {word} is {hint}=... there" if hint else "")


def check_override_key(cfg, key: str, path: str) -> None:
    """``key`` exists in ``cfg``, or its node calls a callable that takes it (``ConfigError`` if
    not, naming the node's keys)."""
    if OmegaConf.select(cfg, key, default=_ABSENT) is not _ABSENT:
        return
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
    if isinstance(parent, DictConfig) and "_target_" in parent and _takes_argument(parent._target_, leaf):
        return  # a new argument of the callable this node calls
    hint = f" ({key} is a YAML key: use {YAML_TO_LAZY_KEYS[key]})" if key in YAML_TO_LAZY_KEYS else ""
    known = ""
    if isinstance(parent, DictConfig):
        known = f"; {parent_key or 'the config'} has {', '.join(k for k in parent if k != '_target_')}"
    raise ConfigError(f"command-line override: {path} has no key {key!r}{hint}{known}")


def located(target):
    """A node's ``_target_`` as the callable (a LazyConfig dump names it by its dotted name);
    None if that name cannot be found."""
    if not isinstance(target, str):
        return target
    from detectron2.utils.registry import locate

    try:
        return locate(target)
    except Exception:  # detectron2's locate raises ImportError, pydoc's others
        return None


def _parameters(target) -> dict:
    """The parameters of a node's ``_target_`` (a callable, or its dotted name); {} if unknown."""
    target = located(target)
    if target is None:
        return {}
    try:
        return dict(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return {}


def _takes_argument(target, name: str) -> bool:
    parameters = _parameters(target)
    return name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def dataset_names(names) -> list[str]:
    """A loader's ``dataset.names``: one name or a list of them."""
    return [names] if isinstance(names, str) else list(names)


def loader_dataset_names(cfg, loader: str) -> list[str]:
    """The datasets of ``dataloader.<loader>`` ("train" or "test")."""
    return dataset_names(cfg.dataloader[loader].dataset.names)


def dataset_mapper(loader, key: str, needs: str = "detectron2's DatasetMapper") -> DictConfig:
    """A loader node's ``DatasetMapper`` (its ``is_train``, ``augmentations``, ``image_format``),
    inside the checking and proposal mappers the tools wrap around it; a ``ConfigError`` naming
    ``key`` (the loader's, e.g. "dataloader.test") and what ``needs`` it if there is none."""
    node = loader.get("mapper")
    while node is not None and "is_train" not in node and "mapper" in node:
        node = node.mapper
    if node is None or "is_train" not in node:
        raise ConfigError(f"{needs} needs {key}.mapper to be detectron2's DatasetMapper")
    return node


def with_test_dataset(cfg, name: str, output_dir: str | None = None) -> DictConfig:
    """A copy of ``cfg`` whose test loader and evaluator cover only ``name`` (one of its test
    datasets, or a training set for stage 1's proposals), its images' read errors named, and the
    evaluator writing into ``output_dir`` when it takes one (COCOEvaluator's results file)."""
    from ..data.checked_mapper import ImageCheckingMapper

    names = loader_dataset_names(cfg, "test")
    one = copy.deepcopy(cfg)  # the whole config: interpolations such as ${..test.dataset.names} resolve
    test = one.dataloader.test
    test.dataset.names = name
    files = test.dataset.get("proposal_files")
    if files is not None:  # stage 2 on detectron2 pickles: the file of this dataset
        test.dataset.proposal_files = [files[names.index(name)]] if name in names else None
    test.mapper = LazyCall(ImageCheckingMapper)(mapper=test.mapper)
    evaluator = one.dataloader.evaluator
    if "dataset_name" in evaluator:
        evaluator.dataset_name = name
    takes_output_dir = "output_dir" in _parameters(evaluator._target_)
    if output_dir and takes_output_dir and evaluator.get("output_dir") is None:
        evaluator.output_dir = output_dir
    return one


def attach_lazy_proposals(cfg, proposals_dir: str, path: str, test_only: bool = False) -> None:
    """Stage 2 from a LazyConfig: check stage 1's proposals for every dataset (as for YAML,
    ``checked_stage1_outputs``), then read them in the loaders: through ``ProposalLookupMapper``
    around each mapper."""
    from ..proposals.handoff import checked_stage1_outputs
    from ..proposals.mapper import ProposalLookupMapper

    if cfg.model.get("proposal_generator") is not None:
        raise ConfigError(
            f"--proposals: the model of {path} has its own proposal_generator; stage 2 reads stage 1's "
            "proposals instead (model.proposal_generator=None, as configs/lazy/fast_rcnn_*.py)"
        )
    loaders = ["test"] if test_only else ["train", "test"]
    for loader in loaders:
        if cfg.dataloader[loader].mapper.get("precomputed_proposal_topk") is None:
            raise ConfigError(
                f"--proposals: dataloader.{loader}.mapper of {path} keeps no precomputed proposals; "
                "set its precomputed_proposal_topk (as configs/lazy/common/c4.py does for stage 2)"
            )
    names = {loader: loader_dataset_names(cfg, loader) for loader in loaders}
    checked_stage1_outputs([n for group in names.values() for n in group], proposals_dir)
    for loader, group in names.items():
        node = cfg.dataloader[loader]
        node.mapper = LazyCall(ProposalLookupMapper)(
            mapper=node.mapper, store_dir=str(proposals_dir), dataset_names=group
        )


def lazy_channels_last(cfg) -> bool:
    """``train.memory_format`` (the YAML configs' ``SOLVER.MEMORY_FORMAT``; "auto" where a file
    predates the key) on ``train.device``: whether the model runs in channels_last."""
    memory_format = cfg.train.get("memory_format", "auto")
    return channels_last_for(memory_format, cfg.train.device, key="train.memory_format")
