"""What the tools share: config set-up and the detectron2 trainer with COCO evaluation."""

from .defaults import ResNeXtTrainer, setup_cfg
from .launch import launch
from .stages import attach_proposal_files, dump_proposals, train_stage
from .two_stage import TwoStagePredictor

__all__ = [
    "TwoStagePredictor",
    "ResNeXtTrainer",
    "attach_proposal_files",
    "dump_proposals",
    "launch",
    "setup_cfg",
    "train_stage",
]
