"""``get_pretrain_cfg()``: the ImageNet-1K recipe of the paper's Sec. 4 as a detectron2 CfgNode.

The recipe follows fb.resnet.torch, which the paper cites: scale + aspect augmentation, flip,
colour jitter and PCA lighting; SGD with Nesterov momentum 0.9, weight decay 1e-4, batch 256,
lr 0.1 scaled linearly with the batch and divided by 10 at epochs 30, 60, 80 of 90. The model is
described by the same ``MODEL.RESNEXT`` keys as the detector, so one template governs both.
"""

from __future__ import annotations

from resnext_det.config import add_resnext_config, add_run_config, uses_channels_last
from resnext_det.errors import ConfigError

import torch
from detectron2.config import CfgNode as CN

__all__ = ["get_pretrain_cfg", "IMAGENET_MEAN", "IMAGENET_STD", "autocast_dtype", "uses_channels_last"]

#: RGB in [0, 1] (fb.resnet.torch / torchvision).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def get_pretrain_cfg() -> CN:
    """Defaults for ImageNet-1K ResNeXt-50 (32x4d) pretraining; YAML files override them."""
    _C = CN()
    _C.MODEL = CN()
    add_resnext_config(_C)
    _C.MODEL.RESNEXT.NORM = "BN"  # batch statistics while pretraining (the paper's BN)
    _C.MODEL.RESNEXT.FREEZE_AT = 0  # every stage trains
    _C.MODEL.RESNEXT.OUT_FEATURES = ["res5"]  # unused by the classifier; kept for one schema
    _C.MODEL.NUM_CLASSES = 1000  # the classifier's outputs: one per class folder of the train split
    # Checkpoint to evaluate (--eval-only) or to start from; "" = He initialisation.
    _C.MODEL.WEIGHTS = ""
    _C.MODEL.DEVICE = "cpu"  # "cuda" on GPU machines (one process per GPU: --num-gpus)

    _C.DATA = CN()
    # Folder with train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (the standard ImageNet layout).
    _C.DATA.ROOT = "datasets/imagenet"
    _C.DATA.TRAIN_SPLIT = "train"  # the training folder under DATA.ROOT
    _C.DATA.VAL_SPLIT = "val"  # the evaluation folder under DATA.ROOT (same class folders)
    # Loader worker processes per training process (decoding happens there).
    _C.DATA.NUM_WORKERS = 8

    _C.INPUT = CN()
    _C.INPUT.CROP_SIZE = 224  # side of the square training crop
    # Random-resized crop: fraction of the image area and aspect-ratio range (fb.resnet.torch).
    _C.INPUT.CROP_SCALE = (0.08, 1.0)
    _C.INPUT.CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)  # aspect-ratio range of the random-resized crop
    _C.INPUT.HFLIP = True  # random horizontal flip
    # fb.resnet.torch's ColorJitter (brightness, contrast, saturation; 0 disables).
    _C.INPUT.COLOR_JITTER = 0.4
    # fb.resnet.torch's AlexNet-style PCA lighting noise, std of the eigen-coefficients (0 disables).
    _C.INPUT.LIGHTING = 0.1
    _C.INPUT.MEAN = IMAGENET_MEAN  # RGB in [0, 1], subtracted after the augmentation
    _C.INPUT.STD = IMAGENET_STD  # RGB in [0, 1], divided by after the mean

    _C.SOLVER = CN()
    # Total batch over all processes (32 per GPU on 8 GPUs).
    _C.SOLVER.IMS_PER_BATCH = 256
    # lr for a batch of REFERENCE_BATCH; the lr used is BASE_LR * IMS_PER_BATCH / REFERENCE_BATCH.
    _C.SOLVER.BASE_LR = 0.1
    _C.SOLVER.REFERENCE_BATCH = 256  # the batch BASE_LR is given for (the linear scaling rule)
    _C.SOLVER.MOMENTUM = 0.9  # SGD momentum
    _C.SOLVER.NESTEROV = True  # Nesterov momentum (fb.resnet.torch)
    _C.SOLVER.WEIGHT_DECAY = 1e-4  # on every weight, norms included (fb.resnet.torch)
    _C.SOLVER.EPOCHS = 90  # passes over the training split
    # lr is divided by GAMMA at the start of each of these epochs.
    _C.SOLVER.STEPS = (30, 60, 80)
    _C.SOLVER.GAMMA = 0.1  # the lr factor at each of SOLVER.STEPS
    # "" (fp32, default: exact), "bf16" or "fp16" autocast (see docs/speed.md).
    _C.SOLVER.AMP = ""
    add_run_config(_C)  # DETERMINISTIC, SOLVER.MEMORY_FORMAT
    _C.register_renamed_key(
        "SOLVER.CHANNELS_LAST",
        "SOLVER.MEMORY_FORMAT",
        message='use SOLVER.MEMORY_FORMAT "channels_last", "contiguous" or "auto" (the default)',
    )

    _C.TEST = CN()
    # Single centre crop: resize the shorter side to RESIZE, crop CROP_SIZE. Table 5's 320x320
    # test is RESIZE 365 (= 320 * 256 / 224), CROP_SIZE 320.
    _C.TEST.RESIZE = 256
    _C.TEST.CROP_SIZE = 224  # side of the centre crop evaluated
    _C.TEST.IMS_PER_BATCH = 256  # evaluation batch over all processes
    # "" : the val folder has the model's classes. Else a text file naming the model's classes in
    # index order (a training run's OUTPUT_DIR/classes.txt): the val folder may hold any subset of
    # them, and only those classes' logits compete. Table 6's 1K-way test of an ImageNet-5K model
    # is --eval-only on the ImageNet-1K folder with the 5K run's classes.txt.
    _C.TEST.CLASS_SUBSET = ""

    _C.LOG_PERIOD = 20  # iterations between log lines (and metrics.json entries)
    _C.OUTPUT_DIR = "output/imagenet"  # checkpoints, metrics.json, final_metrics.json, classes.txt
    _C.SEED = 0  # every random draw derives from (SEED, epoch, rank): two runs give the same stream
    _C.VERSION = 2  # detectron2's CfgNode only merges files into a config of its latest version
    return _C


_AMP_DTYPES = {"": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(cfg) -> torch.dtype | None:
    """The autocast dtype of ``SOLVER.AMP`` (None: plain fp32)."""
    if cfg.SOLVER.AMP not in _AMP_DTYPES:
        raise ConfigError(f"SOLVER.AMP is {cfg.SOLVER.AMP!r}; expected one of {list(_AMP_DTYPES)}")
    return _AMP_DTYPES[cfg.SOLVER.AMP]
