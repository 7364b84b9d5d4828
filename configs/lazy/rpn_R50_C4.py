# LazyConfig twin of configs/COCO-Detection/rpn_R50_C4.yaml:
# stage 1 of the paper's schedule: the RPN alone,
# ResNeXt template (50, 1, 64) as depth, cardinality, bottleneck width.
from .common.c4 import c4_dataloader, c4_model, c4_schedule, optimizer, train

model = c4_model("rpn", 50, 1, 64)
dataloader = c4_dataloader(16)
lr_multiplier = c4_schedule(180000, (120000,))
optimizer.lr = 0.02
train.max_iter = 180000
