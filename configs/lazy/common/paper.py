"""The paper family's LazyConfig pieces: the modern C4 pieces (``c4.py``) with every detail that
appendix B leaves to py-faster-rcnn, as in ``configs/COCO-Detection/paper/Base-*.yaml``, whose
comments name each value's source file (and docs/paper_fidelity.md, generated from them).
tests/test_lazy_configs.py builds each twin beside its YAML config and compares what they build.

    from ..common.paper import paper_model, paper_dataloader, paper_schedule, optimizer, train
"""

from .c4 import c4_dataloader, c4_model, c4_schedule, optimizer, train

#: py-faster-rcnn's input size (lib/fast_rcnn/config.py: SCALES (600,), MAX_SIZE 1000)
MIN_SIZE, MAX_SIZE = 600, 1000
#: py-faster-rcnn's RNG_SEED: the model's initialisation and the data stream
SEED = 3
#: above the anchor count of any 1000 px image: alt-opt's rpn_generate keeps every anchor before NMS
EVERY_ANCHOR = 100000


def paper_model(kind: str, depth: int, cardinality: int, bottleneck_width: int):
    """``c4_model`` ("rpn" or "fast_rcnn") with py-faster-rcnn's anchors, RPN sampling, losses,
    RoI pooling, background range and test NMS."""
    model = c4_model(kind, depth, cardinality, bottleneck_width, anchor_sizes=(64, 128, 256, 512))
    rpn = model.get("proposal_generator")
    if rpn is not None:
        rpn.anchor_boundary_thresh = 0
        rpn.smooth_l1_beta = 1.0 / 9.0  # sigma 3
        rpn.min_box_size = 16
        rpn.pre_nms_topk = (EVERY_ANCHOR, 6000)  # (training images' proposal files, test)
    heads = model.get("roi_heads")
    if heads is not None:
        heads.proposal_matcher.thresholds = [0.1, 0.5]  # background from IoU 0.1, not 0
        heads.proposal_matcher.labels = [-1, 0, 1]
        heads.pooler.pooler_type = "ROIPool"
        heads.box_predictor.smooth_l1_beta = 1.0  # sigma 1
        heads.box_predictor.test_nms_thresh = 0.3
    return model


def paper_dataloader(images_per_batch: int, proposal_topk=None):
    """``c4_dataloader`` at 600 / 1000 with the fixed seed; in stage 2 (``proposal_topk``:
    training, test) the top 300 test proposals."""
    if proposal_topk is not None:
        proposal_topk = (proposal_topk[0], 300)
    loader = c4_dataloader(images_per_batch, proposal_topk, min_size=MIN_SIZE, max_size=MAX_SIZE)
    loader["train"].seed = SEED
    return loader


def paper_schedule(max_iter: int, steps):
    """The step schedule without warm-up (Caffe's "step" policy)."""
    return c4_schedule(max_iter, steps, warmup_iters=0)


optimizer.params.bias_lr_factor = 2.0  # Caffe's lr_mult 2 on biases
train.seed = SEED

__all__ = ["optimizer", "paper_dataloader", "paper_model", "paper_schedule", "train"]
