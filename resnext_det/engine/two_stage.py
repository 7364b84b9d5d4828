"""Run stage 1 (RPN) and stage 2 (Fast R-CNN) together on plain images.

A Fast R-CNN trained on precomputed proposals (``PrecomputedProposals``) cannot run on an image
alone. ``TwoStagePredictor`` resizes the image once, asks the RPN for proposals on that resized
image the way stage 1 wrote the test proposal files (its own ``MODEL.RPN.PRE_NMS_TOPK_TEST`` /
``POST_NMS_TOPK_TEST``), keeps the top ``DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST``
as stage 2 read them, and hands both to the Fast R-CNN, whose detections come back in the
original image's pixels.

``load_stage_pair`` rebuilds both from the stages' output folders (their ``config.yaml`` and
``model_final.pth``), with every check a pair must pass; ``resnext_det.deploy`` exports the same
pair as one graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.modeling import build_model

from ..checkpoint.convert import describe_mismatches
from ..checkpoint.safe_checkpointer import (
    SafeDetectionCheckpointer,
    read_checkpoint_file,
    reads_as_torch_file,
)
from ..errors import ConfigError, MissingFileError, WeightsMismatchError
from ..layers.frozen_bn import fold_frozen_batchnorm
from .defaults import setup_cfg
from .tta import TwoStageTTA

__all__ = [
    "PAIRED_INPUT_KEYS",
    "StagePair",
    "TwoStagePredictor",
    "build_trained_model",
    "check_stage_pair",
    "load_stage_pair",
    "stage_files",
]

#: The ``INPUT`` keys both stages must agree on: they see the same resized image.
PAIRED_INPUT_KEYS = ("FORMAT", "MIN_SIZE_TEST", "MAX_SIZE_TEST")


def check_stage_pair(
    rpn_cfg, fast_rcnn_cfg, rpn_name: str = "rpn_cfg", fast_rcnn_name: str = "fast_rcnn_cfg"
) -> None:
    """Stage 1 must be a ``ProposalNetwork``, stage 2 a ``PrecomputedProposals`` Fast R-CNN, and
    both must see the same image (``PAIRED_INPUT_KEYS``); ``ConfigError`` naming what differs."""
    if rpn_cfg.MODEL.META_ARCHITECTURE != "ProposalNetwork":
        raise ConfigError(
            f"{rpn_name} must build a ProposalNetwork (stage 1), not {rpn_cfg.MODEL.META_ARCHITECTURE}"
        )
    if fast_rcnn_cfg.MODEL.PROPOSAL_GENERATOR.NAME != "PrecomputedProposals":
        raise ConfigError(
            f"{fast_rcnn_name} must use MODEL.PROPOSAL_GENERATOR.NAME PrecomputedProposals (stage 2), "
            f"not {fast_rcnn_cfg.MODEL.PROPOSAL_GENERATOR.NAME}"
        )
    for key in PAIRED_INPUT_KEYS:
        if rpn_cfg.INPUT[key] != fast_rcnn_cfg.INPUT[key]:
            raise ConfigError(
                f"INPUT.{key} differs between the RPN ({rpn_name}: {rpn_cfg.INPUT[key]}) and the Fast "
                f"R-CNN ({fast_rcnn_name}: {fast_rcnn_cfg.INPUT[key]}): both stages must see the same image"
            )


def build_trained_model(cfg, source: str = "") -> torch.nn.Module:
    """``build_model(cfg)`` in eval mode with ``cfg.MODEL.WEIGHTS`` loaded strictly: a checkpoint
    whose tensors do not match the model key for key and shape for shape is a
    ``WeightsMismatchError`` (detectron2 would only warn and leave those layers random). Empty
    ``MODEL.WEIGHTS`` keeps the random initialisation; detectron2's own ``.pkl`` formats (model
    zoo, Caffe2) load through its checkpointer, with its name matching."""
    model = build_model(cfg).eval()
    if cfg.MODEL.WEIGHTS and not reads_as_torch_file(cfg.MODEL.WEIGHTS):
        SafeDetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)  # detectron2's .pkl formats
    elif cfg.MODEL.WEIGHTS:
        checkpoint = read_checkpoint_file(cfg.MODEL.WEIGHTS)
        weights = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else checkpoint
        if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
            raise WeightsMismatchError(
                f"{cfg.MODEL.WEIGHTS}: expected a detectron2 checkpoint (a 'model' state dict)"
            )
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        # BN's step counter: written by a BN model, not part of the function (FrozenBN has none)
        weights = {k: v for k, v in weights.items() if k in expected or not k.endswith("num_batches_tracked")}
        problems = describe_mismatches(expected, {k: tuple(v.shape) for k, v in weights.items()})
        if problems:
            raise WeightsMismatchError(
                f"{cfg.MODEL.WEIGHTS} does not fit the model of {source or 'its config'}: {problems}"
            )
        model.load_state_dict(weights, strict=True)
    return model


@dataclass(frozen=True)
class StagePair:
    """Both stages' configs, ``MODEL.WEIGHTS`` pointing at each folder's ``model_final.pth``."""

    rpn_cfg: object
    fast_rcnn_cfg: object
    rpn_dir: Path
    fast_rcnn_dir: Path


def stage_files(directory: str | Path, flag: str) -> tuple[Path, Path]:
    """A finished stage's ``(config.yaml, model_final.pth)`` in ``directory`` (named on the
    command line by ``flag``), or a ``MissingFileError`` saying which is missing."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingFileError(f"{flag} {directory} is not a folder: expected a stage's OUTPUT_DIR")
    files = directory / "config.yaml", directory / "model_final.pth"
    for required in files:
        if not required.is_file():
            raise MissingFileError(
                f"{required} not found: {flag} must be a finished stage's OUTPUT_DIR "
                "(its config.yaml and model_final.pth)"
            )
    return files


def load_stage_pair(
    rpn_dir: str | Path, fast_rcnn_dir: str | Path, device: str = "cpu", opts: list[str] | None = None
) -> StagePair:
    """The two stages of ``rpn_dir`` and ``fast_rcnn_dir`` (``--rpn`` / ``--fast-rcnn``), checked
    to form a pair. ``opts`` (``KEY VALUE`` overrides) apply to both configs."""
    cfgs = []
    for directory, flag in ((Path(rpn_dir), "--rpn"), (Path(fast_rcnn_dir), "--fast-rcnn")):
        config, weights = stage_files(directory, flag)
        overrides = [*(opts or []), "MODEL.WEIGHTS", str(weights), "MODEL.DEVICE", device]
        cfgs.append(setup_cfg(str(config), overrides))
    check_stage_pair(*cfgs, rpn_name=f"--rpn {rpn_dir}", fast_rcnn_name=f"--fast-rcnn {fast_rcnn_dir}")
    return StagePair(cfgs[0], cfgs[1], Path(rpn_dir), Path(fast_rcnn_dir))


class TwoStagePredictor:
    """``predictor(image)`` -> detectron2 ``Instances``, like ``DefaultPredictor``.

    Args:
        rpn_cfg: stage 1's config (a ``ProposalNetwork``), MODEL.WEIGHTS = its trained weights.
        fast_rcnn_cfg: stage 2's config, MODEL.WEIGHTS = its trained weights.
    """

    def __init__(self, rpn_cfg, fast_rcnn_cfg):
        check_stage_pair(rpn_cfg, fast_rcnn_cfg)
        self.rpn = build_trained_model(rpn_cfg, "the RPN's config")
        self.fast_rcnn = build_trained_model(fast_rcnn_cfg, "the Fast R-CNN's config")
        for model, cfg in ((self.rpn, rpn_cfg), (self.fast_rcnn, fast_rcnn_cfg)):
            if cfg.TEST.FOLD_FROZEN_BN:
                fold_frozen_batchnorm(model)
        test = fast_rcnn_cfg.INPUT
        self.resize = T.ResizeShortestEdge([test.MIN_SIZE_TEST, test.MIN_SIZE_TEST], test.MAX_SIZE_TEST)
        self.input_format = test.FORMAT
        self.topk = fast_rcnn_cfg.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST
        #: where the class names come from: stage 2's test (else training) datasets
        self.dataset_names = list(fast_rcnn_cfg.DATASETS.TEST) or list(fast_rcnn_cfg.DATASETS.TRAIN)
        #: stage 2's TEST.AUG.ENABLED: sizes and flips, the views' detections merged (engine.tta)
        self.tta = TwoStageTTA(self, fast_rcnn_cfg) if fast_rcnn_cfg.TEST.AUG.ENABLED else None

    @classmethod
    def from_stage_dirs(cls, rpn_dir, fast_rcnn_dir, device: str = "cpu") -> TwoStagePredictor:
        """The trained pair of two stage output folders (``load_stage_pair``)."""
        pair = load_stage_pair(rpn_dir, fast_rcnn_dir, device)
        return cls(pair.rpn_cfg, pair.fast_rcnn_cfg)

    @classmethod
    def from_stage1_dir(cls, rpn_dir, fast_rcnn_cfg) -> TwoStagePredictor:
        """The RPN of stage 1's output folder (``--proposals``) and the Fast R-CNN of
        ``fast_rcnn_cfg``, on its device: a Fast R-CNN of the paper's schedule on plain images,
        without any proposal file (``tools/eval_coco.py --images``)."""
        config, weights = stage_files(rpn_dir, "--proposals")
        device = fast_rcnn_cfg.MODEL.DEVICE
        rpn_cfg = setup_cfg(str(config), ["MODEL.WEIGHTS", str(weights), "MODEL.DEVICE", device])
        return cls(rpn_cfg, fast_rcnn_cfg)

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
