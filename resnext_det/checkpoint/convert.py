"""Convert classifier checkpoints (ours, torchvision, timm, the paper's Torch7 models) into
detectron2 ``MODEL.WEIGHTS`` files.

The classifier's names are the detector's (``stem``, ``res2``..``res5``): stem..res4 go under
``backbone.``, res5 under ``roi_heads.`` (the C4 head), the fc layer is dropped. torchvision's and
timm's ResNet/ResNeXt share one naming (``conv1``/``bn1``/``layer1``../``fc``), mapped here once.
The template (depth, cardinality, width, widths of stem and res2, block form) is read from the
tensors, and a checkpoint that does not fit the target model is refused with the first
mismatching keys and shapes: never the silent partial load of detectron2's
"Skip loading parameter ... incompatible shapes" warning.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ..errors import WeightsMismatchError
from ..modeling.block_forms import detect_block_form
from ..template import STAGE_BLOCKS
from .detectron_pkl import detectron_input, detectron_pkl_state_dict
from .safe_checkpointer import read_checkpoint_file, reads_as_torch_file
from .torch7 import torch7_state_dict

__all__ = [
    "SOURCES",
    "WeightsMismatchError",
    "check_input_convention",
    "classifier_weights_source",
    "load_classifier_state_dict",
    "torchvision_to_resnext_names",
    "infer_template",
    "to_detectron2_state_dict",
    "describe_mismatches",
    "check_weights_fit",
    "convert_checkpoint",
]

SOURCES = ("pretrain", "torchvision", "timm", "fb-torch7", "detectron-pkl")

# What each source's weights expect as input, and the detectron2 settings that produce it.
# Pixel values in detectron2 are 0-255, so mean/std are the 0-1 values times 255.
IMAGENET_INPUT = {
    "format": "RGB",
    "range": "0-1",
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}


def _tensor_dict(obj, path) -> dict[str, torch.Tensor]:
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise WeightsMismatchError(f"{path}: expected a state dict of tensors (optionally under 'model')")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def torchvision_to_resnext_names(state_dict: dict) -> dict[str, torch.Tensor]:
    """torchvision/timm ResNet names -> ours (conv1 -> stem.conv1, layer1 -> res2, bn2 -> conv2.norm)."""
    renamed = {}
    for name, value in state_dict.items():
        new = re.sub(r"^conv1\.", "stem.conv1.", name)
        new = re.sub(r"^bn1\.", "stem.conv1.norm.", new)
        new = re.sub(r"^layer(\d)\.", lambda m: f"res{int(m[1]) + 1}.", new)
        new = re.sub(r"\.bn(\d)\.", r".conv\1.norm.", new)
        new = new.replace(".downsample.0.", ".shortcut.").replace(".downsample.1.", ".shortcut.norm.")
        new = re.sub(r"^fc\.", "linear.", new)
        renamed[new] = value
    return renamed


def classifier_weights_source(path: str | Path) -> str:
    """Which of ``SOURCES`` a classifier weights file is, read from the file itself: a Torch7 file
    (the paper's models: "fb-torch7"), this project's checkpoint (names under ``stem.``:
    "pretrain"), or torchvision / timm's names ("torchvision"). So that the classification tools'
    ``MODEL.WEIGHTS`` takes any of them, e.g. to evaluate the paper's own model on ImageNet."""
    path = Path(path)
    if not path.is_file():
        raise WeightsMismatchError(f"{path} does not exist (expected a classifier weights file)")
    if path.suffix == ".pkl":
        return "detectron-pkl"
    if path.suffix == ".t7" or not reads_as_torch_file(str(path)):
        return "fb-torch7"
    obj = read_checkpoint_file(path)
    names = _tensor_dict(obj, path).keys()
    return "pretrain" if any(k.startswith("stem.conv1.") for k in names) else "torchvision"


def load_classifier_state_dict(
    path: str | Path, source: str, pkl_input: str | None = None
) -> tuple[dict, dict]:
    """(state dict in resnext_det names, metadata) from a checkpoint of the given source
    (``pkl_input``: the input a Detectron ``.pkl`` expects, when its file name does not say)."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if source == "detectron-pkl":  # Detectron's Caffe2 blobs: torchvision's layout once read
        pixel = detectron_input(path, pkl_input)
        return torchvision_to_resnext_names(detectron_pkl_state_dict(path)), {"input": pixel}
    if source == "fb-torch7":  # the paper's own Torch7 models: torchvision's layout once read
        if not Path(path).is_file():
            raise WeightsMismatchError(f"{path} does not exist (expected a Torch7 .t7 model file)")
        return torchvision_to_resnext_names(torch7_state_dict(path)), {"input": IMAGENET_INPUT}
    obj = read_checkpoint_file(path)
    metadata = dict(obj.get("resnext_det", {})) if isinstance(obj, dict) else {}
    state_dict = _tensor_dict(obj, path)
    if source != "pretrain":
        state_dict = torchvision_to_resnext_names(state_dict)
        metadata.setdefault("input", IMAGENET_INPUT)
    if not any(k.startswith("stem.conv1.") for k in state_dict):
        raise WeightsMismatchError(
            f"{path}: no stem convolution found; with --source {source} expected "
            + ("'stem.conv1.weight'" if source == "pretrain" else "'conv1.weight' (torchvision/timm ResNet)")
            + f". First keys: {list(state_dict)[:5]}"
        )
    return state_dict, metadata


def infer_template(state_dict: dict) -> dict:
    """Depth, cardinality, width per group, stem/res2 widths and block form, from the tensors."""
    blocks = {}
    for key in state_dict:
        if m := re.match(r"^(?:backbone\.|roi_heads\.)?res(\d)\.(\d+)\.", key):
            blocks.setdefault(int(m[1]), set()).add(int(m[2]))
    counts = tuple(len(blocks.get(stage, ())) for stage in (2, 3, 4, 5))
    depth = next((d for d, c in STAGE_BLOCKS.items() if c == counts), None)
    if depth is None:
        raise WeightsMismatchError(
            f"blocks per stage res2..res5 are {counts}; a ResNeXt has one of "
            f"{ {d: c for d, c in STAGE_BLOCKS.items()} }"
        )
    prefix = next(k for k in state_dict if re.match(r"^(backbone\.)?res2\.0\.", k)).split("res2.")[0]
    form = detect_block_form(state_dict)
    if form == "grouped":
        conv2 = state_dict[f"{prefix}res2.0.conv2.weight"]
        cardinality, width = conv2.shape[0] // conv2.shape[1], conv2.shape[1]
    else:
        branches = {k.split(".")[3] for k in state_dict if k.startswith(f"{prefix}res2.0.branches.")}
        cardinality = len(branches)
        width = state_dict[f"{prefix}res2.0.branches.0.conv2.weight"].shape[0]
    return {
        "depth": depth,
        "cardinality": int(cardinality),
        "bottleneck_width": int(width),
        "block_form": form,
        "stem_out_channels": int(state_dict[f"{prefix}stem.conv1.weight"].shape[0]),
        "res2_out_channels": int(state_dict[f"{prefix}res2.0.conv3.weight"].shape[0])
        if form != "aggregated"
        else int(state_dict[f"{prefix}res2.0.aggregate_norm.weight"].shape[0]),
        # res2.0 always has a projection shortcut (stem width -> res2 width) unless there are none
        "shortcuts": any(k.startswith(f"{prefix}res2.0.shortcut.") for k in state_dict),
    }


def to_detectron2_state_dict(state_dict: dict) -> dict[str, torch.Tensor]:
    """stem..res4 -> ``backbone.*``, res5 -> ``roi_heads.res5.*``; the classifier's fc is dropped.

    BN's ``num_batches_tracked`` is dropped too: the detector's FrozenBN has no such buffer.
    """
    converted = {}
    for name, value in state_dict.items():
        if name.startswith("linear.") or name.endswith("num_batches_tracked"):
            continue
        converted[("roi_heads." if name.startswith("res5.") else "backbone.") + name] = value
    return converted


def describe_mismatches(expected: dict[str, tuple], given: dict[str, tuple]) -> str:
    """ "" if the shapes agree key for key, else a summary naming the first offending keys."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong_shape = [
        f"{k}: file {given[k]} vs model {expected[k]}"
        for k in expected
        if k in given and given[k] != expected[k]
    ]
    parts = []
    for label, items in (
        ("shape mismatches", wrong_shape),
        ("missing from the file", missing),
        ("not in the model", unexpected),
    ):
        if items:
            parts.append(f"{len(items)} {label}, first: " + "; ".join(items[:5]))
    return " | ".join(parts)


def check_weights_fit(model: torch.nn.Module, weights: dict, source: str = "weights") -> None:
    """Every backbone and res5 tensor of ``model`` must be in ``weights`` with the same shape.

    A model without a res5 head (stage 1's ``ProposalNetwork``) takes the same converted file as
    stage 2 (the paper starts both from the ImageNet weights), so the file's res5 is not an error.
    """
    expected = {
        k: tuple(v.shape)
        for k, v in model.state_dict().items()
        if k.startswith(("backbone.", "roi_heads.res5.")) and not k.endswith("num_batches_tracked")
    }
    has_res5 = any(k.startswith("roi_heads.res5.") for k in expected)
    given = {k: tuple(v.shape) for k, v in weights.items() if has_res5 or not k.startswith("roi_heads.res5.")}
    problems = describe_mismatches(expected, given)
    if problems:
        raise WeightsMismatchError(
            f"{source} does not fit the model built from the config (different depth, cardinality, "
            "width or block form?): " + problems
        )


def check_weights_file_fits(model: torch.nn.Module, weights: str) -> None:
    """``check_weights_fit`` for a weights file that resnext_det converted (``__author__``); other
    files (detectron2's model zoo, a URL) are left to detectron2's checkpointer, which matches by
    name and warns."""
    if not (weights and os.path.isfile(weights) and reads_as_torch_file(weights)):
        return
    checkpoint = read_checkpoint_file(weights)
    if isinstance(checkpoint, dict) and checkpoint.get("__author__") == "resnext_det":
        check_weights_fit(model, checkpoint["model"], source=weights)
        check_input_convention(model, checkpoint.get("resnext_det", {}), source=weights)


def check_input_convention(model: torch.nn.Module, metadata: dict, source: str = "weights") -> None:
    """The detector must feed the converted weights the input they were trained on: the colour
    order and the mean / std that ``convert_checkpoint`` recorded (``detectron2_cfg``). A detector
    normalising otherwise trains and evaluates without an error, only points of AP lower, so a
    mismatch is an error naming the keys to set."""
    recorded = metadata.get("detectron2_cfg")
    if not recorded:
        return
    model_values = {
        "INPUT.FORMAT": getattr(model, "input_format", None),  # a ProposalNetwork has none
        "MODEL.PIXEL_MEAN": [float(v) for v in model.pixel_mean.flatten()],
        "MODEL.PIXEL_STD": [float(v) for v in model.pixel_std.flatten()],
    }
    wrong = []
    for key, expected in recorded.items():
        if key not in model_values or model_values[key] is None:
            continue
        found = model_values[key]
        same = found == expected if isinstance(expected, str) else _close(found, expected)
        if not same:
            wrong.append((key, expected, found))
    if wrong:
        needed = " ".join(f"{k} {_as_override(v)}" for k, v in recorded.items() if k in model_values)
        found = "; ".join(f"{k} is {_as_override(f)}" for k, _, f in wrong)
        raise WeightsMismatchError(
            f"{source} was converted from weights that expect {_describe_input(metadata)}, but the "
            f"config feeds them otherwise ({found}): set {needed} (in a LazyConfig: model.input_format, "
            "model.pixel_mean, model.pixel_std)"
        )


def _close(found, expected) -> bool:
    return len(found) == len(expected) and all(
        abs(a - b) <= 1e-2 for a, b in zip(found, expected, strict=True)
    )


def _as_override(value) -> str:
    return value if isinstance(value, str) else "[" + ", ".join(f"{v:g}" for v in value) + "]"


def _describe_input(metadata: dict) -> str:
    pixel = metadata.get("input", {})
    if not pixel:
        return "another input"
    return f"{pixel.get('format')} in {pixel.get('range')}, mean {pixel.get('mean')}, std {pixel.get('std')}"


def convert_checkpoint(path: str | Path, source: str, pkl_input: str | None = None) -> dict:
    """A detectron2 checkpoint dict: {"model": ..., "resnext_det": {template, input, cfg}}."""
    state_dict, metadata = load_classifier_state_dict(path, source, pkl_input)
    template = infer_template(state_dict)
    pixel = metadata.get("input", IMAGENET_INPUT)
    scale = 1 if pixel.get("range") == "0-255" else 255  # detectron2 normalises in 0-255 units
    detectron2_cfg = {
        "INPUT.FORMAT": pixel["format"],
        "MODEL.PIXEL_MEAN": [round(m * scale, 4) for m in pixel["mean"]],
        "MODEL.PIXEL_STD": [round(s * scale, 4) for s in pixel["std"]],
    }
    if not template["shortcuts"]:  # Sec. 5.1's plain stacks: the detector must be built without them too
        detectron2_cfg["MODEL.RESNEXT.SHORTCUTS"] = False
    return {
        "model": to_detectron2_state_dict(state_dict),
        "matching_heuristics": False,
        "__author__": "resnext_det",
        "resnext_det": {
            "source": source,
            "template": template,
            "input": pixel,
            "detectron2_cfg": detectron2_cfg,
        },
    }
