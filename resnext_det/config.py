"""The config keys resnext_det adds, each commented where it is defined (as detectron2's
``config/defaults.py`` does), and their validation.

* ``add_resnext_config``: the model, ``MODEL.RESNEXT.*``. Like detectron2's projects, the plugin
  adds one namespaced block; the backbone and the res5 ROI head both read it, so one setting
  governs the whole trunk (stem..res4 in the backbone, res5 in the head). detectron2's own
  ``MODEL.RESNETS.*`` and ``MODEL.BACKBONE.FREEZE_AT`` stay in ``get_cfg()`` but are not read by
  this backbone, so a value other than detectron2's default there is refused, naming the key to
  use instead (``check_resnets_keys_unused``).
* ``add_run_config``: ``DETERMINISTIC`` and ``SOLVER.MEMORY_FORMAT``, for every training tool
  (detection and pretraining; ``uses_channels_last`` reads the second).
* ``add_two_stage_config``: what the paper's two-stage schedule needs beyond detectron2
  (``PROPOSALS.*``, ``TEST.FOLD_FROZEN_BN``), plus ``add_run_config``'s keys.
"""

from __future__ import annotations

import torch
from detectron2.config import CfgNode as CN

from .errors import ConfigError
from .template import STAGE_BLOCKS, Template, TemplateError, validate_out_features, validate_template

__all__ = [
    "add_resnext_config",
    "add_run_config",
    "add_two_stage_config",
    "channels_last_for",
    "check_model_config",
    "check_moved_proposal_keys",
    "check_resnets_keys_unused",
    "resnext_template_from_cfg",
    "uses_channels_last",
]


def add_resnext_config(cfg: CN) -> CN:
    """Add ``MODEL.RESNEXT.*`` to a detectron2 config (in place; also returned)."""
    _C = cfg
    _C.MODEL.RESNEXT = CN()
    # Depth: 50, 101, 152 or 200 (blocks per stage 3-4-6-3, 3-4-23-3, 3-8-36-3, 3-24-36-3;
    # Table 1, and Table 4's ResNet-200).
    _C.MODEL.RESNEXT.DEPTH = 50
    # Cardinality C: number of paths in each block (Sec. 3.2). 1 gives ResNet.
    _C.MODEL.RESNEXT.CARDINALITY = 32
    # Bottleneck width d: channels per path in conv2 (doubles each stage). "32x4d" is C=32, d=4.
    _C.MODEL.RESNEXT.BOTTLENECK_WIDTH = 4
    # Fig. 3 form: "grouped" (c, fastest), "concat" (b) or "aggregated" (a); same function.
    _C.MODEL.RESNEXT.BLOCK_FORM = "grouped"
    # Norm after every conv: "FrozenBN" (fine-tuning ImageNet weights, as the paper's detector
    # did), "BN", "SyncBN" (multi-GPU batch statistics; on one process it runs as "BN", on CPU
    # processes as detectron2's all-reduce "naiveSyncBN", with a warning), "naiveSyncBN", "GN", or
    # "" for none.
    _C.MODEL.RESNEXT.NORM = "FrozenBN"
    # Freeze the stem (1) and res2..res{FREEZE_AT} (2 = stem + res2); 0 trains everything.
    _C.MODEL.RESNEXT.FREEZE_AT = 2
    # Backbone outputs. C4: ["res4"] feeds the RPN and the ROI pooler; res5 is the ROI head.
    _C.MODEL.RESNEXT.OUT_FEATURES = ["res4"]
    # Stem output channels (7x7 conv, stride 2, then 3x3 max pool, stride 2).
    _C.MODEL.RESNEXT.STEM_OUT_CHANNELS = 64
    # Output channels of res2; res3/res4/res5 have 2x/4x/8x.
    _C.MODEL.RESNEXT.RES2_OUT_CHANNELS = 256

    # Start every block as identity (zero scale in the norm ending its residual branch; Goyal et al.
    # 2017). Not the paper's recipe; it makes training from random initialisation much faster
    # (the demo's pretraining). Needs NORM "BN", "SyncBN" or "GN"; pretrained weights overwrite it.
    _C.MODEL.RESNEXT.ZERO_INIT_RESIDUAL = False
    # False removes every shortcut (identity and projection): each block is a plain stack of its
    # convolutions, the "without residual connections" ablation of Sec. 5.1.
    _C.MODEL.RESNEXT.SHORTCUTS = True

    return cfg


def add_run_config(cfg: CN) -> CN:
    """Add ``DETERMINISTIC`` and ``SOLVER.MEMORY_FORMAT`` (read by every training tool) to a config
    with a ``SOLVER`` node (in place; also returned)."""
    # Deterministic mode (next to detectron2's SEED): torch.use_deterministic_algorithms, cuDNN
    # without autotuning. With a fixed SEED two runs on the same machine and software give the
    # same weights and metrics (tested on CPUs). On GPUs a few ops (RoIAlign's backward) have no
    # deterministic kernel; they warn and stay non-deterministic.
    cfg.DETERMINISTIC = False
    # The layout of the model's weights and activations in training and eager inference (a trained
    # stage in TwoStagePredictor, predict.py; exports trace the contiguous model): "auto"
    # (channels_last on the CPU, where oneDNN's convolutions measured faster: a demo Fast R-CNN
    # training iteration 1.3x, eager inference of an X50 pair 1.2x, a classification step too,
    # docs/speed.md; contiguous on GPUs, not measured), "channels_last" or "contiguous". Both give
    # fp32 results; only the speed and the float rounding differ.
    cfg.SOLVER.MEMORY_FORMAT = "auto"
    return cfg


MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


def channels_last_for(memory_format: str, device: str, key: str = "SOLVER.MEMORY_FORMAT") -> bool:
    """Whether a model on ``device`` runs in channels_last under ``memory_format`` (the value of
    ``key``: "auto" means on the CPU only)."""
    if memory_format not in MEMORY_FORMATS:
        raise ConfigError(f"{key} is {memory_format!r}; expected one of {list(MEMORY_FORMATS)}")
    if memory_format == "auto":
        return torch.device(device).type == "cpu"
    return memory_format == "channels_last"


def uses_channels_last(cfg: CN) -> bool:
    """``channels_last_for`` a YAML config: ``SOLVER.MEMORY_FORMAT`` on ``MODEL.DEVICE``."""
    return channels_last_for(cfg.SOLVER.MEMORY_FORMAT, cfg.MODEL.DEVICE)


def add_two_stage_config(cfg: CN) -> CN:
    """Add the keys of the paper's two-stage schedule (appendix B) and of the detection tools to a
    detectron2 config: ``PROPOSALS.*``, ``TEST.*`` and ``add_run_config``'s keys."""
    _C = cfg
    # Removed: the proposal files written by tools/train_rpn.py keep the RPN's own top-k
    # (MODEL.RPN.PRE/POST_NMS_TOPK_TRAIN for DATASETS.TRAIN, *_TEST for DATASETS.TEST). Read only
    # so that an earlier run's config.yaml still loads; a value other than MODEL.RPN's is refused.
    _C.PROPOSALS = CN()
    _C.PROPOSALS.TRAIN_PRE_NMS_TOPK = None
    _C.PROPOSALS.TRAIN_POST_NMS_TOPK = None
    _C.PROPOSALS.TEST_PRE_NMS_TOPK = None
    _C.PROPOSALS.TEST_POST_NMS_TOPK = None
    # Stage 2 reads proposals from the memory-mapped stores STORE_DIR/proposals_<dataset>/
    # (resnext_det.proposals.store) in the data mapper, so RAM does not grow with the dataset
    # or the worker count. tools/train_fast_rcnn.py and eval_coco.py set it from --proposals.
    # Empty: detectron2's DATASETS.PROPOSAL_FILES_* pickles (tools/convert_proposals.py), loaded whole.
    _C.PROPOSALS.STORE_DIR = ""

    # Inference only (eval_coco.py, --eval-only, TwoStagePredictor): fold every FrozenBN into the
    # convolution before it (resnext_det.layers.fold_frozen_batchnorm). Same outputs within float
    # rounding (tested), one pass over each activation map fewer. Training never folds.
    _C.TEST.FOLD_FROZEN_BN = True
    # Validation loss (resnext_det.engine.validation): every VAL_LOSS_PERIOD iterations and after
    # the last, the mean training loss over DATASETS.TEST at the test size, logged as
    # validation/<loss> (metrics.json, TensorBoard, tools/plot_metrics.py). 0: off. detectron2
    # writes metrics.json every 20 iterations, with the latest value of each key: a multiple of
    # 20 (as for TEST.EVAL_PERIOD) puts every value into the file.
    _C.TEST.VAL_LOSS_PERIOD = 0
    # The metric that picks OUTPUT_DIR/model_best.pth, checked after each evaluation (or each
    # validation loss, for a validation/... metric): "" is bbox/AP for a Fast R-CNN and
    # box_proposals/AR@100 for an RPN. A key ending in a loss is minimised, anything else maximised.
    _C.TEST.BEST_METRIC = ""
    return add_run_config(cfg)


#: detectron2's ResNet keys and the MODEL.RESNEXT key (or the reason) that takes their place.
_RESNETS_INSTEAD = {
    "DEPTH": "MODEL.RESNEXT.DEPTH",
    "NUM_GROUPS": "MODEL.RESNEXT.CARDINALITY",
    "WIDTH_PER_GROUP": "MODEL.RESNEXT.BOTTLENECK_WIDTH",
    "NORM": "MODEL.RESNEXT.NORM",
    "OUT_FEATURES": "MODEL.RESNEXT.OUT_FEATURES",
    "STEM_OUT_CHANNELS": "MODEL.RESNEXT.STEM_OUT_CHANNELS",
    "RES2_OUT_CHANNELS": "MODEL.RESNEXT.RES2_OUT_CHANNELS",
    "STRIDE_IN_1X1": "nothing: the stride is always in the 3x3 (fb.resnet.torch, as the paper)",
}


#: The keys that once set the proposal files' top-k apart from the RPN's, and the RPN's key now.
MOVED_PROPOSAL_KEYS = {
    "TRAIN_PRE_NMS_TOPK": "PRE_NMS_TOPK_TRAIN",
    "TRAIN_POST_NMS_TOPK": "POST_NMS_TOPK_TRAIN",
    "TEST_PRE_NMS_TOPK": "PRE_NMS_TOPK_TEST",
    "TEST_POST_NMS_TOPK": "POST_NMS_TOPK_TEST",
}


def check_moved_proposal_keys(cfg: CN) -> None:
    """An earlier run's ``PROPOSALS.*_NMS_TOPK`` loads where it equals ``MODEL.RPN``'s key (as in
    every shipped config); another value is refused, naming the key to set instead."""
    for old, new in MOVED_PROPOSAL_KEYS.items():
        value = cfg.PROPOSALS.get(old)
        if value is not None and value != cfg.MODEL.RPN[new]:
            raise ConfigError(
                f"PROPOSALS.{old} is {value} but MODEL.RPN.{new} is {cfg.MODEL.RPN[new]}: stage 1's "
                f"proposal files now keep the RPN's own top-k; set MODEL.RPN.{new} {value} instead"
            )


def check_resnets_keys_unused(cfg: CN) -> None:
    """Refuse ``MODEL.RESNETS.*`` / ``MODEL.BACKBONE.FREEZE_AT`` values other than detectron2's
    defaults: the ResNeXt backbone and head read ``MODEL.RESNEXT.*``, and a user who set
    ``MODEL.RESNETS.DEPTH 101`` would otherwise train a ResNeXt-50 without knowing it."""
    from detectron2.config import get_cfg

    defaults = get_cfg().MODEL
    if "RESNETS" in cfg.MODEL:
        for key, value in cfg.MODEL.RESNETS.items():
            if key in defaults.RESNETS and value != defaults.RESNETS[key]:
                instead = _RESNETS_INSTEAD.get(key, "nothing: the ResNeXt backbone does not support it")
                raise ConfigError(
                    f"cfg.MODEL.RESNETS.{key} is {value!r}, but the ResNeXt backbone and head do not read "
                    f"MODEL.RESNETS.*; set {instead} instead, and leave MODEL.RESNETS.{key} at "
                    f"detectron2's default {defaults.RESNETS[key]!r}"
                )
    backbone = cfg.MODEL.get("BACKBONE")
    if backbone is not None and "FREEZE_AT" in backbone and backbone.FREEZE_AT != defaults.BACKBONE.FREEZE_AT:
        raise ConfigError(
            f"cfg.MODEL.BACKBONE.FREEZE_AT is {backbone.FREEZE_AT!r}, but the ResNeXt backbone reads "
            f"MODEL.RESNEXT.FREEZE_AT; set that instead, and leave MODEL.BACKBONE.FREEZE_AT at "
            f"detectron2's default {defaults.BACKBONE.FREEZE_AT!r}"
        )


def check_model_config(cfg: CN) -> None:
    """The ResNeXt keys of a detection config, checked without building the model (the tools'
    preflight, before any worker starts): the same errors the builders raise."""
    if (
        cfg.MODEL.BACKBONE.NAME == "build_resnext_backbone"
        or cfg.MODEL.ROI_HEADS.NAME == "ResNeXtRes5ROIHeads"
    ):
        resnext_template_from_cfg(cfg)


def resnext_template_from_cfg(cfg: CN, depths=tuple(STAGE_BLOCKS)) -> Template:
    """The ``Template`` of ``cfg.MODEL.RESNEXT``, validated with the rest of its keys.

    Every error names the config key, so a typo in a YAML file is found at model-build time.
    ``depths``: the accepted depths (``template.CIFAR_DEPTHS`` for the CIFAR networks).
    """
    if "RESNEXT" not in cfg.MODEL:
        raise KeyError(
            "cfg.MODEL.RESNEXT is missing: call resnext_det.add_resnext_config(cfg) before "
            "merging a resnext_det config file"
        )
    r = cfg.MODEL.RESNEXT
    try:
        validate_template(
            r.DEPTH,
            r.CARDINALITY,
            r.BOTTLENECK_WIDTH,
            r.BLOCK_FORM,
            r.NORM,
            r.STEM_OUT_CHANNELS,
            r.RES2_OUT_CHANNELS,
            depths=depths,
        )
        validate_out_features(r.OUT_FEATURES)
    except TemplateError as e:
        raise TemplateError(e.argument, f"cfg.MODEL.RESNEXT.{e.argument.upper()}: {e}") from None
    if r.ZERO_INIT_RESIDUAL and r.NORM not in ("BN", "SyncBN", "GN"):
        raise ConfigError(
            f"cfg.MODEL.RESNEXT.ZERO_INIT_RESIDUAL needs a learnable norm (MODEL.RESNEXT.NORM "
            f"'BN', 'SyncBN' or 'GN'), got NORM {r.NORM!r}: a zeroed frozen norm never recovers"
        )
    if isinstance(r.FREEZE_AT, bool) or not isinstance(r.FREEZE_AT, int) or not 0 <= r.FREEZE_AT <= 5:
        raise ConfigError(
            f"cfg.MODEL.RESNEXT.FREEZE_AT must be 0..5 (0: train everything, 1: freeze the stem, "
            f"k: the stem and res2..res<k>), got {r.FREEZE_AT!r}"
        )
    if not isinstance(r.SHORTCUTS, bool):
        raise ConfigError(f"cfg.MODEL.RESNEXT.SHORTCUTS must be True or False, got {r.SHORTCUTS!r}")
    check_resnets_keys_unused(cfg)
    return Template(
        depth=r.DEPTH,
        cardinality=r.CARDINALITY,
        bottleneck_width=r.BOTTLENECK_WIDTH,
        block_form=r.BLOCK_FORM,
        norm=r.NORM,
        stem_out_channels=r.STEM_OUT_CHANNELS,
        res2_out_channels=r.RES2_OUT_CHANNELS,
        shortcuts=r.SHORTCUTS,
    )
