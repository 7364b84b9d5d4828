# LazyConfig twin of configs/COCO-Detection/fast_rcnn_X101_32x4d_C4.yaml:
# stage 2 of the paper's schedule: Fast R-CNN on stage 1's proposals,
# ResNeXt template (101, 32, 4) as depth, cardinality, bottleneck width.
from .common.c4 import c4_dataloader, c4_model, c4_schedule, optimizer, train

model = c4_model("fast_rcnn", 101, 32, 4)
dataloader = c4_dataloader(8, proposal_topk=(2000, 1000))
lr_multiplier = c4_schedule(180000, (120000,))
optimizer.lr = 0.005
train.max_iter = 180000
