"""CIFAR training (appendix A): the config, the network and what its checkpoints record.

``get_cifar_cfg()`` is ``get_pretrain_cfg()`` with the CIFAR recipe of the paper: ResNeXt-29
8x64d, batch 128 (16 per GPU on 8 GPUs), lr 0.1, weight decay 5e-4, momentum 0.9 (Nesterov, as
fb.resnet.torch), 300 epochs with the lr divided by 10 at epochs 150 and 225, random 32x32 crops
of the zero-padded 40x40 image and flips. Training and evaluation are pretraining's own
(``pretrain.engine``: detectron2's trainer, hooks and atomic checkpoints, exact ``--resume``),
with the CIFAR data and network put in.
"""

from __future__ import annotations

from resnext_det.config import resnext_template_from_cfg
from resnext_det.modeling.cifar import resnext_cifar
from resnext_det.template import CIFAR_DEPTHS, Template

import torch
from detectron2.config import CfgNode as CN

from .cifar_data import CIFAR_MEAN, CIFAR_STD
from .config import get_pretrain_cfg
from .model import build_classifier

__all__ = ["build_cifar_classifier", "cifar_checkpoint_metadata", "cifar_template_from_cfg", "get_cifar_cfg"]


def get_cifar_cfg() -> CN:
    """Defaults for ResNeXt-29 (8x64d) on CIFAR-10; YAML files override them."""
    cfg = get_pretrain_cfg()
    cfg.MODEL.RESNEXT.DEPTH = 29  # appendix A's ResNeXt-29
    cfg.MODEL.RESNEXT.CARDINALITY = 8  # appendix A's 8x64d (16x64d: the other Table 7 model)
    cfg.MODEL.RESNEXT.BOTTLENECK_WIDTH = 64  # appendix A's 8x64d
    cfg.MODEL.NUM_CLASSES = 10  # CIFAR-10 (100 for CIFAR-100)
    # "cifar10" (data_batch_1..5, test_batch) or "cifar100" (train, test): the python batches.
    cfg.DATA.DATASET = "cifar10"
    cfg.DATA.ROOT = "datasets/cifar-10-batches-py"  # the folder of the python batches (not appendix A's)
    cfg.DATA.NUM_WORKERS = 4  # data loading processes per training process (not appendix A's)
    cfg.INPUT.CROP_SIZE = 32  # appendix A: 32x32 crops
    # Zero padding on each side before the random crop: 32x32 crops of the 40x40 padded image.
    cfg.INPUT.PAD = 4
    cfg.INPUT.COLOR_JITTER = 0.0  # appendix A: translation and flipping only
    cfg.INPUT.LIGHTING = 0.0  # appendix A: translation and flipping only
    cfg.INPUT.MEAN = CIFAR_MEAN  # the CIFAR training images' per-channel mean (0-1 units; not appendix A's)
    cfg.INPUT.STD = CIFAR_STD  # the CIFAR training images' per-channel std (0-1 units; not appendix A's)
    cfg.SOLVER.IMS_PER_BATCH = 128
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.REFERENCE_BATCH = 128
    cfg.SOLVER.WEIGHT_DECAY = 5e-4
    cfg.SOLVER.EPOCHS = 300
    cfg.SOLVER.STEPS = (150, 225)
    cfg.TEST.IMS_PER_BATCH = 128  # the evaluation's batch (not appendix A's)
    cfg.OUTPUT_DIR = "output/cifar"  # where the run writes (not appendix A's)
    return cfg


def cifar_template_from_cfg(cfg) -> Template:
    """``MODEL.RESNEXT`` checked for a CIFAR network (depth 9n + 2), errors naming the key."""
    return resnext_template_from_cfg(cfg, depths=CIFAR_DEPTHS)


def build_cifar_classifier(cfg) -> torch.nn.Module:
    return build_classifier(cfg, resnext_cifar, cifar_template_from_cfg)


def cifar_checkpoint_metadata(cfg) -> dict:
    """Stored in every checkpoint: the network, its classes and the input it expects."""
    return {
        "network": "cifar",
        "template": cifar_template_from_cfg(cfg).asdict(),
        "num_classes": cfg.MODEL.NUM_CLASSES,
        "dataset": cfg.DATA.DATASET,
        "input": {
            "format": "RGB",
            "range": "0-1",
            "size": 32,
            "mean": list(cfg.INPUT.MEAN),
            "std": list(cfg.INPUT.STD),
        },
    }
