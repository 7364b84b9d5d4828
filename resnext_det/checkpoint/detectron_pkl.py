"""Detectron's ImageNet models (``X-101-64x4d.pkl`` ...), read into torchvision's ResNet names.

Detectron (Caffe2) stored an ImageNet model as a pickle of numpy blobs, ``{"blobs": {name: array}}``
(or the blobs at the top level), named ``conv1_w``, ``res_conv1_bn_{s,b}``, ``res2_0_branch2a_w``,
``res2_0_branch2a_bn_{s,b}`` ... ``res5_2_branch2c_w``, ``res2_0_branch1_w`` (the projection
shortcut) and ``pred_{w,b}`` (or ``fc1000_{w,b}``). Its batch norms were folded into a per-channel
affine ``x * s + b`` (``AffineChannel``), which a batch norm with mean 0 and variance ``1 - eps``
computes exactly. Read into torchvision's names, a file converts as torchvision weights do
(``checkpoint.convert``) except for its input, which no ``.pkl`` records:

* Detectron's own files take BGR images in 0-255 with its mean subtracted and no std
  (``detectron``): Detectron had no std setting, so the models it converted from Torch7 files
  (``X-101-64x4d.pkl``) take that input too;
* detectron2's ``FAIR/X-101-32x8d.pkl`` takes BGR with detectron2's mean and a std (``detectron2``).

MSRA's ResNets (``R-50.pkl``, ``R-101.pkl``) put each stage's stride in the first 1x1
convolution; the ResNeXt block (Fig. 3, as fb.resnet.torch and torchvision build it) puts it in
the 3x3, so those weights would compute another function: they are refused, naming the Torch7
and torchvision ResNets that fit. The files are unpickled with ``RestrictedUnpickler`` (numpy
arrays only: a pickle can run code).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from ..errors import WeightsMismatchError
from ..safe_pickle import NUMPY_GLOBALS, PROTOCOL2_BYTES, RestrictedUnpickler

__all__ = ["DETECTRON_INPUTS", "KNOWN_DETECTRON_FILES", "detectron_input", "detectron_pkl_state_dict"]

#: what each kind of Detectron file expects as input (mean and std in its own 0-255 units)
DETECTRON_INPUTS = {
    "detectron": {"format": "BGR", "range": "0-255", "mean": [102.9801, 115.9465, 122.7717],
                  "std": [1.0, 1.0, 1.0]},
    "detectron2": {"format": "BGR", "range": "0-255", "mean": [103.53, 116.28, 123.675],
                   "std": [57.375, 57.12, 58.395]},
}  # fmt: skip
#: the released files by name: their input kind, or "msra" (stride in the 1x1: refused). The
#: name X-101-32x8d.pkl is both Detectron's and detectron2's (other inputs): --pkl-input decides
KNOWN_DETECTRON_FILES = {
    "R-50.pkl": "msra",
    "R-101.pkl": "msra",
    "X-101-64x4d.pkl": "detectron",
    "X-152-32x8d-IN5k.pkl": "detectron",
    "X-101-32x8d.pkl": None,
}
_NAMED_INPUTS = [name for name, kind in KNOWN_DETECTRON_FILES.items() if kind in ("detectron", "detectron2")]
_EPS = 1e-5  # torch's BatchNorm2d and detectron2's FrozenBatchNorm2d
_LAYER = re.compile(
    r"^res(?P<stage>[2-5])_(?P<block>\d+)_branch(?P<branch>1|2a|2b|2c)_(?P<part>w|bn_s|bn_b)$"
)
_CONV_OF_BRANCH = {"2a": "conv1", "2b": "conv2", "2c": "conv3", "1": "downsample.0"}
_NORM_OF_BRANCH = {"2a": "bn1", "2b": "bn2", "2c": "bn3", "1": "downsample.1"}


def detectron_input(path: str | Path, kind: str | None = None) -> dict:
    """The input a file expects: ``kind`` ("detectron" or "detectron2"), else its file name's."""
    name = Path(path).name
    known = kind or KNOWN_DETECTRON_FILES.get(name)
    if known == "msra":
        raise WeightsMismatchError(
            f"{path} is MSRA's ResNet, which puts each stage's stride in the first 1x1 convolution; "
            "the ResNeXt block puts it in the 3x3 (Fig. 3), so these weights would compute another "
            "function. Use fb.resnet.torch's resnet-50.t7 / resnet-101.t7 (--source fb-torch7, the "
            "paper's ResNets) or torchvision's resnet50 / resnet101 (--source torchvision)"
        )
    if known not in DETECTRON_INPUTS:
        raise WeightsMismatchError(
            f"{path}: a .pkl does not record the input it expects, and {name!r} is not one of the "
            f"released files this tool knows ({', '.join(_NAMED_INPUTS)}): "
            "pass --pkl-input detectron (Detectron's files: BGR, its mean, no std) or --pkl-input "
            "detectron2 (detectron2's FAIR/X-101-32x8d.pkl: BGR, mean and std)"
        )
    return dict(DETECTRON_INPUTS[known])


def _read_blobs(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise WeightsMismatchError(f"{path} does not exist (expected a Detectron .pkl model)")
    try:
        with open(path, "rb") as f:
            allowed, holds = NUMPY_GLOBALS | PROTOCOL2_BYTES, "a Detectron model holds only numpy arrays"
            data = RestrictedUnpickler(f, allowed, holds, encoding="latin1").load()
    except Exception as e:  # a truncated or foreign file, or one that asks for code
        raise WeightsMismatchError(
            f"{path} cannot be read as a Detectron .pkl ({type(e).__name__}: {e})"
        ) from None
    blobs = data.get("blobs", data) if isinstance(data, dict) else None
    if not isinstance(blobs, dict) or not blobs:
        raise WeightsMismatchError(
            f"{path}: expected Detectron's {{'blobs': {{name: array}}}}, found {type(data).__name__}"
        )
    return {k: v for k, v in blobs.items() if isinstance(v, np.ndarray) and not k.endswith("_momentum")}


def detectron_pkl_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The model of a Detectron ``.pkl`` as a torchvision ResNet/ResNeXt state dict; a blob of the
    body that does not fit the names above is an error naming it."""
    path = Path(path)
    blobs = _read_blobs(path)
    state: dict[str, torch.Tensor] = {}

    def norm(prefix: str, scale: np.ndarray, shift: np.ndarray) -> None:
        state[f"{prefix}.weight"] = torch.from_numpy(np.asarray(scale, dtype=np.float32).copy())
        state[f"{prefix}.bias"] = torch.from_numpy(np.asarray(shift, dtype=np.float32).copy())
        state[f"{prefix}.running_mean"] = torch.zeros(len(scale))
        state[f"{prefix}.running_var"] = torch.full((len(scale),), 1.0 - _EPS)
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(0)

    def blob(name: str) -> np.ndarray:
        if name not in blobs:
            raise WeightsMismatchError(
                f"{path}: blob {name!r} missing; is it a Detectron ResNet / ResNeXt model?"
            )
        return blobs[name]

    state["conv1.weight"] = torch.from_numpy(blob("conv1_w").astype(np.float32))
    norm("bn1", blob("res_conv1_bn_s"), blob("res_conv1_bn_b"))
    head = "pred" if "pred_w" in blobs else "fc1000"
    state["fc.weight"] = torch.from_numpy(blob(f"{head}_w").astype(np.float32))
    state["fc.bias"] = torch.from_numpy(blob(f"{head}_b").astype(np.float32))
    stem_and_head = {"conv1_w", "res_conv1_bn_s", "res_conv1_bn_b", f"{head}_w", f"{head}_b"}
    for name in blobs.keys() - stem_and_head:
        match = _LAYER.match(name)
        if match is None:
            raise WeightsMismatchError(
                f"{path}: blob {name!r} is not part of an ImageNet ResNet / ResNeXt (Detectron's "
                "res<stage>_<block>_branch{1,2a,2b,2c}_{w,bn_s,bn_b}); is it a detection model?"
            )
        prefix = f"layer{int(match['stage']) - 1}.{match['block']}"
        if match["part"] == "w":
            state[f"{prefix}.{_CONV_OF_BRANCH[match['branch']]}.weight"] = torch.from_numpy(
                blobs[name].astype(np.float32)
            )
        elif match["part"] == "bn_s":
            bias = blob(name[: -len("_s")] + "_b")
            norm(f"{prefix}.{_NORM_OF_BRANCH[match['branch']]}", blobs[name], bias)
    return state
