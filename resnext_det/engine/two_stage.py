"""Run stage 1 (RPN) and stage 2 (Fast R-CNN) together on plain images.

A Fast R-CNN trained on precomputed proposals (``PrecomputedProposals``) cannot run on an image
alone. ``TwoStagePredictor`` resizes the image once, asks the RPN for proposals on that resized
image the way stage 1 wrote the test proposal files (its own test ``pre_nms_topk`` /
``post_nms_topk``), keeps the top ``proposal_topk_test`` (``DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST``)
as stage 2 read them, and hands both to the Fast R-CNN, whose detections come back in the
original image's pixels.

``load_stage_pair`` rebuilds both from the stages' output folders (their ``config.yaml`` and
``model_final.pth``; either stage trained from a YAML config or a LazyConfig, read through
``engine.trained_stage``), with every check a pair must pass; ``resnext_det.deploy`` exports the
same pair as one graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from detectron2.data import transforms as T

from ..errors import ConfigError
from ..layers.frozen_bn import fold_frozen_batchnorm
from .trained_stage import (
    TrainedStage,
    build_trained_model,
    load_stage_dir,
    read_trained_stage,
    stage_config_kind,
    stage_files,
)
from .tta import TwoStageTTA

__all__ = [
    "PAIRED_SETTINGS",
    "StagePair",
    "TrainedStage",
    "TwoStagePredictor",
    "build_trained_model",
    "check_stage_pair",
    "load_stage_pair",
    "stage_files",
]

#: The settings both stages must agree on: they see the same resized image.
PAIRED_SETTINGS = ("input_format", "min_size_test", "max_size_test")


def check_stage_pair(rpn: TrainedStage, fast_rcnn: TrainedStage) -> None:
    """Stage 1 must be a ``ProposalNetwork``, stage 2 a Fast R-CNN on precomputed proposals, and
    both must see the same image (``PAIRED_SETTINGS``); ``ConfigError`` naming what differs, in
    each stage's own keys."""
    if not rpn.is_proposal_network:
        raise ConfigError(f"{rpn.source} must build a ProposalNetwork (stage 1), not {rpn.architecture}")
    if fast_rcnn.is_proposal_network or not fast_rcnn.takes_proposals:
        raise ConfigError(
            f"{fast_rcnn.source} must be a Fast R-CNN on precomputed proposals (stage 2: "
            f"{fast_rcnn.key('takes_proposals')}), not a {fast_rcnn.architecture} with its own proposals"
        )
    for setting in PAIRED_SETTINGS:
        ours, theirs = getattr(rpn, setting), getattr(fast_rcnn, setting)
        if ours != theirs:
            raise ConfigError(
                f"{rpn.key(setting)} differs between the RPN ({rpn.source}: {ours}) and the Fast R-CNN "
                f"({fast_rcnn.source}, {fast_rcnn.key(setting)}: {theirs}): both stages must see the "
                "same image"
            )


@dataclass(frozen=True)
class StagePair:
    """Both trained stages (``TrainedStage``: weights = each folder's ``model_final.pth``)."""

    rpn: TrainedStage
    fast_rcnn: TrainedStage
    rpn_dir: Path
    fast_rcnn_dir: Path


def load_stage_pair(
    rpn_dir: str | Path, fast_rcnn_dir: str | Path, device: str = "cpu", opts: list[str] | None = None
) -> StagePair:
    """The two stages of ``rpn_dir`` and ``fast_rcnn_dir`` (``--rpn`` / ``--fast-rcnn``), each
    from a YAML or a LazyConfig run, checked to form a pair. ``opts`` apply to both configs, in
    their syntax (``KEY VALUE`` or ``key=value``): both stages must then be of one kind."""
    flags = {"--rpn": Path(rpn_dir), "--fast-rcnn": Path(fast_rcnn_dir)}
    if opts:
        kinds = {flag: stage_config_kind(stage_files(d, flag)[0]) for flag, d in flags.items()}
        if len(set(kinds.values())) > 1:
            raise ConfigError(
                f"config overrides {' '.join(opts)} cannot apply to both stages: --rpn is a {kinds['--rpn']} "
                f"run and --fast-rcnn a {kinds['--fast-rcnn']} run, whose keys differ"
            )
    rpn, fast_rcnn = (load_stage_dir(d, flag, device, opts) for flag, d in flags.items())
    check_stage_pair(rpn, fast_rcnn)
    return StagePair(rpn, fast_rcnn, Path(rpn_dir), Path(fast_rcnn_dir))


class TwoStagePredictor:
    """``predictor(image_bgr)`` -> detectron2 ``Instances``, like ``DefaultPredictor``.

    Args:
        rpn: stage 1 (a ``ProposalNetwork``): a ``TrainedStage``, or its config (YAML, or a
            LazyConfig), its weights (``MODEL.WEIGHTS`` / ``train.init_checkpoint``) the trained ones.
        fast_rcnn: stage 2, the same way.
    """

    def __init__(self, rpn, fast_rcnn):
        rpn = read_trained_stage(rpn, "rpn_cfg")
        fast_rcnn = read_trained_stage(fast_rcnn, "fast_rcnn_cfg")
        check_stage_pair(rpn, fast_rcnn)
        self.rpn, self.fast_rcnn = rpn.build_model(), fast_rcnn.build_model()
        for model, stage in ((self.rpn, rpn), (self.fast_rcnn, fast_rcnn)):
            if stage.fold_frozen_bn:
                fold_frozen_batchnorm(model)
        size = fast_rcnn.min_size_test
        self.resize = T.ResizeShortestEdge([size, size], fast_rcnn.max_size_test)
        self.input_format = fast_rcnn.input_format
        self.topk = fast_rcnn.proposal_topk_test
        #: where the class names come from: stage 2's test (else training) datasets
        self.dataset_names = list(fast_rcnn.dataset_names)
        #: stage 2's test-time augmentation: sizes and flips, the views' detections merged (engine.tta)
        aug = fast_rcnn.test_augmentation
        self.tta = TwoStageTTA(self, aug) if aug is not None else None

    @classmethod
    def from_stage_dirs(cls, rpn_dir, fast_rcnn_dir, device: str = "cpu") -> TwoStagePredictor:
        """The trained pair of two stage output folders (``load_stage_pair``)."""
        pair = load_stage_pair(rpn_dir, fast_rcnn_dir, device)
        return cls(pair.rpn, pair.fast_rcnn)

    @classmethod
    def from_stage1_dir(cls, rpn_dir, fast_rcnn) -> TwoStagePredictor:
        """The RPN of stage 1's output folder (``--proposals``) and the Fast R-CNN of
        ``fast_rcnn`` (its config or ``TrainedStage``), on its device: a Fast R-CNN of the paper's
        schedule on plain images, without any proposal file (``tools/eval_coco.py --images``)."""
        fast_rcnn = read_trained_stage(fast_rcnn, "--config-file")
        return cls(load_stage_dir(rpn_dir, "--proposals", fast_rcnn.device), fast_rcnn)

    @torch.no_grad()
    def __call__(self, image_bgr: np.ndarray):
        """``image_bgr``: HxWx3 uint8 in BGR order (as ``cv2.imread`` / ``read_image(format="BGR")``)."""
        if self.tta is not None:
            return self.tta(image_bgr)
        image = image_bgr[:, :, ::-1] if self.input_format == "RGB" else image_bgr
        height, width = image.shape[:2]
        resized = self.resize.get_transform(image).apply_image(image)
        device = self.fast_rcnn.device
        chw = np.ascontiguousarray(resized.transpose(2, 0, 1)).astype("float32")
        tensor = torch.as_tensor(chw, device=device)
        rh, rw = resized.shape[:2]
        # height/width = the resized size: proposals stay in the coordinates the Fast R-CNN sees
        proposals = self.rpn([{"image": tensor, "height": rh, "width": rw}])[0]["proposals"]
        proposals = proposals[: self.topk]
        return self.fast_rcnn([{"image": tensor, "height": height, "width": width, "proposals": proposals}])[
            0
        ]["instances"]
