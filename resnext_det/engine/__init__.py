"""What the tools share: config set-up and the detectron2 trainer with COCO evaluation."""

from .defaults import ResNeXtTrainer, setup_cfg
from .launch import launch

__all__ = ["ResNeXtTrainer", "launch", "setup_cfg"]
