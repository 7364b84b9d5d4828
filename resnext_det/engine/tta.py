"""Test-time augmentation for the two-stage model (``TEST.AUG.ENABLED``): several test sizes and
a horizontal flip, the detections of all views merged, as detectron2's
``GeneralizedRCNNWithTTA`` does for one end-to-end model.

Each view is the original image resized to one of ``TEST.AUG.MIN_SIZES`` (shorter side, at most
``TEST.AUG.MAX_SIZE``), and flipped too with ``TEST.AUG.FLIP``. In a view, the Fast R-CNN sees
that view's proposals: stage 1 run on the view (``TwoStageTTA``, plain images), or, when the
proposals were precomputed (``FastRCNNWithTTA``, ``tools/eval_coco.py``), stage 1's boxes for the
image mapped into the view. Every view's detections are mapped back to the original image and
merged by class-wise NMS at ``MODEL.ROI_HEADS.NMS_THRESH_TEST``, keeping
``TEST.DETECTIONS_PER_IMAGE``, with detectron2's own ``fast_rcnn_inference_single_image``.
"""

from __future__ import annotations

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.data.detection_utils import read_image
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference_single_image
from detectron2.structures import Boxes, Instances
from torch import nn

__all__ = ["FastRCNNWithTTA", "TwoStageTTA", "merge_detections", "tta_views"]


def tta_views(image: np.ndarray, cfg) -> list[tuple[np.ndarray, T.TransformList]]:
    """(view image HWC, transform original -> view) for every size of ``TEST.AUG.MIN_SIZES``,
    each also flipped with ``TEST.AUG.FLIP``."""
    aug = cfg.TEST.AUG
    views = []
    for size in aug.MIN_SIZES:
        resized, resize = T.apply_augmentations([T.ResizeShortestEdge(size, aug.MAX_SIZE)], np.copy(image))
        views.append((resized, resize))
        if aug.FLIP:
            flip = T.HFlipTransform(resized.shape[1])
            views.append((flip.apply_image(resized), resize + flip))
    return views


def merge_detections(
    instances: list[Instances], transforms: list, image_hw, num_classes: int, cfg
) -> Instances:
    """Every view's detections in the original image's coordinates, then class-wise NMS."""
    boxes, scores, classes = [], [], []
    for found, transform in zip(instances, transforms, strict=True):
        view_boxes = found.pred_boxes.tensor.detach().cpu().numpy()
        boxes.append(torch.as_tensor(transform.inverse().apply_box(view_boxes), dtype=torch.float32))
        scores.append(found.scores.detach().cpu())
        classes.append(found.pred_classes.detach().cpu())
    boxes, scores, classes = torch.cat(boxes), torch.cat(scores), torch.cat(classes)
    # fast_rcnn_inference_single_image takes a score per class (+ background): only the detected
    # class's column is non-zero, as in detectron2's GeneralizedRCNNWithTTA
    per_class = torch.zeros(len(boxes), num_classes + 1)
    per_class[torch.arange(len(boxes)), classes] = scores
    merged, _ = fast_rcnn_inference_single_image(
        boxes,
        per_class,
        tuple(image_hw),
        1e-8,
        cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
        cfg.TEST.DETECTIONS_PER_IMAGE,
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

    def __init__(self, predictor, cfg):
        self.predictor, self.cfg = predictor, cfg

    @torch.no_grad()
    def __call__(self, image_bgr: np.ndarray) -> Instances:
        p = self.predictor
        image = image_bgr[:, :, ::-1] if p.input_format == "RGB" else image_bgr
        found, transforms = [], []
        for view, transform in tta_views(image, self.cfg):
            h, w = view.shape[:2]
            tensor = _chw(view, p.fast_rcnn.device)
            proposals = p.rpn([{"image": tensor, "height": h, "width": w}])[0]["proposals"][: p.topk]
            found.append(_view_detections(p.fast_rcnn, view, proposals))
            transforms.append(transform)
        num_classes = self.cfg.MODEL.ROI_HEADS.NUM_CLASSES
        return merge_detections(found, transforms, image.shape[:2], num_classes, self.cfg)


class FastRCNNWithTTA(nn.Module):
    """Stage 2 with precomputed proposals, under test-time augmentation: the model
    ``inference_on_dataset`` evaluates when ``TEST.AUG.ENABLED`` (``DetectionRecipe.test``)."""

    def __init__(self, cfg, model):
        super().__init__()
        self.cfg, self.model = cfg, model
        self.input_format = cfg.INPUT.FORMAT

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
        for view, transform in tta_views(image, self.cfg):
            proposals = Instances(view.shape[:2])
            boxes = torch.as_tensor(
                transform.apply_box(original), dtype=torch.float32, device=self.model.device
            )
            proposals.proposal_boxes = Boxes(boxes)
            proposals.objectness_logits = given.objectness_logits.to(self.model.device)
            found.append(_view_detections(self.model, view, proposals))
            transforms.append(transform)
        return merge_detections(
            found, transforms, (height, width), self.cfg.MODEL.ROI_HEADS.NUM_CLASSES, self.cfg
        )
