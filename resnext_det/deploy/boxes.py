"""Box operations of the C4 detector's inference, written so that ``torch.export`` and
``torch.onnx.export`` can trace them.

detectron2's own versions (``find_top_rpn_proposals``, ``fast_rcnn_inference``,
``detector_postprocess``) take and return ``Boxes``/``Instances`` and branch in Python on how many
boxes there are (torchvision's ``batched_nms`` picks its algorithm by ``boxes.numel()``). An
exported graph cannot branch on a count it only learns at run time, so these functions compute
the same results with tensor operations only: every count is a tensor shape, every choice a mask.
``tests/deploy/test_boxes.py`` checks each against detectron2's function on the same inputs.
"""

from __future__ import annotations

import torch
from torchvision.ops import nms

# torchvision's fake (shape-only) kernel of ``torchvision::nms``, which ``torch.export`` traces
# with, declares at least 2 kept boxes (``create_unbacked_symint``'s default minimum), and the
# compiled .pt2 program then refuses an image whose NMS keeps 0 or 1 (``Expected u3 >= 2 but
# received 1``). NMS keeps between 0 and all of its boxes; this says so.


@torch.library.register_fake("torchvision::nms")
def _nms_kept_indices(boxes, scores, iou_threshold):
    kept = torch.library.get_ctx().new_dynamic_size(min=0)
    return boxes.new_empty(kept, dtype=torch.long)


__all__ = [
    "apply_box_deltas",
    "batched_nms",
    "clip_boxes",
    "grid_anchors",
    "nonempty",
]


def grid_anchors(
    cell_anchors: torch.Tensor, height: int, width: int, stride: int, offset: float
) -> torch.Tensor:
    """Anchors of a ``height x width`` feature map in detectron2's order: location-major (row by
    row), then the cell anchors (``DefaultAnchorGenerator``'s ``_grid_anchors``)."""
    shift_x = torch.arange(width, dtype=torch.float32, device=cell_anchors.device) * stride + offset * stride
    shift_y = torch.arange(height, dtype=torch.float32, device=cell_anchors.device) * stride + offset * stride
    grid_y, grid_x = torch.meshgrid(shift_y, shift_x, indexing="ij")
    shifts = torch.stack((grid_x, grid_y, grid_x, grid_y), dim=-1).reshape(-1, 1, 4)
    return (shifts + cell_anchors.view(1, -1, 4)).reshape(-1, 4)


def apply_box_deltas(
    deltas: torch.Tensor, boxes: torch.Tensor, weights: tuple[float, ...], scale_clamp: float
) -> torch.Tensor:
    """``Box2BoxTransform.apply_deltas``: ``deltas`` (R, 4k) relative to ``boxes`` (R, 4) -> (R, 4k)."""
    deltas = deltas.float()
    boxes = boxes.to(deltas.dtype)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx = deltas[:, 0::4] / wx
    dy = deltas[:, 1::4] / wy
    dw = torch.clamp(deltas[:, 2::4] / ww, max=scale_clamp)
    dh = torch.clamp(deltas[:, 3::4] / wh, max=scale_clamp)
    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    pred_w = torch.exp(dw) * widths[:, None]
    pred_h = torch.exp(dh) * heights[:, None]
    x1 = pred_ctr_x - 0.5 * pred_w
    y1 = pred_ctr_y - 0.5 * pred_h
    x2 = pred_ctr_x + 0.5 * pred_w
    y2 = pred_ctr_y + 0.5 * pred_h
    return torch.stack((x1, y1, x2, y2), dim=-1).reshape(deltas.shape)


def clip_boxes(boxes: torch.Tensor, height, width) -> torch.Tensor:
    """``Boxes.clip``: x into [0, width], y into [0, height]; ``boxes`` (..., 4)."""
    x1 = boxes[..., 0].clamp(min=0, max=width)
    y1 = boxes[..., 1].clamp(min=0, max=height)
    x2 = boxes[..., 2].clamp(min=0, max=width)
    y2 = boxes[..., 3].clamp(min=0, max=height)
    return torch.stack((x1, y1, x2, y2), dim=-1)


def nonempty(boxes: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """``Boxes.nonempty``: a mask of the boxes wider and taller than ``threshold``."""
    return ((boxes[:, 2] - boxes[:, 0]) > threshold) & ((boxes[:, 3] - boxes[:, 1]) > threshold)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou_threshold: float):
    """NMS within each class: indices of the kept boxes by decreasing score.

    The classes are made disjoint by shifting each class's boxes beyond every other's, the way
    torchvision's ``batched_nms`` does below 4000 boxes on the CPU (and detectron2 through it). Its
    per-class loop above that size gives the same boxes; it is not used here because the choice
    depends on a count the exported graph does not know in advance.
    """
    # boxes are clipped to the image (>= 0); the zero keeps max() defined when there are none
    span = torch.cat((boxes.reshape(-1), boxes.new_zeros(1))).max()
    offsets = classes.to(boxes.dtype) * (span + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)
