"""What the LazyConfig twins of configs/demo/{rpn,fast_rcnn}_tiny_C4.yaml share: the CPU-sized
ResNeXt-50 4x4d template with narrow stages, the generated demo data at short side 256, CPU
training with fixed seeds (see configs/demo/Base-Pretrained-tiny-C4.yaml for why each value)."""

from ..common.c4 import c4_dataloader, c4_model, c4_schedule, optimizer, train  # noqa: F401

#: square anchors only: every demo object is drawn in a square box
ANCHOR_SIZES = (24, 34, 48, 68, 96, 136)


def tiny_model(kind: str):
    model = c4_model(kind, 50, 4, 4, stem_out_channels=16, res2_out_channels=32, anchor_sizes=ANCHOR_SIZES)
    if kind != "rpn":
        model.roi_heads.num_classes = 3
    if kind != "fast_rcnn":
        rpn = model.proposal_generator
        rpn.anchor_generator.aspect_ratios = [1.0]
        rpn.head.num_anchors = len(ANCHOR_SIZES)
        rpn.pre_nms_topk = (1000, 500)
        rpn.post_nms_topk = (200, 100)
    if kind != "rpn":
        model.roi_heads.batch_size_per_image = 32
        model.roi_heads.box_predictor.test_topk_per_image = 50
    return model


def tiny_dataloader(proposal_topk=None):
    dataloader = c4_dataloader(
        4,
        proposal_topk,
        train_datasets=("resnext_demo_train",),
        test_dataset="resnext_demo_val",
        min_size=256,
        max_size=384,
        num_workers=0,
    )
    dataloader["train"].seed = 0
    return dataloader


train.device = "cpu"
train.seed = 0
train.checkpointer.period = 100000
train.reference_world_size = 0  # the demo's batch is for this machine, on any process count
