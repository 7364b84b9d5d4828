"""What the tools share: config set-up and the one training engine (``engine.trainer``) that
YAML and LazyConfig runs (and the ImageNet pretraining) train through.

(``attach_proposal_files`` and ``dump_proposals`` live in ``resnext_det.proposals``; they are
named here too, where the tools have always imported them.)"""

from ..proposals.handoff import attach_proposal_files, dump_proposals
from .defaults import DetectionRecipe, setup_cfg, trainer_from_yaml
from .launch import launch
from .stages import train_stage
from .trainer import ResNeXtTrainer
from .two_stage import TwoStagePredictor

__all__ = [
    "DetectionRecipe",
    "TwoStagePredictor",
    "ResNeXtTrainer",
    "attach_proposal_files",
    "dump_proposals",
    "launch",
    "setup_cfg",
    "train_stage",
    "trainer_from_yaml",
]
