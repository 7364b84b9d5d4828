"""Test-time augmentation for the two-stage model (``TEST.AUG.ENABLED``; a LazyConfig's
``train.test_aug``, the same ``TTASettings``): several test sizes and a horizontal flip, the
detections of all views merged, as detectron2's ``GeneralizedRCNNWithTTA`` does for one
end-to-end model (which ``with_test_augmentation`` uses for such a model).

Each view is the original image resized to one of ``TEST.AUG.MIN_SIZES`` (shorter side, at most
``TEST.AUG.MAX_SIZE``), and flipped too with ``TEST.AUG.FLIP``. In a view, the Fast R-CNN sees
that view's proposals: stage 1 run on the view (``TwoStageTTA``, plain images), or, when the
proposals were precomputed (``FastRCNNWithTTA``, ``tools/eval_coco.py``), stage 1's boxes for the
image mapped into the view. Every view's detections are mapped back to the original image and
merged by class-wise NMS at the Fast R-CNN's test NMS threshold (``MODEL.ROI_HEADS.NMS_THRESH_TEST``),
keeping its detections per image (``TEST.DETECTIONS_PER_IMAGE``), with detectron2's own
``fast_rcnn_inference_single_image``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.data.detection_utils import read_image
from detectron2.modeling.meta_arch import ProposalNetwork
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference_single_image
from detectron2.structures import Boxes, Instances
from torch import nn

from ..errors import ConfigError

__all__ = [
    "FastRCNNWithTTA",
    "TTASettings",
    "TwoStageTTA",
    "merge_detections",
    "tta_views",
    "with_test_augmentation",
]


@dataclass(frozen=True)
class TTASettings:
    """The views of test-time augmentation: every shorter side of ``min_sizes`` (at most
    ``max_size``), each also flipped with ``flip``. A YAML config's ``TEST.AUG`` and a
    LazyConfig's ``train.test_aug`` are this, written in their own keys."""

    min_sizes: tuple[int, ...]
    max_size: int
    flip: bool

    @classmethod
    def from_yaml(cls, cfg) -> TTASettings | None:
        """``TEST.AUG`` of a YAML config; None unless ``TEST.AUG.ENABLED``."""
        aug = cfg.TEST.AUG
        return cls(tuple(aug.MIN_SIZES), aug.MAX_SIZE, aug.FLIP) if aug.ENABLED else None

    @classmethod
    def from_lazy(cls, cfg) -> TTASettings | None:
        """``train.test_aug`` of a LazyConfig (the twin of ``TEST.AUG``); None unless enabled
        (or where a file predates the key)."""
        aug = cfg.train.get("test_aug")
        if aug is None or not aug.get("enabled", False):
            return None
        return cls(tuple(aug.min_sizes), aug.max_size, aug.flip)


def tta_views(image: np.ndarray, aug: TTASettings) -> list[tuple[np.ndarray, T.TransformList]]:
    """(view image HWC, transform original -> view) for every size of ``aug.min_sizes``, each
    also flipped with ``aug.flip``."""
    views = []
    for size in aug.min_sizes:
        resized, resize = T.apply_augmentations([T.ResizeShortestEdge(size, aug.max_size)], np.copy(image))
        views.append((resized, resize))
        if aug.flip:
            flip = T.HFlipTransform(resized.shape[1])
            views.append((flip.apply_image(resized), resize + flip))
    return views


def merge_detections(instances: list[Instances], transforms: list, image_hw, box_predictor) -> Instances:
    """Every view's detections in the original image's coordinates, then class-wise NMS at the
    Fast R-CNN's own test settings (``box_predictor``: its NMS threshold, detections per image
    and classes, i.e. ``MODEL.ROI_HEADS.NMS_THRESH_TEST`` and ``TEST.DETECTIONS_PER_IMAGE``)."""
    boxes, scores, classes = [], [], []
    for found, transform in zip(instances, transforms, strict=True):
        view_boxes = found.pred_boxes.tensor.detach().cpu().numpy()
        boxes.append(torch.as_tensor(transform.inverse().apply_box(view_boxes), dtype=torch.float32))
        scores.append(found.scores.detach().cpu())
        classes.append(found.pred_classes.detach().cpu())
    boxes, scores, classes = torch.cat(boxes), torch.cat(scores), torch.cat(classes)
    # fast_rcnn_inference_single_image takes a score per class (+ background): only the detected
    # class's column is non-zero, as in detectron2's GeneralizedRCNNWithTTA
    per_class = torch.zeros(len(boxes), box_predictor.num_classes + 1)
    per_class[torch.arange(len(boxes)), classes] = scores
    merged, _ = fast_rcnn_inference_single_image(
        boxes,
        per_class,
        tuple(image_hw),
        1e-8,
        box_predictor.test_nms_thresh,
        box_predictor.test_topk_per_image,
    )
    return merged


def _chw(image: np.ndarray, device) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)).astype("float32"), device=device)


def _view_detections(fast_rcnn, view: np.ndarray, proposals: Instances) -> Instances:
    """Stage 2 on one view, its detections in the view's pixels."""
    h, w = view.shape[:2]
    inputs = [{"image": _chw(view, fast_rcnn.device), "height": h, "width": w, "proposals": proposals}]
    return fast_rcnn(inputs)[0]["instances"]


class TwoStageTTA:
    """``TwoStagePredictor`` with test-time augmentation: ``predictor(image_bgr)`` -> Instances."""

    def __init__(self, predictor, aug: TTASettings):
        self.predictor, self.aug = predictor, aug

    @torch.no_grad()
    def __call__(self, image_bgr: np.ndarray) -> Instances:
        p = self.predictor
        image = image_bgr[:, :, ::-1] if p.input_format == "RGB" else image_bgr
        found, transforms = [], []
        for view, transform in tta_views(image, self.aug):
            h, w = view.shape[:2]
            tensor = _chw(view, p.fast_rcnn.device)
            proposals = p.rpn([{"image": tensor, "height": h, "width": w}])[0]["proposals"][: p.topk]
            found.append(_view_detections(p.fast_rcnn, view, proposals))
            transforms.append(transform)
        return merge_detections(found, transforms, image.shape[:2], p.fast_rcnn.roi_heads.box_predictor)


class FastRCNNWithTTA(nn.Module):
    """Stage 2 with precomputed proposals, under test-time augmentation: the model
    ``inference_on_dataset`` evaluates when ``TEST.AUG.ENABLED`` (``with_test_augmentation``)."""

    def __init__(self, model, aug: TTASettings, input_format: str):
        super().__init__()
        self.model, self.aug, self.input_format = model, aug, input_format

    @torch.no_grad()
    def forward(self, batched_inputs: list[dict]) -> list[dict]:
        return [{"instances": self._one(x)} for x in batched_inputs]

    def _one(self, record: dict) -> Instances:
        image = read_image(record["file_name"], format=self.input_format)
        height, width = image.shape[:2]
        given = record["proposals"]  # in the coordinates of the mapper's test-size image
        scale_y, scale_x = height / given.image_size[0], width / given.image_size[1]
        original = given.proposal_boxes.tensor.cpu().numpy() * np.array([scale_x, scale_y, scale_x, scale_y])
        found, transforms = [], []
        for view, transform in tta_views(image, self.aug):
            proposals = Instances(view.shape[:2])
            boxes = torch.as_tensor(
                transform.apply_box(original), dtype=torch.float32, device=self.model.device
            )
            proposals.proposal_boxes = Boxes(boxes)
            proposals.objectness_logits = given.objectness_logits.to(self.model.device)
            found.append(_view_detections(self.model, view, proposals))
            transforms.append(transform)
        return merge_detections(found, transforms, (height, width), self.model.roi_heads.box_predictor)


def with_test_augmentation(model, aug: TTASettings, input_format: str, key: str = "TEST.AUG.ENABLED"):
    """The model that an evaluation under ``aug`` runs: stage 2 on precomputed proposals through
    ``FastRCNNWithTTA``, an end-to-end Faster R-CNN through detectron2's ``GeneralizedRCNNWithTTA``
    (given the settings it reads, from the model itself); stage 1 has none (``key`` names the
    setting in the error)."""
    if isinstance(model, ProposalNetwork):
        raise ConfigError(
            f"{key} applies to detectors: stage 1 (an RPN) has no test-time augmentation; "
            "enable it for stage 2 (tools/eval_coco.py) instead"
        )
    if model.proposal_generator is None:
        return FastRCNNWithTTA(model, aug, input_format)
    from detectron2.config import get_cfg
    from detectron2.modeling import GeneralizedRCNNWithTTA

    cfg = get_cfg()  # what GeneralizedRCNNWithTTA reads, and nothing else
    cfg.TEST.AUG.MIN_SIZES, cfg.TEST.AUG.MAX_SIZE, cfg.TEST.AUG.FLIP = aug.min_sizes, aug.max_size, aug.flip
    predictor = model.roi_heads.box_predictor
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = predictor.num_classes
    cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST = predictor.test_nms_thresh
    cfg.TEST.DETECTIONS_PER_IMAGE = predictor.test_topk_per_image
    cfg.INPUT.FORMAT = input_format
    return GeneralizedRCNNWithTTA(cfg, model)
