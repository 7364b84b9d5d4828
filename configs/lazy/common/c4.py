"""The pieces every LazyConfig twin of configs/COCO-Detection/*.yaml shares (as detectron2's
configs/common does): the C4 model in its three forms, COCO trainval35k / minival data, SGD, the
step schedules and the train settings, each the same as its YAML twin (tests/test_lazy_configs.py
builds both and compares state-dict keys, shapes and schedules).

    from .common.c4 import c4_model, c4_dataloader, c4_schedule, optimizer, train
    model = c4_model("faster_rcnn", depth=50, cardinality=32, bottleneck_width=4)
"""

import resnext_det  # noqa: F401  (prepares detectron2; must come first)
from resnext_det.data.train_stream import build_resumable_detection_loader
from resnext_det.modeling import ResNeXtRes5ROIHeads, build_resnext_trunk
from resnext_det.modeling.roi_heads import resnext_res5_head

import torch
from detectron2.config import LazyCall as L
from detectron2.data import DatasetMapper, build_detection_test_loader, get_detection_dataset_dicts
from detectron2.data import transforms as T
from detectron2.evaluation import COCOEvaluator
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.meta_arch import GeneralizedRCNN, ProposalNetwork
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.proposal_generator import RPN, StandardRPNHead
from detectron2.modeling.roi_heads import FastRCNNOutputLayers
from detectron2.solver import WarmupParamScheduler
from detectron2.solver.build import get_default_optimizer_params
from fvcore.common.param_scheduler import MultiStepParamScheduler

#: the RGB input with ImageNet mean / std in 0-255 units (Base-ResNeXt-C4.yaml)
PIXEL_MEAN = [123.675, 116.28, 103.53]
PIXEL_STD = [58.395, 57.12, 57.375]


def c4_model(
    kind: str,
    depth: int = 50,
    cardinality: int = 32,
    bottleneck_width: int = 4,
    *,
    stem_out_channels: int = 64,
    res2_out_channels: int = 256,
    norm: str = "FrozenBN",
    freeze_at: int = 2,
    anchor_sizes=(32, 64, 128, 256, 512),
    num_classes: int = 80,
):
    """``kind``: "faster_rcnn" (end to end), "rpn" (stage 1) or "fast_rcnn" (stage 2, on
    precomputed proposals). The res5 head takes its template (depth, cardinality, width, norm,
    block form) from ``model.backbone``, so one override such as ``model.backbone.norm=BN`` changes
    both; ``res2_out_channels`` also sets the RPN's and the box predictor's input widths."""
    backbone = L(build_resnext_trunk)(
        depth=depth,
        cardinality=cardinality,
        bottleneck_width=bottleneck_width,
        stem_out_channels=stem_out_channels,
        res2_out_channels=res2_out_channels,
        norm=norm,
        block_form="grouped",
        shortcuts=True,
        out_features=["res4"],
        freeze_at=freeze_at,
    )
    rpn = L(RPN)(
        in_features=["res4"],
        head=L(StandardRPNHead)(in_channels=4 * res2_out_channels, num_anchors=3 * len(anchor_sizes)),
        anchor_generator=L(DefaultAnchorGenerator)(
            sizes=[list(anchor_sizes)], aspect_ratios=[0.5, 1.0, 2.0], strides=[16], offset=0.0
        ),
        anchor_matcher=L(Matcher)(thresholds=[0.3, 0.7], labels=[0, -1, 1], allow_low_quality_matches=True),
        box2box_transform=L(Box2BoxTransform)(weights=[1.0, 1.0, 1.0, 1.0]),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=(12000, 6000),  # (training, test); stage 1's proposal files keep these too
        post_nms_topk=(2000, 1000),
        nms_thresh=0.7,
    )
    if kind == "rpn":
        return L(ProposalNetwork)(
            backbone=backbone, proposal_generator=rpn, pixel_mean=PIXEL_MEAN, pixel_std=PIXEL_STD
        )
    template = {k: f"${{...backbone.{k}}}" for k in _RES5_TEMPLATE}  # from roi_heads.res5 up to model
    roi_heads = L(ResNeXtRes5ROIHeads)(
        num_classes=num_classes,
        batch_size_per_image=64 if kind == "fast_rcnn" else 512,
        positive_fraction=0.25,
        proposal_matcher=L(Matcher)(thresholds=[0.5], labels=[0, 1], allow_low_quality_matches=False),
        in_features=["res4"],
        pooler=L(ROIPooler)(output_size=14, scales=(1.0 / 16,), sampling_ratio=0, pooler_type="ROIAlignV2"),
        res5=L(resnext_res5_head)(**template),
        box_predictor=L(FastRCNNOutputLayers)(
            input_shape=L(ShapeSpec)(channels=8 * res2_out_channels, height=1, width=1),
            test_score_thresh=0.05,
            box2box_transform=L(Box2BoxTransform)(weights=(10, 10, 5, 5)),
            num_classes="${..num_classes}",
        ),
    )
    return L(GeneralizedRCNN)(
        backbone=backbone,
        proposal_generator=None if kind == "fast_rcnn" else rpn,
        roi_heads=roi_heads,
        pixel_mean=PIXEL_MEAN,
        pixel_std=PIXEL_STD,
        input_format="RGB",
    )


#: what the res5 head shares with the trunk (res4 -> res5 needs the same template)
_RES5_TEMPLATE = (
    "depth", "cardinality", "bottleneck_width", "stem_out_channels", "res2_out_channels", "norm",
    "block_form", "shortcuts",
)  # fmt: skip


def c4_dataloader(
    images_per_batch: int = 16,
    proposal_topk=None,
    *,
    train_datasets=("coco_2014_train", "coco_2014_valminusminival"),
    test_dataset: str = "coco_2014_minival",
    min_size: int = 800,
    max_size: int = 1333,
    num_workers: int = 4,
):
    """trainval35k for training, minival for testing, shorter side 800 (max 1333), RGB; with
    ``proposal_topk`` (stage 2: training, test) the mapper keeps that many precomputed proposals
    per image. Training reads resnext_det's resumable stream (exact ``--resume``; ``seed``
    negative: drawn once and kept in the checkpoints)."""
    mapper = dict(image_format="RGB", use_instance_mask=False)
    return dict(
        train=L(build_resumable_detection_loader)(
            dataset=L(get_detection_dataset_dicts)(names=tuple(train_datasets)),
            mapper=L(DatasetMapper)(
                is_train=True,
                augmentations=[
                    L(T.ResizeShortestEdge)(
                        short_edge_length=(min_size,), max_size=max_size, sample_style="choice"
                    ),
                    L(T.RandomFlip)(horizontal=True),
                ],
                precomputed_proposal_topk=proposal_topk[0] if proposal_topk else None,
                **mapper,
            ),
            total_batch_size=images_per_batch,
            seed=-1,
            aspect_ratio_grouping=True,
            num_workers=num_workers,
        ),
        test=L(build_detection_test_loader)(
            dataset=L(get_detection_dataset_dicts)(names=test_dataset, filter_empty=False),
            mapper=L(DatasetMapper)(
                is_train=False,
                augmentations=[L(T.ResizeShortestEdge)(short_edge_length=min_size, max_size=max_size)],
                precomputed_proposal_topk=proposal_topk[1] if proposal_topk else None,
                **mapper,
            ),
            num_workers=num_workers,
        ),
        evaluator=L(COCOEvaluator)(dataset_name="${..test.dataset.names}"),
    )


def c4_schedule(max_iter: int, steps, warmup_iters: int = 1000):
    """detectron2's default warm-up (linear, from 0.001) then lr x0.1 at each of ``steps``."""
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[0.1**k for k in range(len(steps) + 1)], milestones=list(steps), num_updates=max_iter
        ),
        warmup_length=warmup_iters / max_iter,
        warmup_method="linear",
        warmup_factor=0.001,
    )


optimizer = L(torch.optim.SGD)(
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0),
    lr=0.02,
    momentum=0.9,
    weight_decay=1e-4,
)

train = dict(
    output_dir="./output",
    init_checkpoint="",  # converted ImageNet weights (tools/convert_weights.py), as MODEL.WEIGHTS
    max_iter=90000,
    amp=dict(enabled=False),
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    checkpointer=dict(period=5000, max_to_keep=100),
    eval_period=0,  # at the end only, as the YAML configs' TEST.EVAL_PERIOD 0
    log_period=20,
    device="cuda",
    memory_format="auto",  # SOLVER.MEMORY_FORMAT of the YAML configs: channels_last on the CPU
    seed=-1,  # the global RNGs (model initialisation): SEED of the YAML configs; negative: drawn
    val_loss_period=0,  # TEST.VAL_LOSS_PERIOD: the training losses on the test sets every N iterations
    best_metric="",  # TEST.BEST_METRIC: model_best.pth by this metric ("": bbox/AP, an RPN's AR@100)
    deterministic=False,  # DETERMINISTIC: deterministic kernels, no cuDNN autotuning
    # SOLVER.REFERENCE_WORLD_SIZE: the schedule is for 8 processes; on others the batch and lr
    # scale with them, the iterations and steps inversely (resnext_det's scale_to_processes)
    reference_world_size=8,
    fold_frozen_bn=True,  # TEST.FOLD_FROZEN_BN: FrozenBN folded into the convolutions to evaluate / run
    # TEST.AUG: test-time augmentation (stage 2 and end-to-end models), detectron2's default views
    test_aug=dict(
        enabled=False, min_sizes=(400, 500, 600, 700, 800, 900, 1000, 1100, 1200), max_size=4000, flip=True
    ),
)
