"""The numbers that describe a ResNeXt (Table 1), and their validation.

Kept free of model code so that the config, the trunk and the weight converters can all check a
template ("depth, C x d, form, norm") the same way, with errors that name the bad argument.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from .errors import TemplateError

__all__ = [
    "BLOCK_FORMS",
    "CIFAR_DEPTHS",
    "NORMS",
    "STAGE_BLOCKS",
    "STAGE_NAMES",
    "Template",
    "TemplateError",
    "validate_out_features",
    "validate_template",
]

#: Fig. 3 (c), (b), (a): grouped convolution, early concatenation, aggregated branches.
BLOCK_FORMS = ("grouped", "concat", "aggregated")
#: Blocks per stage conv2..conv5 for each depth (Table 1; He et al. 2016 for 152 and 200, the
#: ResNet-200 of Table 4).
STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}
STAGE_NAMES = ("res2", "res3", "res4", "res5")
#: CIFAR networks (appendix A): a 3x3 stem, 3 stages of n blocks, an fc: depth 9n + 2 (29: n = 3).
CIFAR_DEPTHS = tuple(9 * n + 2 for n in range(1, 12))
#: detectron2 norm names supported (``detectron2.layers.get_norm``); "" means no norm. "SyncBN"
#: falls back where it cannot run (``resnext_det.layers.norms``); "naiveSyncBN" is detectron2's
#: all-reduce SyncBN, which runs over gloo on CPUs too.
NORMS = ("BN", "FrozenBN", "SyncBN", "naiveSyncBN", "GN", "")


def validate_template(
    depth: int,
    cardinality: int,
    bottleneck_width: int,
    block_form: str = "grouped",
    norm: str = "BN",
    stem_out_channels: int = 64,
    res2_out_channels: int = 256,
    depths=tuple(STAGE_BLOCKS),
) -> None:
    """Raise ``TemplateError`` naming the bad argument and the accepted values; ``depths`` are
    the accepted depths (``CIFAR_DEPTHS`` for the CIFAR networks)."""
    if depth not in depths or isinstance(depth, bool):
        raise TemplateError("depth", f"depth must be one of {sorted(depths)}, got {depth!r}")
    widths = {
        "cardinality": cardinality,
        "bottleneck_width": bottleneck_width,
        "stem_out_channels": stem_out_channels,
        "res2_out_channels": res2_out_channels,
    }
    for name, value in widths.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise TemplateError(name, f"{name} must be a positive integer, got {value!r}")
    if block_form not in BLOCK_FORMS:
        raise TemplateError(
            "block_form",
            f"block_form must be one of {BLOCK_FORMS} (Fig. 3 (c), (b), (a)), got {block_form!r}",
        )
    if isinstance(norm, str) and norm not in NORMS:
        raise TemplateError("norm", f"norm must be one of {NORMS}, got {norm!r}")
    if norm == "GN" and block_form != "grouped":
        raise TemplateError(
            "norm",
            "GroupNorm normalises across channel groups, so the per-branch norms of forms "
            "'concat'/'aggregated' would not compute the grouped form's function; use "
            "block_form='grouped' with norm 'GN'",
        )
    if norm == "GN":
        gn_widths = {
            "cardinality*bottleneck_width": cardinality * bottleneck_width,
            "stem_out_channels": stem_out_channels,
            "res2_out_channels": res2_out_channels,
        }
        bad = {k: v for k, v in gn_widths.items() if v % 32}
        if bad:
            raise TemplateError(
                "norm",
                f"norm 'GN' uses 32 groups, so every width must be a multiple of 32; not: {bad}",
            )


@dataclasses.dataclass(frozen=True)
class Template:
    """A ResNeXt's architecture, checked when made: read once (from keywords or
    ``cfg.MODEL.RESNEXT``) and passed whole to every builder below it.

    ``depth`` is an ImageNet depth (``STAGE_BLOCKS``) or a CIFAR one (``CIFAR_DEPTHS``); each
    network checks that it is one of its own (``imagenet_stage_blocks``, ``cifar_stage_blocks``).
    ``shortcuts=False`` is Sec. 5.1's plain stack. ``norm`` may also be a callable, as detectron2's
    ``get_norm`` takes.
    """

    depth: int = 50
    cardinality: int = 32
    bottleneck_width: int = 4
    block_form: str = "grouped"
    norm: str | Callable = "BN"
    stem_out_channels: int = 64
    res2_out_channels: int = 256
    shortcuts: bool = True

    def __post_init__(self):
        validate_template(
            self.depth,
            self.cardinality,
            self.bottleneck_width,
            self.block_form,
            self.norm,
            self.stem_out_channels,
            self.res2_out_channels,
            depths=(*STAGE_BLOCKS, *CIFAR_DEPTHS),
        )

    @property
    def imagenet_stage_blocks(self) -> tuple[int, ...]:
        """Blocks in res2..res5 (Table 1)."""
        if self.depth not in STAGE_BLOCKS:
            raise TemplateError("depth", f"depth must be one of {sorted(STAGE_BLOCKS)}, got {self.depth!r}")
        return STAGE_BLOCKS[self.depth]

    @property
    def cifar_stage_blocks(self) -> tuple[int, ...]:
        """Blocks in the CIFAR network's three stages (appendix A: depth 9n + 2)."""
        if self.depth not in CIFAR_DEPTHS:
            raise TemplateError("depth", f"depth must be one of {sorted(CIFAR_DEPTHS)}, got {self.depth!r}")
        return ((self.depth - 2) // 9,) * 3

    def asdict(self) -> dict:
        """Plain keywords (for a checkpoint's metadata, ``meta.json``, or the keyword builders)."""
        return dataclasses.asdict(self)

    def replace(self, **changes) -> Template:
        return dataclasses.replace(self, **changes)


def validate_out_features(out_features) -> None:
    """Raise ``TemplateError`` unless ``out_features`` names some of 'stem', 'res2'..'res5'."""
    allowed = ("stem", *STAGE_NAMES)
    unknown = [f for f in out_features or () if f not in allowed]
    if not out_features or unknown:
        raise TemplateError(
            "out_features", f"out_features must name some of {allowed}, got {list(out_features or [])}"
        )
