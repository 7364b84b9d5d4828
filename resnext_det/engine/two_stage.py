"""Run stage 1 (RPN) and stage 2 (Fast R-CNN) together on plain images.

A Fast R-CNN trained on precomputed proposals (``PrecomputedProposals``) cannot run on an image
alone. ``TwoStagePredictor`` resizes the image once, asks the RPN for proposals on that resized
image, keeps the top ``DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST`` as the proposal files would,
and hands both to the Fast R-CNN, whose detections come back in the original image's pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.modeling import build_model

from ..checkpoint.safe_checkpointer import SafeDetectionCheckpointer
from ..errors import ConfigError
from ..layers.frozen_bn import fold_frozen_batchnorm

__all__ = ["TwoStagePredictor"]


class TwoStagePredictor:
    """``predictor(image)`` -> detectron2 ``Instances``, like ``DefaultPredictor``.

    Args:
        rpn_cfg: stage 1's config (a ``ProposalNetwork``), MODEL.WEIGHTS = its trained weights.
        fast_rcnn_cfg: stage 2's config, MODEL.WEIGHTS = its trained weights.
    """

    def __init__(self, rpn_cfg, fast_rcnn_cfg):
        if rpn_cfg.MODEL.META_ARCHITECTURE != "ProposalNetwork":
            raise ConfigError(f"rpn_cfg must build a ProposalNetwork, not {rpn_cfg.MODEL.META_ARCHITECTURE}")
        if fast_rcnn_cfg.MODEL.PROPOSAL_GENERATOR.NAME != "PrecomputedProposals":
            raise ConfigError("fast_rcnn_cfg must use MODEL.PROPOSAL_GENERATOR.NAME PrecomputedProposals")
        for key in ("FORMAT", "MIN_SIZE_TEST", "MAX_SIZE_TEST"):
            if rpn_cfg.INPUT[key] != fast_rcnn_cfg.INPUT[key]:
                raise ConfigError(
                    f"INPUT.{key} differs between the RPN ({rpn_cfg.INPUT[key]}) and the Fast R-CNN "
                    f"({fast_rcnn_cfg.INPUT[key]}): both stages must see the same image"
                )
        self.rpn, self.fast_rcnn = build_model(rpn_cfg).eval(), build_model(fast_rcnn_cfg).eval()
        SafeDetectionCheckpointer(self.rpn).load(rpn_cfg.MODEL.WEIGHTS)
        SafeDetectionCheckpointer(self.fast_rcnn).load(fast_rcnn_cfg.MODEL.WEIGHTS)
        for model, cfg in ((self.rpn, rpn_cfg), (self.fast_rcnn, fast_rcnn_cfg)):
            if cfg.TEST.FOLD_FROZEN_BN:
                fold_frozen_batchnorm(model)
        test = fast_rcnn_cfg.INPUT
        self.resize = T.ResizeShortestEdge([test.MIN_SIZE_TEST, test.MIN_SIZE_TEST], test.MAX_SIZE_TEST)
        self.input_format = test.FORMAT
        self.topk = fast_rcnn_cfg.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST

    @torch.no_grad()
    def __call__(self, image_bgr: np.ndarray):
        """``image_bgr``: HxWx3 uint8 in BGR order (as ``cv2.imread`` / ``read_image(format="BGR")``)."""
        image = image_bgr[:, :, ::-1] if self.input_format == "RGB" else image_bgr
        height, width = image.shape[:2]
        resized = self.resize.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)).astype("float32"))
        rh, rw = resized.shape[:2]
        # height/width = the resized size: proposals stay in the coordinates the Fast R-CNN sees
        proposals = self.rpn([{"image": tensor, "height": rh, "width": rw}])[0]["proposals"]
        proposals = proposals[: self.topk]
        return self.fast_rcnn([{"image": tensor, "height": height, "width": width, "proposals": proposals}])[
            0
        ]["instances"]
