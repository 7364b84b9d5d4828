# LazyConfig twin of configs/COCO-Detection/faster_rcnn_X101_32x4d_C4.yaml:
# Faster R-CNN C4 end to end (Detectron's 1x),
# ResNeXt template (101, 32, 4) as depth, cardinality, bottleneck width.
from .common.c4 import c4_dataloader, c4_model, c4_schedule, optimizer, train

model = c4_model("faster_rcnn", 101, 32, 4)
dataloader = c4_dataloader(16)
lr_multiplier = c4_schedule(90000, (60000, 80000))
optimizer.lr = 0.02
train.max_iter = 90000
