# LazyConfig twin of configs/demo/fast_rcnn_tiny_C4.yaml: stage 2 (Fast R-CNN on stage 1's
# proposals, tools/train_fast_rcnn.py --proposals) on the generated demo data, CPU-sized.
from .tiny import c4_schedule, optimizer, tiny_dataloader, tiny_model, train

model = tiny_model("fast_rcnn")
model.roi_heads.batch_size_per_image = 32
model.roi_heads.positive_fraction = 0.5
model.roi_heads.box_predictor.test_nms_thresh = 0.3  # py-faster-rcnn's test NMS
model.roi_heads.box_predictor.cls_agnostic_bbox_reg = True
model.roi_heads.box_predictor.loss_weight = {"loss_box_reg": 2.0}
dataloader = tiny_dataloader(proposal_topk=(200, 100))
lr_multiplier = c4_schedule(600, (500,), warmup_iters=20)
optimizer.lr = 0.04
train.max_iter = 600
train.output_dir = "output/demo_fast_rcnn_lazy"
