"""The ResNeXt bottleneck block in the three equivalent forms of Fig. 3 (Xie et al., 2017).

A block splits its input into ``cardinality`` low-dimensional paths of width ``d``, transforms
each (1x1 -> 3x3), and aggregates them back to ``out_channels`` (Sec. 3.2-3.3). Fig. 3 draws
three ways of writing the same function:

* ``AggregatedBlock``, ``"aggregated"`` (a): C complete branches (1x1, 3x3, 1x1) whose outputs
  are summed; BN is applied once after the sum, before the shortcut is added (footnote 6).
* ``ConcatenatedBlock``, ``"concat"`` (b): C branches of (1x1, 3x3) concatenated, then one dense 1x1.
* ``ResNeXtBlock``, ``"grouped"`` (c, default): 1x1, a grouped 3x3 with C groups, 1x1. Fastest
  by far; the production form. The other two are kept to show the paper's equivalence.

Each convolution is followed by a norm (BN in the paper) and ReLU, ReLU again after the shortcut
add. Shortcuts are identity unless the shape changes, then a 1x1 projection + norm ("type B",
Sec. 4). Downsampling is a stride 2 in the 3x3 (Sec. 4, as fb.resnet.torch), not in the 1x1.

Form (c) uses the same module names as detectron2's ``BottleneckBlock`` (``conv1``, ``conv2``,
``conv3``, ``shortcut``, each with ``.norm``), so its weights load into either implementation.
``resnext_det.modeling.block_forms`` maps state dicts between the forms.

Every convolution is a ``FrozenBNConv2d``: detectron2's ``Conv2d`` (same state dict) that folds a
frozen norm into its weights on the fly, which makes fine-tuning with FrozenBN faster.
"""

from __future__ import annotations

import math

import torch
from detectron2.layers import CNNBlockBase, get_norm
from torch import nn
from torch.nn import functional as F

from ..layers.frozen_bn import FrozenBNConv2d
from ..template import BLOCK_FORMS

__all__ = [
    "BLOCK_CLASSES",
    "AggregatedBlock",
    "ConcatenatedBlock",
    "ResNeXtBlock",
    "block_class",
    "he_init_",
]


def he_init_(conv: nn.Conv2d, equivalent_out_channels: int | None = None) -> None:
    """He (MSRA) initialisation as fb.resnet.torch does it: N(0, sqrt(2 / (k*k*n_out))).

    ``equivalent_out_channels`` is the output width of the matching layer in form (c), so that a
    branch convolution of form (a)/(b) draws from the same distribution as its grouped twin.
    """
    n_out = equivalent_out_channels or conv.out_channels
    fan_out = conv.kernel_size[0] * conv.kernel_size[1] * n_out
    nn.init.normal_(conv.weight, mean=0.0, std=math.sqrt(2.0 / fan_out))
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class _Branch(nn.Module):
    """One path of forms (a)/(b): 1x1 -> 3x3 (-> 1x1 in form (a), without a norm)."""

    def __init__(self, in_channels, width, out_channels, stride, norm, cardinality, with_conv3):
        super().__init__()
        self.conv1 = FrozenBNConv2d(in_channels, width, 1, bias=False, norm=get_norm(norm, width))
        self.conv2 = FrozenBNConv2d(
            width, width, 3, stride=stride, padding=1, bias=False, norm=get_norm(norm, width)
        )
        he_init_(self.conv1, width * cardinality)
        he_init_(self.conv2, width * cardinality)
        self.conv3 = None
        if with_conv3:
            self.conv3 = FrozenBNConv2d(width, out_channels, 1, bias=False)
            he_init_(self.conv3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))
        x = F.relu_(self.conv2(x))
        return x if self.conv3 is None else self.conv3(x)


class _Bottleneck(CNNBlockBase):
    """What the three forms share: the arguments and their checks, the shortcut (identity, or a
    1x1 projection + norm where the shape changes), the ReLU after the add, and the zero-init of
    the residual's last norm. A form defines ``_residual(x)`` and ``last_norm``.

    Args:
        in_channels: input channels.
        out_channels: output channels (256 in conv2, doubling at each stage).
        bottleneck_channels: total width of the grouped layers, ``cardinality * d``
            (128 for 32x4d in conv2, doubling at each stage).
        cardinality: number of paths C (1 is a plain ResNet bottleneck).
        stride: 2 in the first block of conv3/4/5, applied in the 3x3.
        norm: a detectron2 norm name ("BN", "FrozenBN", "SyncBN", "GN") or callable.
        with_shortcut: False drops the shortcut (identity or projection): the block is then a
            plain stack of its convolutions, the "without residual" rows of Sec. 5.1.
    """

    block_form: str

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        bottleneck_channels: int,
        cardinality: int = 1,
        stride: int = 1,
        norm: str = "BN",
        with_shortcut: bool = True,
    ):
        super().__init__(in_channels, out_channels, stride)
        if cardinality < 1 or bottleneck_channels % cardinality:
            raise ValueError(
                f"bottleneck_channels={bottleneck_channels} must split into cardinality={cardinality} "
                "equal groups"
            )
        self.cardinality = cardinality
        self.with_shortcut = with_shortcut
        self.shortcut = None
        if with_shortcut and (in_channels != out_channels or stride != 1):
            self.shortcut = FrozenBNConv2d(
                in_channels,
                out_channels,
                1,
                stride=stride,
                bias=False,
                norm=get_norm(norm, out_channels),
            )
            he_init_(self.shortcut)

    @property
    def last_norm(self) -> nn.Module | None:
        """The norm that ends the residual branch."""
        return self.conv3.norm

    def zero_init_residual_(self) -> None:
        """Zero the scale of the norm that ends the residual branch, so the block starts as identity.

        Goyal et al. 2017 ("Accurate, Large Minibatch SGD"): a deep net then starts shallow and
        trains from scratch much faster. Not in the paper's recipe (fb.resnet.torch did not do it);
        it only matters without pretrained weights, which overwrite it.
        """
        weight = getattr(self.last_norm, "weight", None)
        if not isinstance(weight, nn.Parameter):
            raise ValueError(
                f"zero_init_residual needs a norm with a learnable scale (BN, SyncBN, GN), got "
                f"{type(self.last_norm).__name__}: with a frozen or absent norm the block would stay zero"
            )
        nn.init.zeros_(weight)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.with_shortcut:
            return F.relu_(self._residual(x))
        shortcut = x if self.shortcut is None else self.shortcut(x)
        out = self._residual(x)
        out += shortcut  # in place, as detectron2's BottleneckBlock: one activation-sized buffer fewer
        return F.relu_(out)


class ResNeXtBlock(_Bottleneck):
    """Fig. 3 (c), the form every network uses by default: 1x1, a 3x3 with ``cardinality``
    groups, 1x1, each with its norm. Usable with detectron2's ``ResNet.make_stage``; its module
    names are detectron2's ``BottleneckBlock``'s. Arguments: ``_Bottleneck``'s."""

    block_form = "grouped"

    def __init__(
        self, in_channels: int, out_channels: int, *, bottleneck_channels: int, norm: str = "BN", **kwargs
    ):
        super().__init__(
            in_channels, out_channels, bottleneck_channels=bottleneck_channels, norm=norm, **kwargs
        )
        self.conv1 = FrozenBNConv2d(
            in_channels, bottleneck_channels, 1, bias=False, norm=get_norm(norm, bottleneck_channels)
        )
        self.conv2 = FrozenBNConv2d(
            bottleneck_channels,
            bottleneck_channels,
            3,
            stride=self.stride,
            padding=1,
            groups=self.cardinality,
            bias=False,
            norm=get_norm(norm, bottleneck_channels),
        )
        for conv in (self.conv1, self.conv2):
            he_init_(conv)
        # created after the first two are initialised: the random draws of the earlier single
        # block class, in its order (a run from scratch starts from the same weights)
        self.conv3 = FrozenBNConv2d(
            bottleneck_channels, out_channels, 1, bias=False, norm=get_norm(norm, out_channels)
        )
        he_init_(self.conv3)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))
        x = F.relu_(self.conv2(x))
        return self.conv3(x)


class _Branched(_Bottleneck):
    """Forms (a) and (b): ``cardinality`` separate branches (``_Branch``) of width d. GroupNorm
    would normalise across the branches' channels together, which separate branches cannot do."""

    def __init__(
        self, in_channels: int, out_channels: int, *, bottleneck_channels: int, norm: str = "BN", **kwargs
    ):
        super().__init__(
            in_channels, out_channels, bottleneck_channels=bottleneck_channels, norm=norm, **kwargs
        )
        if norm == "GN":
            raise ValueError("norm 'GN' needs block_form='grouped' (see template.validate_template)")
        self.branches = nn.ModuleList(
            _Branch(
                in_channels,
                bottleneck_channels // self.cardinality,
                out_channels,
                self.stride,
                norm,
                self.cardinality,
                with_conv3=self.block_form == "aggregated",
            )
            for _ in range(self.cardinality)
        )


class ConcatenatedBlock(_Branched):
    """Fig. 3 (b): C branches of (1x1, 3x3) concatenated, then one dense 1x1 + norm."""

    block_form = "concat"

    def __init__(
        self, in_channels: int, out_channels: int, *, bottleneck_channels: int, norm: str = "BN", **kwargs
    ):
        super().__init__(
            in_channels, out_channels, bottleneck_channels=bottleneck_channels, norm=norm, **kwargs
        )
        self.conv3 = FrozenBNConv2d(
            bottleneck_channels, out_channels, 1, bias=False, norm=get_norm(norm, out_channels)
        )
        he_init_(self.conv3)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(torch.cat([branch(x) for branch in self.branches], dim=1))


class AggregatedBlock(_Branched):
    """Fig. 3 (a): C complete branches (1x1, 3x3, 1x1) summed; one norm after the sum, before the
    shortcut is added (footnote 6)."""

    block_form = "aggregated"

    def __init__(self, in_channels: int, out_channels: int, *, norm: str = "BN", **kwargs):
        super().__init__(in_channels, out_channels, norm=norm, **kwargs)
        self.aggregate_norm = get_norm(norm, out_channels)

    @property
    def last_norm(self) -> nn.Module | None:
        return self.aggregate_norm

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        aggregated = self.branches[0](x)
        for branch in self.branches[1:]:
            aggregated = aggregated + branch(x)
        return self.aggregate_norm(aggregated)


#: The block class of each Fig. 3 form.
BLOCK_CLASSES = {cls.block_form: cls for cls in (ResNeXtBlock, ConcatenatedBlock, AggregatedBlock)}
assert tuple(BLOCK_CLASSES) == BLOCK_FORMS


def block_class(block_form: str) -> type[_Bottleneck]:
    """The block class of a Fig. 3 form: "grouped" (c), "concat" (b) or "aggregated" (a)."""
    if block_form not in BLOCK_CLASSES:
        raise ValueError(f"block_form must be one of {BLOCK_FORMS} (Fig. 3 c/b/a), got {block_form!r}")
    return BLOCK_CLASSES[block_form]
