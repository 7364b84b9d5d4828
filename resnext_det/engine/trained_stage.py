"""A trained stage as the code that runs it on plain images reads it, from a YAML or a LazyConfig.

``TwoStagePredictor``, the exporter, ``tools/predict.py`` and ``tools/eval_coco.py --images`` run a
stage's model outside its training loop. They need its model with its trained weights, the test
size and colour order its images were given at, how many of stage 1's proposals stage 2 reads,
its datasets (for the class names), FrozenBN folding and test-time augmentation. A YAML config
and a LazyConfig keep these under other keys (``INPUT.MIN_SIZE_TEST``, or the
``ResizeShortestEdge`` of ``dataloader.test``'s mapper); ``read_trained_stage`` reads either
into one ``TrainedStage``, so everything after it is written once. ``load_stage_dir`` reads a
finished stage's folder, whose ``config.yaml`` is a YAML config or a LazyConfig run's dump.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from detectron2.config import CfgNode, instantiate
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.modeling.meta_arch import ProposalNetwork
from omegaconf import DictConfig

from ..checkpoint.convert import describe_mismatches
from ..checkpoint.safe_checkpointer import (
    SafeDetectionCheckpointer,
    read_checkpoint_file,
    reads_as_torch_file,
)
from ..config import resnext_template_from_cfg, uses_channels_last
from ..data.demo_dataset import register_named_demo_splits
from ..errors import ConfigError, MissingFileError, WeightsMismatchError
from ..template import Template
from .defaults import setup_cfg
from .lazy_config import dataset_mapper, lazy_channels_last, load_lazy_config, loader_dataset_names, located
from .tta import TTASettings

__all__ = [
    "TrainedStage",
    "build_trained_model",
    "load_stage_dir",
    "load_weights_strictly",
    "read_trained_stage",
    "stage_config_kind",
    "lazy_input_format",
    "stage_files",
]

#: Where each kind of config keeps the settings ``check_stage_pair`` compares (for its errors).
SETTING_KEYS = {
    "yaml": {
        "input_format": "INPUT.FORMAT",
        "min_size_test": "INPUT.MIN_SIZE_TEST",
        "max_size_test": "INPUT.MAX_SIZE_TEST",
        "takes_proposals": "MODEL.PROPOSAL_GENERATOR.NAME PrecomputedProposals",
    },
    "lazy": {
        "input_format": "dataloader.test.mapper.image_format",
        "min_size_test": "short_edge_length of dataloader.test.mapper's ResizeShortestEdge",
        "max_size_test": "max_size of dataloader.test.mapper's ResizeShortestEdge",
        "takes_proposals": "model.proposal_generator=None",
    },
}


@dataclass(frozen=True)
class TrainedStage:
    """One trained stage's model and the settings it is run with, whichever kind of config it
    came from (``kind``: "yaml" or "lazy"; ``config``: that config)."""

    source: str  #: how messages name it ("--rpn out/rpn")
    kind: str
    architecture: str  #: the model's class (YAML: MODEL.META_ARCHITECTURE)
    is_proposal_network: bool  #: stage 1
    takes_proposals: bool  #: stage 2: no proposal generator, proposals come with the image
    input_format: str
    min_size_test: int
    max_size_test: int
    proposal_topk_test: int | None  #: stage 1's proposals stage 2 reads per test image
    test_sets: tuple[str, ...]
    train_sets: tuple[str, ...]
    weights: str
    device: str
    fold_frozen_bn: bool
    #: the model's layout when it runs eagerly (SOLVER.MEMORY_FORMAT / train.memory_format; "auto":
    #: channels_last on the CPU, where it was measured faster for inference too: docs/speed.md)
    channels_last: bool
    test_augmentation: TTASettings | None
    template: Template | None
    config: object = field(repr=False, compare=False)

    @property
    def dataset_names(self) -> tuple[str, ...]:
        """Where the class names come from: the test datasets, else the training ones."""
        return self.test_sets or self.train_sets

    def key(self, setting: str) -> str:
        """The key a user of this kind of config writes for ``setting`` (a field's name)."""
        return SETTING_KEYS[self.kind][setting]

    def build_model(self, channels_last: bool | None = None) -> torch.nn.Module:
        """The model in eval mode on ``device``, its ``weights`` loaded strictly
        (``load_weights_strictly``), in the stage's layout (``channels_last``: another one; the
        exporter traces the contiguous model, whose exported speed is what was measured)."""
        if self.kind == "yaml":
            model = build_model(self.config)
        else:
            with torch.device("cpu"):
                model = instantiate(self.config.model)
            model = model.to(self.device)
        model.eval()
        load_weights_strictly(model, self.weights, self.source)
        if self.channels_last if channels_last is None else channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model


def load_weights_strictly(model: torch.nn.Module, weights: str, source: str = "") -> None:
    """Load ``weights`` into ``model``: a checkpoint whose tensors do not match the model key for
    key and shape for shape is a ``WeightsMismatchError`` (detectron2 would only warn and leave
    those layers random). Empty ``weights`` keeps the random initialisation; detectron2's own
    ``.pkl`` formats (model zoo, Caffe2) load through its checkpointer, with its name matching."""
    if not weights:
        return
    if not reads_as_torch_file(weights):
        SafeDetectionCheckpointer(model).load(weights)  # detectron2's .pkl formats
        return
    checkpoint = read_checkpoint_file(weights)
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsMismatchError(f"{weights}: expected a detectron2 checkpoint (a 'model' state dict)")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    # BN's step counter: written by a BN model, not part of the function (FrozenBN has none)
    state = {k: v for k, v in state.items() if k in expected or not k.endswith("num_batches_tracked")}
    problems = describe_mismatches(expected, {k: tuple(v.shape) for k, v in state.items()})
    if problems:
        raise WeightsMismatchError(
            f"{weights} does not fit the model of {source or 'its config'}: {problems}"
        )
    model.load_state_dict(state, strict=True)


def build_trained_model(cfg, source: str = "") -> torch.nn.Module:
    """The model of a stage's config (YAML or LazyConfig) with its weights loaded strictly."""
    return read_trained_stage(cfg, source).build_model()


def read_trained_stage(config, source: str = "the config") -> TrainedStage:
    """A ``TrainedStage`` of a YAML config (``MODEL.WEIGHTS``: the trained weights) or a
    LazyConfig (``train.init_checkpoint``); a ``TrainedStage`` is returned as it is."""
    if isinstance(config, TrainedStage):
        return config
    if isinstance(config, CfgNode):
        return _yaml_stage(config, source)
    if isinstance(config, DictConfig):
        return _lazy_stage(config, source)
    raise TypeError(f"expected a YAML config (CfgNode) or a LazyConfig, got {type(config).__name__}")


def _yaml_stage(cfg, source: str) -> TrainedStage:
    return TrainedStage(
        source=source,
        kind="yaml",
        architecture=cfg.MODEL.META_ARCHITECTURE,
        is_proposal_network=cfg.MODEL.META_ARCHITECTURE == "ProposalNetwork",
        takes_proposals=cfg.MODEL.PROPOSAL_GENERATOR.NAME == "PrecomputedProposals",
        input_format=cfg.INPUT.FORMAT,
        min_size_test=cfg.INPUT.MIN_SIZE_TEST,
        max_size_test=cfg.INPUT.MAX_SIZE_TEST,
        # read by the test mapper only where it loads proposals (MODEL.LOAD_PROPOSALS)
        proposal_topk_test=cfg.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST if cfg.MODEL.LOAD_PROPOSALS else None,
        test_sets=tuple(cfg.DATASETS.TEST),
        train_sets=tuple(cfg.DATASETS.TRAIN),
        weights=cfg.MODEL.WEIGHTS,
        device=cfg.MODEL.DEVICE,
        fold_frozen_bn=cfg.TEST.FOLD_FROZEN_BN,
        channels_last=uses_channels_last(cfg),
        test_augmentation=TTASettings.from_yaml(cfg),
        # a ResNeXt backbone's (a stage of detectron2's own ResNet has none)
        template=resnext_template_from_cfg(cfg)
        if cfg.MODEL.BACKBONE.NAME == "build_resnext_backbone"
        else None,
        config=cfg,
    )


def _lazy_stage(cfg, source: str) -> TrainedStage:
    model_class = located(cfg.model._target_)
    if model_class is None:
        raise ConfigError(f"{source}: model._target_ {cfg.model._target_!r} cannot be imported")
    is_rpn = isinstance(model_class, type) and issubclass(model_class, ProposalNetwork)
    mapper = _test_mapper(cfg, source)
    min_size, max_size = _test_size(mapper, source)
    backbone = cfg.model.get("backbone", {})
    template_fields = Template.__dataclass_fields__
    named = all(k in backbone for k in template_fields)  # a build_resnext_trunk backbone
    template = Template(**{k: backbone[k] for k in template_fields}) if named else None
    return TrainedStage(
        source=source,
        kind="lazy",
        architecture=getattr(model_class, "__name__", str(model_class)),
        is_proposal_network=is_rpn,
        takes_proposals=not is_rpn and cfg.model.get("proposal_generator") is None,
        input_format=lazy_input_format(cfg, source),
        min_size_test=min_size,
        max_size_test=max_size,
        proposal_topk_test=mapper.get("precomputed_proposal_topk"),
        test_sets=tuple(loader_dataset_names(cfg, "test")),
        train_sets=tuple(loader_dataset_names(cfg, "train")) if "train" in cfg.dataloader else (),
        weights=cfg.train.init_checkpoint,
        device=cfg.train.device,
        fold_frozen_bn=bool(cfg.train.get("fold_frozen_bn", True)),
        channels_last=lazy_channels_last(cfg),
        test_augmentation=TTASettings.from_lazy(cfg),
        template=template,
        config=cfg,
    )


def lazy_input_format(cfg, source: str = "the config") -> str:
    """The colour order of a LazyConfig's test images (its test ``DatasetMapper``'s
    ``image_format``), as ``INPUT.FORMAT`` is a YAML config's."""
    return _test_mapper(cfg, source).get("image_format", "BGR")  # DatasetMapper's own default


def _test_mapper(cfg, source: str):
    """``dataloader.test``'s ``DatasetMapper``: its augmentations give the test size the model
    runs at on plain images."""
    return dataset_mapper(cfg.dataloader.test, "dataloader.test", f"{source}: running a trained stage")


def _test_size(mapper, source: str) -> tuple[int, int]:
    """(shorter side, longer side at most) of the test mapper's one ``ResizeShortestEdge``."""
    augmentations = mapper.get("augmentations") or []
    resizes = [a for a in augmentations if located(a.get("_target_")) is T.ResizeShortestEdge]
    sizes = resizes[0].short_edge_length if len(resizes) == 1 else None
    sizes = [sizes] if isinstance(sizes, int) else list(sizes or [])
    if len(sizes) != 1 or len(set(sizes)) != 1:
        raise ConfigError(
            f"{source}: dataloader.test.mapper.augmentations must hold one ResizeShortestEdge with one "
            "short_edge_length (the test size); got "
            f"{[dict(r) for r in resizes] or 'none'}"
        )
    return int(sizes[0]), int(resizes[0].get("max_size", 1333))


def stage_files(directory: str | Path, flag: str) -> tuple[Path, Path]:
    """A finished stage's ``(config.yaml, model_final.pth)`` in ``directory`` (named on the
    command line by ``flag``), or a ``MissingFileError`` saying which is missing."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingFileError(f"{flag} {directory} is not a folder: expected a stage's OUTPUT_DIR")
    files = directory / "config.yaml", directory / "model_final.pth"
    for required in files:
        if not required.is_file():
            raise MissingFileError(
                f"{required} not found: {flag} must be a finished stage's OUTPUT_DIR "
                "(its config.yaml and model_final.pth)"
            )
    return files


def stage_config_kind(config_file: str | Path) -> str:
    """ "yaml" for a stage's ``config.yaml`` written by a YAML run (``MODEL``, ``INPUT`` ...),
    "lazy" for a LazyConfig run's dump (``model``, ``dataloader``, ``train``)."""
    try:
        top = yaml.safe_load(Path(config_file).read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{config_file} is not a readable YAML file: {' '.join(str(e).split())}") from None
    if isinstance(top, dict) and {"model", "dataloader", "train"} <= set(top):
        return "lazy"
    if isinstance(top, dict) and "MODEL" in top:
        return "yaml"
    raise ConfigError(
        f"{config_file}: expected a stage's config (a YAML config with MODEL ..., or a LazyConfig run's "
        "dump with model, dataloader and train)"
    )


def load_stage_dir(
    directory: str | Path, flag: str, device: str = "cpu", opts: list[str] | None = None
) -> TrainedStage:
    """The trained stage in ``directory`` (its ``config.yaml`` and ``model_final.pth``), on
    ``device``; ``opts`` override its config in its own kind's syntax (``KEY VALUE`` for YAML,
    ``key=value`` for a LazyConfig)."""
    config, weights = stage_files(directory, flag)
    source = f"{flag} {directory}"
    if stage_config_kind(config) == "yaml":
        overrides = [*(opts or []), "MODEL.WEIGHTS", str(weights), "MODEL.DEVICE", device]
        return read_trained_stage(setup_cfg(str(config), overrides), source)
    cfg = load_lazy_config(str(config), opts or [], training=False)
    cfg.train.init_checkpoint, cfg.train.device = str(weights), device
    stage = read_trained_stage(cfg, source)
    register_named_demo_splits((*stage.test_sets, *stage.train_sets))
    return stage
