"""What the tools share: config set-up and the detectron2 trainer with COCO evaluation."""

from .defaults import ResNeXtTrainer, setup_cfg

__all__ = ["ResNeXtTrainer", "setup_cfg"]
