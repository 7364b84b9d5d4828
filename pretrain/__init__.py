"""ImageNet-1K classification pretraining (paper Sec. 4): config, data (layout checks, loaders),
transforms (the fb.resnet.torch augmentation), model, schedule, hooks, and the training loop
(engine); its checkpoints load into the detection backbone after ``tools/convert_weights.py``."""
