# LazyConfig twin of configs/COCO-Detection/paper/fast_rcnn_X101_64x4d_C4.yaml: stage 2 as the paper ran
# it (py-faster-rcnn's details: ../common/paper.py), ResNeXt template (101, 64, 4).
from ..common.paper import optimizer, paper_dataloader, paper_model, paper_schedule, train

model = paper_model("fast_rcnn", 101, 64, 4)
dataloader = paper_dataloader(8, proposal_topk=(2000, 300))
lr_multiplier = paper_schedule(180000, (120000,))
optimizer.lr = 0.005
train.max_iter = 180000
