"""``TwoStageGraph``: the paper's separately trained RPN and Fast R-CNN as one module, from a
plain image to detections, that ``torch.export`` and ``torch.onnx.export`` can trace.

What ``TwoStagePredictor`` does in Python around two detectron2 models happens here inside one
``forward``, so that the exported graph needs nothing else:

1. the uint8 BGR image is resized to the test size (``ResizeShortestEdge``'s size rule; bilinear
   with antialiasing on uint8, which gives PIL's pixels, what detectron2's test mapper feeds),
   reordered to the models' channel order and normalised by each stage's own mean/std;
2. the RPN (its own stem..res4, no sharing with stage 2) scores the anchors, keeps the top
   ``pre_nms_topk``, decodes and clips them, drops empty boxes, runs NMS and keeps
   ``min(post_nms_topk, PRECOMPUTED_PROPOSAL_TOPK_TEST)``: the proposals stage 2 would read;
3. the Fast R-CNN (its stem..res4, RoIAlign, res5 head, box predictor) classifies them,
   applies its box deltas (per class, or one set for every class), the score threshold and
   per-class NMS, and keeps the top ``DETECTIONS_PER_IMAGE``;
4. the boxes are scaled back to the input image's pixels and clipped, empty ones dropped
   (``detector_postprocess``).

The convolutions, heads and predictors are the trained detectron2 modules themselves (with
FrozenBN folded in, ``fold_frozen_batchnorm``); only the box bookkeeping between them is
re-written (``resnext_det.deploy.boxes``), because detectron2's branches on box counts.
"""

from __future__ import annotations

import torch
from detectron2.layers import ROIAlign
from torch import nn
from torch.nn import functional as F
from torchvision.ops import RoIPool, nms, roi_align, roi_pool

from ..errors import ConfigError
from ..layers.frozen_bn import fold_frozen_batchnorm
from .boxes import apply_box_deltas, batched_nms, clip_boxes, grid_anchors, nonempty

__all__ = ["TwoStageGraph", "resized_size"]


def resized_size(height, width, min_size: int, max_size: int):
    """``ResizeShortestEdge.get_output_shape``: the shorter side to ``min_size`` unless the
    longer one would then exceed ``max_size``, each side rounded to the nearest pixel.

    In integer arithmetic, so that an exported graph computes it from the input's symbolic size
    instead of baking in the example's: ``round(side * a / b)`` is ``(2 * side * a + b) // (2 * b)``.
    Rounding is monotone in the scale, so the smaller of the two candidate scales is taken per side.
    (A side landing exactly on .5 rounds up here; detectron2's float arithmetic may round it down.)
    """
    short, long = torch.sym_min(height, width), torch.sym_max(height, width)

    def rounded(side, numerator, denominator):
        return (2 * side * numerator + denominator) // (2 * denominator)

    return (
        torch.sym_min(rounded(height, min_size, short), rounded(height, max_size, long)),
        torch.sym_min(rounded(width, min_size, short), rounded(width, max_size, long)),
    )


def _new_size_symbol(side, max_size: int):
    """Under torch.export, ``side`` (an expression of the input's symbolic size) as a new symbol
    in [1, max_size]: every shape after the resize is then a short expression of it instead of
    ``resized_size``'s nested Min and floor divisions, which the exporter's symbolic reasoning
    (sympy) re-simplifies at each of the trunk's layers: 9 of 16 s of exporting the demo's pair to
    ONNX (2026-12-05). The ONNX graph computes the same size from the input's shape. AOTInductor
    compiled such a graph into wrong detections (torch 2.14: 50 instead of 46 on the demo's
    example), so the ``.pt2`` keeps the expression. Eager (an int): ``side`` itself."""
    if not isinstance(side, torch.SymInt):
        return side
    symbol = torch.scalar_tensor(side, dtype=torch.int64).item()
    torch._check(symbol >= 1)
    torch._check(symbol <= max_size)
    return symbol


class _Normalize(nn.Module):
    """One stage's ``(x - PIXEL_MEAN) / PIXEL_STD``; each stage keeps its own (they may differ)."""

    def __init__(self, model):
        super().__init__()
        self.register_buffer("mean", model.pixel_mean.detach().clone().view(1, -1, 1, 1))
        self.register_buffer("std", model.pixel_std.detach().clone().view(1, -1, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.mean) / self.std


class TwoStageGraph(nn.Module):
    """Image (H, W, 3) uint8 BGR -> ``(boxes (N, 4) xyxy float32 in the image's pixels,
    scores (N,), classes (N,) int64)``.

    Args:
        rpn: stage 1's ``ProposalNetwork`` with its trained weights loaded.
        fast_rcnn: stage 2's ``GeneralizedRCNN`` (``PrecomputedProposals``) with its weights loaded.
        input_format: "RGB" or "BGR", the stages' ``INPUT.FORMAT``.
        min_size, max_size: ``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``.
        proposal_topk: ``DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST`` of stage 2.

    Both models are put in eval mode and their FrozenBN folded (in place).
    """

    def __init__(
        self, rpn, fast_rcnn, *, input_format: str, min_size: int, max_size: int, proposal_topk: int
    ):
        super().__init__()
        if input_format not in ("RGB", "BGR"):
            raise ConfigError(f"INPUT.FORMAT must be RGB or BGR for export, got {input_format!r}")
        for model in (rpn, fast_rcnn):
            model.eval()
            fold_frozen_batchnorm(model)
        self.flip_channels = input_format == "RGB"
        self.min_size, self.max_size = int(min_size), int(max_size)
        self.size_as_new_symbol = False  # write_onnx sets it while exporting: see preprocess

        generator = rpn.proposal_generator
        (self.rpn_feature,) = generator.in_features
        self.rpn_normalize = _Normalize(rpn)
        self.rpn_backbone = rpn.backbone
        self.rpn_head = generator.rpn_head
        anchors = generator.anchor_generator
        if len(anchors.strides) != 1:
            raise ConfigError("export supports the C4 detector's single RPN feature map (no FPN)")
        self.register_buffer("cell_anchors", next(iter(anchors.cell_anchors.buffers())).detach().clone())
        self.anchor_stride, self.anchor_offset = int(anchors.strides[0]), float(anchors.offset)
        self.rpn_weights = tuple(generator.box2box_transform.weights)
        self.rpn_scale_clamp = float(generator.box2box_transform.scale_clamp)
        self.pre_nms_topk = int(generator.pre_nms_topk[False])
        self.post_nms_topk = min(int(generator.post_nms_topk[False]), int(proposal_topk))
        self.rpn_nms_thresh = float(generator.nms_thresh)
        self.min_box_size = float(generator.min_box_size)

        heads = fast_rcnn.roi_heads
        (self.box_feature,) = heads.in_features
        self.box_normalize = _Normalize(fast_rcnn)
        self.box_backbone = fast_rcnn.backbone
        (pooler,) = heads.pooler.level_poolers
        if not isinstance(pooler, (ROIAlign, RoIPool)):
            raise ConfigError(
                f"export supports ROIAlign / ROIAlignV2 / ROIPool poolers, not {type(pooler).__name__} "
                "(MODEL.ROI_BOX_HEAD.POOLER_TYPE)"
            )
        self.max_pooling = isinstance(pooler, RoIPool)  # the paper family's RoI pooling
        self.pooler_size = (
            tuple(pooler.output_size)
            if not isinstance(pooler.output_size, int)
            else (
                pooler.output_size,
                pooler.output_size,
            )
        )
        self.pooler_scale = float(pooler.spatial_scale)
        self.pooler_sampling = int(getattr(pooler, "sampling_ratio", 0))  # RoIAlign's only
        self.pooler_aligned = bool(getattr(pooler, "aligned", False))
        self.res5 = heads.res5
        predictor = heads.box_predictor
        self.cls_score, self.bbox_pred = predictor.cls_score, predictor.bbox_pred
        self.box_weights = tuple(predictor.box2box_transform.weights)
        self.box_scale_clamp = float(predictor.box2box_transform.scale_clamp)
        self.score_thresh = float(predictor.test_score_thresh)
        self.nms_thresh = float(predictor.test_nms_thresh)
        self.detections_per_image = int(predictor.test_topk_per_image)
        self.num_classes = int(heads.num_classes)
        # class-specific deltas (4 per class) or one set shared by every class
        # (MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG), as detectron2's FastRCNNOutputLayers makes
        self.box_classes = self.bbox_pred.out_features // 4
        if self.box_classes not in (1, self.num_classes) or self.bbox_pred.out_features % 4:
            raise ConfigError(
                f"the box predictor gives {self.bbox_pred.out_features} deltas per RoI; export "
                f"expects 4 (class-agnostic) or 4 x {self.num_classes} classes"
            )
        self.eval()

    def preprocess(self, image_bgr: torch.Tensor) -> torch.Tensor:
        """(H, W, 3) uint8 BGR -> (1, 3, h, w) float32 at the test size, in the models' channel order."""
        height, width = image_bgr.shape[0], image_bgr.shape[1]
        size = resized_size(height, width, self.min_size, self.max_size)
        if self.size_as_new_symbol:
            size = tuple(_new_size_symbol(side, self.max_size) for side in size)
        image = image_bgr.permute(2, 0, 1).unsqueeze(0)
        if self.flip_channels:
            image = image.flip(1)
        if image.device.type == "cpu":
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
            return image.float()
        # CUDA's antialiased kernel takes floats only: resize, then round as a uint8 image would be
        # (about 1 pixel value in 5 then differs by one level from PIL's; fixed at export time)
        image = F.interpolate(image.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
        return image.add_(0.5).floor_().clamp_(0, 255)

    def proposals(self, image: torch.Tensor) -> torch.Tensor:
        """Stage 1 on the resized image: (P, 4) proposal boxes, best first."""
        features = self.rpn_backbone(self.rpn_normalize(image))[self.rpn_feature]
        (logits,), (deltas,) = self.rpn_head([features])
        num_cell = self.cell_anchors.shape[0]
        grid_h, grid_w = features.shape[2], features.shape[3]
        logits = logits.permute(0, 2, 3, 1).reshape(-1)
        deltas = deltas.view(num_cell, 4, grid_h, grid_w).permute(2, 3, 0, 1).reshape(-1, 4)
        anchors = grid_anchors(self.cell_anchors, grid_h, grid_w, self.anchor_stride, self.anchor_offset)
        topk = torch.sym_min(self.pre_nms_topk, logits.shape[0])
        scores, index = logits.topk(topk)
        boxes = apply_box_deltas(deltas[index], anchors[index], self.rpn_weights, self.rpn_scale_clamp)
        boxes = clip_boxes(boxes, image.shape[2], image.shape[3])
        keep = nonempty(boxes, self.min_box_size) & torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
        boxes, scores = boxes[keep], scores[keep]
        keep = nms(boxes, scores, self.rpn_nms_thresh)[: self.post_nms_topk]
        return boxes[keep]

    def detections(self, image: torch.Tensor, proposals: torch.Tensor):
        """Stage 2 on the resized image: boxes (in its pixels), scores, classes."""
        features = self.box_backbone(self.box_normalize(image))[self.box_feature]
        # The RoI head runs on exactly post_nms_topk RoIs, zero boxes filling up the rest (they
        # are never candidates): a static batch for res5, which inductor compiles wrongly when
        # the batch is a data-dependent size (torch 2.14: different probabilities), and a fixed
        # cost per image. RoIs are independent, so the real ones' outputs are unchanged.
        count = proposals.shape[0]
        torch._check(count <= self.post_nms_topk)
        proposals = torch.cat((proposals, proposals.new_zeros(self.post_nms_topk - count, 4)))
        is_proposal = torch.arange(self.post_nms_topk, device=proposals.device) < count
        rois = torch.cat((proposals.new_zeros(proposals.shape[0], 1), proposals), dim=1)
        if self.max_pooling:
            pooled = roi_pool(features, rois, self.pooler_size, self.pooler_scale)
        else:
            pooled = roi_align(
                features, rois, self.pooler_size, self.pooler_scale, self.pooler_sampling, self.pooler_aligned
            )
        box_features = self.res5(pooled).mean(dim=(2, 3))
        probs = F.softmax(self.cls_score(box_features), dim=-1)[:, :-1]  # the last column: background
        boxes = apply_box_deltas(
            self.bbox_pred(box_features), proposals, self.box_weights, self.box_scale_clamp
        )
        boxes = boxes.view(-1, self.box_classes, 4).expand(-1, self.num_classes, 4)
        boxes = clip_boxes(boxes, image.shape[2], image.shape[3])
        finite = torch.isfinite(boxes).all(dim=2).all(dim=1) & torch.isfinite(probs).all(dim=1) & is_proposal
        candidate = (probs > self.score_thresh) & finite[:, None]  # padding rows never are
        roi_index, classes = candidate.nonzero(as_tuple=True)
        boxes, scores = boxes[roi_index, classes], probs[roi_index, classes]
        keep = batched_nms(boxes, scores, classes, self.nms_thresh)[: self.detections_per_image]
        return boxes[keep], scores[keep], classes[keep]

    def forward(self, image_bgr: torch.Tensor):
        image = self.preprocess(image_bgr)
        boxes, scores, classes = self.detections(image, self.proposals(image))
        scale_x, scale_y = image_bgr.shape[1] / image.shape[3], image_bgr.shape[0] / image.shape[2]
        x1, y1, x2, y2 = boxes.unbind(dim=1)
        boxes = torch.stack((x1 * scale_x, y1 * scale_y, x2 * scale_x, y2 * scale_y), dim=1)
        boxes = clip_boxes(boxes, image_bgr.shape[0], image_bgr.shape[1])
        keep = nonempty(boxes)
        return boxes[keep], scores[keep], classes[keep]
