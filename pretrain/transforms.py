"""fb.resnet.torch's ImageNet transforms (the paper's Sec. 4 augmentation), on torchvision.

torchvision provides the random-resized crop, flip and colour jitter; the PCA lighting noise of
AlexNet / fb.resnet.torch has no torchvision equivalent, so ``Lighting`` is written here.
"""

from __future__ import annotations

import torch
from torchvision import transforms as T

__all__ = ["Lighting", "build_train_transform", "build_eval_transform"]

# Eigen-decomposition of ImageNet's RGB pixel covariance, as published with fb.resnet.torch.
_EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
_EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])


class Lighting(torch.nn.Module):
    """Add ``eigvec @ (alpha * eigval)`` to every pixel, alpha ~ N(0, alphastd) per image."""

    def __init__(self, alphastd: float):
        super().__init__()
        self.alphastd = alphastd

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.alphastd == 0:
            return image
        alpha = torch.normal(0.0, self.alphastd, size=(3,))
        rgb = (_EIGVEC * (alpha * _EIGVAL)).sum(dim=1)
        return image + rgb.view(3, 1, 1)


def build_train_transform(cfg) -> T.Compose:
    i = cfg.INPUT
    steps = [T.RandomResizedCrop(i.CROP_SIZE, scale=tuple(i.CROP_SCALE), ratio=tuple(i.CROP_RATIO))]
    if i.HFLIP:
        steps.append(T.RandomHorizontalFlip())
    if i.COLOR_JITTER > 0:
        steps.append(T.ColorJitter(i.COLOR_JITTER, i.COLOR_JITTER, i.COLOR_JITTER))
    steps.append(T.ToTensor())
    if i.LIGHTING > 0:
        steps.append(Lighting(i.LIGHTING))
    steps.append(T.Normalize(i.MEAN, i.STD))
    return T.Compose(steps)


def build_eval_transform(cfg) -> T.Compose:
    return T.Compose(
        [
            T.Resize(cfg.TEST.RESIZE),
            T.CenterCrop(cfg.TEST.CROP_SIZE),
            T.ToTensor(),
            T.Normalize(cfg.INPUT.MEAN, cfg.INPUT.STD),
        ]
    )
