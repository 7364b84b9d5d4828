"""``add_resnext_config(cfg)``: the ``MODEL.RESNEXT`` block, with the paper's defaults.

Like detectron2's projects, the plugin adds one namespaced block of keys; the backbone and the
res5 ROI head both read it, so one setting governs the whole trunk (stem..res4 in the backbone,
res5 in the head).
"""

from __future__ import annotations

from detectron2.config import CfgNode as CN

from .template import TemplateError, validate_out_features, validate_template

__all__ = ["add_resnext_config", "resnext_template_from_cfg"]


def add_resnext_config(cfg: CN) -> CN:
    """Add ``MODEL.RESNEXT.*`` to a detectron2 config (in place; also returned)."""
    _C = cfg
    _C.MODEL.RESNEXT = CN()
    # Depth: 50, 101 or 152 (blocks per stage 3-4-6-3, 3-4-23-3, 3-8-36-3; Table 1).
    _C.MODEL.RESNEXT.DEPTH = 50
    # Cardinality C: number of paths in each block (Sec. 3.2). 1 gives ResNet.
    _C.MODEL.RESNEXT.CARDINALITY = 32
    # Bottleneck width d: channels per path in conv2 (doubles each stage). "32x4d" is C=32, d=4.
    _C.MODEL.RESNEXT.BOTTLENECK_WIDTH = 4
    # Fig. 3 form: "grouped" (c, fastest), "concat" (b) or "aggregated" (a); same function.
    _C.MODEL.RESNEXT.BLOCK_FORM = "grouped"
    # Norm after every conv: "FrozenBN" (fine-tuning ImageNet weights, as the paper's detector
    # did), "BN", "SyncBN" (multi-GPU batch statistics), "GN", or "" for none.
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

    # Proposal files written by tools/train_rpn.py (per image, after NMS at MODEL.RPN.NMS_THRESH):
    # DATASETS.TRAIN sets get TRAIN_*, DATASETS.TEST sets TEST_* (Detectron's C4 baselines).
    _C.PROPOSALS = CN()
    _C.PROPOSALS.TRAIN_PRE_NMS_TOPK = 12000
    _C.PROPOSALS.TRAIN_POST_NMS_TOPK = 2000
    _C.PROPOSALS.TEST_PRE_NMS_TOPK = 6000
    _C.PROPOSALS.TEST_POST_NMS_TOPK = 1000
    # Stage 2 reads proposals from the memory-mapped stores STORE_DIR/proposals_<dataset>/
    # (resnext_det.proposals.store) in the data mapper, so RAM does not grow with the dataset
    # or the worker count. Empty: detectron2's DATASETS.PROPOSAL_FILES_* pickles, loaded whole.
    # tools/train_fast_rcnn.py sets it when stage 1 wrote stores (it does by default).
    _C.PROPOSALS.STORE_DIR = ""

    # Deterministic mode (next to detectron2's SEED): torch.use_deterministic_algorithms, cuDNN
    # without autotuning. With a fixed SEED two runs on the same machine and software give the
    # same weights and metrics (tested on CPUs). On GPUs a few ops (RoIAlign's backward) have no
    # deterministic kernel; they warn and stay non-deterministic.
    _C.DETERMINISTIC = False

    # Inference only (eval_coco.py, --eval-only, TwoStagePredictor): fold every FrozenBN into the
    # convolution before it (resnext_det.layers.frozen_bn). Same outputs within float rounding
    # (tested), one pass over each activation map fewer. Training never folds.
    if "TEST" not in _C:  # a config that is not detectron2's (pretraining) adds its own TEST later
        _C.TEST = CN()
    _C.TEST.FOLD_FROZEN_BN = True
    return cfg


def resnext_template_from_cfg(cfg: CN) -> dict:
    """Validated keyword arguments for the trunk builders, read from ``cfg.MODEL.RESNEXT``.

    Every error names the config key, so a typo in a YAML file is found at model-build time.
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
        )
        validate_out_features(r.OUT_FEATURES)
    except TemplateError as e:
        raise TemplateError(e.argument, f"cfg.MODEL.RESNEXT.{e.argument.upper()}: {e}") from None
    if r.ZERO_INIT_RESIDUAL and r.NORM not in ("BN", "SyncBN", "GN"):
        raise ValueError(
            f"cfg.MODEL.RESNEXT.ZERO_INIT_RESIDUAL needs a learnable norm (MODEL.RESNEXT.NORM "
            f"'BN', 'SyncBN' or 'GN'), got NORM {r.NORM!r}: a zeroed frozen norm never recovers"
        )
    if not 0 <= r.FREEZE_AT <= 5:
        raise ValueError(f"cfg.MODEL.RESNEXT.FREEZE_AT must be in 0..5, got {r.FREEZE_AT!r}")
    return dict(
        depth=r.DEPTH,
        cardinality=r.CARDINALITY,
        bottleneck_width=r.BOTTLENECK_WIDTH,
        block_form=r.BLOCK_FORM,
        norm=r.NORM,
        stem_out_channels=r.STEM_OUT_CHANNELS,
        res2_out_channels=r.RES2_OUT_CHANNELS,
    )
