# LazyConfig twin of configs/COCO-Detection/paper/rpn_R101_C4.yaml: stage 1 as the paper ran it
# (py-faster-rcnn's details: ../common/paper.py), ResNeXt template (101, 1, 64).
from ..common.paper import optimizer, paper_dataloader, paper_model, paper_schedule, train

model = paper_model("rpn", 101, 1, 64)
dataloader = paper_dataloader(16)
lr_multiplier = paper_schedule(180000, (120000,))
optimizer.lr = 0.02
train.max_iter = 180000
