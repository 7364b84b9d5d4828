# LazyConfig twin of configs/demo/rpn_tiny_C4.yaml: stage 1 (the RPN alone) on the generated
# demo data, CPU-sized; train.init_checkpoint takes the demo's converted pretrained weights.
from .tiny import c4_schedule, optimizer, tiny_dataloader, tiny_model, train

model = tiny_model("rpn")
dataloader = tiny_dataloader()
lr_multiplier = c4_schedule(600, (500,), warmup_iters=20)
optimizer.lr = 0.04
train.max_iter = 600
train.output_dir = "output/demo_rpn_lazy"
