"""What the tools share: config set-up and the detectron2 trainer with COCO evaluation.

(``attach_proposal_files`` and ``dump_proposals`` live in ``resnext_det.proposals``; they are
named here too, where the tools have always imported them.)"""

from ..proposals.handoff import attach_proposal_files, dump_proposals
from .defaults import ResNeXtTrainer, setup_cfg
from .launch import launch
from .stages import train_stage
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
