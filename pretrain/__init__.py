"""ImageNet-1K classification pretraining (paper Sec. 4): to come with the pretraining issue."""
