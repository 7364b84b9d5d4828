"""Torch7 ``.t7`` files for the tests, written as Torch7's ``torch.save`` writes them (binary:
type tags, object indices, ``"V 1"`` versions, tensors over storages), laid out as
facebookresearch/ResNeXt's ``models/resnext.lua`` builds its network; ``torchfile`` (what the
converter reads with) has no writer."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NIL, NUMBER, STRING, TABLE, TORCH, BOOLEAN = 0, 1, 2, 3, 4, 5


@dataclass
class Module:
    """A Torch7 object of class ``typename`` whose fields are ``fields`` (an ``nn`` module)."""

    typename: str
    fields: dict = field(default_factory=dict)


class _Writer:
    def __init__(self, f):
        self.f, self.index = f, 0

    def raw(self, fmt: str, *values) -> None:
        """Little-endian without padding; "l" is Torch7's 8-byte long (what torchfile reads)."""
        self.f.write(struct.pack("<" + fmt.replace("l", "q"), *values))

    def string(self, text) -> None:
        data = text.encode() if isinstance(text, str) else text
        self.raw("i", len(data))
        self.f.write(data)

    def next_index(self) -> int:
        self.index += 1
        return self.index

    def obj(self, value) -> None:
        if value is None:
            self.raw("i", NIL)
        elif isinstance(value, bool):
            self.raw("ii", BOOLEAN, int(value))
        elif isinstance(value, (int, float)):
            self.raw("id", NUMBER, float(value))
        elif isinstance(value, (str, bytes)):
            self.raw("i", STRING)
            self.string(value)
        elif isinstance(value, np.ndarray):
            self.tensor(np.ascontiguousarray(value, dtype=np.float32))
        elif isinstance(value, Module):
            self.raw("ii", TORCH, self.next_index())
            self.string("V 1")
            self.string(value.typename)
            self.obj(value.fields)
        elif isinstance(value, (dict, list)):
            items = value.items() if isinstance(value, dict) else enumerate(value, start=1)
            items = list(items)
            self.raw("iii", TABLE, self.next_index(), len(items))
            for key, item in items:
                self.obj(key)
                self.obj(item)
        else:
            raise TypeError(f"cannot write {type(value).__name__} as Torch7")

    def tensor(self, array: np.ndarray) -> None:
        self.raw("ii", TORCH, self.next_index())
        self.string("V 1")
        self.string("torch.FloatTensor")
        strides = [s // array.itemsize for s in array.strides]
        self.raw("i", array.ndim)
        self.raw(f"{array.ndim}l", *array.shape)
        self.raw(f"{array.ndim}l", *strides)
        self.raw("l", 1)  # storage offset, 1-based
        self.raw("ii", TORCH, self.next_index())
        self.string("V 1")
        self.string("torch.FloatStorage")
        self.raw("l", array.size)
        self.f.write(array.tobytes())


def write_t7(path: Path, value) -> Path:
    with open(path, "wb") as f:
        _Writer(f).obj(value)
    return path


def _numpy(state: dict, key: str) -> np.ndarray:
    return state[key].detach().numpy()


def convolution(state: dict, name: str, groups: int = 1) -> Module:
    weight = _numpy(state, f"{name}.weight")
    n_out, n_in_per_group, kh, kw = weight.shape
    return Module("cudnn.SpatialConvolution", {
        "weight": weight, "nOutputPlane": n_out, "nInputPlane": n_in_per_group * groups, "kH": kh, "kW": kw,
        "dW": 1, "dH": 1, "padW": kw // 2, "padH": kh // 2, "groups": groups, "bias": None,
    })  # fmt: skip


def batch_norm(state: dict, name: str, running_std: bool = False) -> Module:
    fields = {"weight": _numpy(state, f"{name}.weight"), "bias": _numpy(state, f"{name}.bias"),
              "running_mean": _numpy(state, f"{name}.running_mean"), "eps": 1e-5}  # fmt: skip
    variance = _numpy(state, f"{name}.running_var")
    if running_std:  # nn before 2016 kept 1 / sqrt(var + eps)
        fields["running_std"] = (1 / np.sqrt(variance + 1e-5)).astype(np.float32)
    else:
        fields["running_var"] = variance
    return Module("nn.SpatialBatchNormalization", fields)


def relu() -> Module:
    return Module("cudnn.ReLU", {"inplace": True})


def sequential(*modules) -> Module:
    return Module("nn.Sequential", {"modules": list(modules)})


def resnext_lua_network(state: dict, cardinality: int, old_norm_at: str = "") -> Module:
    """The network ``models/resnext.lua`` builds (form (c)), holding torchvision ``state``'s
    tensors; the batch norm named ``old_norm_at`` keeps ``running_std`` as nn did before 2016."""

    def norm(name):
        return batch_norm(state, name, running_std=name == old_norm_at)

    stages = []
    for s in range(1, 5):
        blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith(f"layer{s}.")})
        stage = []
        for b in blocks:
            p = f"layer{s}.{b}"
            residual = sequential(
                convolution(state, f"{p}.conv1"), norm(f"{p}.bn1"), relu(),
                convolution(state, f"{p}.conv2", groups=cardinality), norm(f"{p}.bn2"), relu(),
                convolution(state, f"{p}.conv3"), norm(f"{p}.bn3"),
            )  # fmt: skip
            shortcut = (
                sequential(convolution(state, f"{p}.downsample.0"), norm(f"{p}.downsample.1"))
                if f"{p}.downsample.0.weight" in state
                else Module("nn.Identity")
            )
            stage.append(sequential(Module("nn.ConcatTable", {"modules": [residual, shortcut]}),
                                    Module("nn.CAddTable", {"inplace": True}), relu()))  # fmt: skip
        stages.append(sequential(*stage))
    return sequential(
        convolution(state, "conv1"), norm("bn1"), relu(),
        Module("nn.SpatialMaxPooling", {"kW": 3, "kH": 3, "dW": 2, "dH": 2}),
        *stages,
        Module("cudnn.SpatialAveragePooling", {"kW": 7, "kH": 7}),
        Module("nn.View", {"size": [2048]}),
        Module("nn.Linear", {"weight": _numpy(state, "fc.weight"), "bias": _numpy(state, "fc.bias")}),
    )  # fmt: skip


def torchvision_names(state: dict) -> dict:
    """A resnext_det classifier's state dict in torchvision's names (the inverse of
    ``checkpoint.convert.torchvision_to_resnext_names``), for ``resnext_lua_network``: a Torch7
    file of any template, e.g. the demo's."""
    import re

    renamed = {}
    for name, value in state.items():
        new = re.sub(r"^stem\.conv1\.norm\.", "bn1.", name)
        new = re.sub(r"^stem\.conv1\.", "conv1.", new)
        new = re.sub(r"^res(\d)\.", lambda m: f"layer{int(m[1]) - 1}.", new)
        new = re.sub(r"\.conv(\d)\.norm\.", r".bn\1.", new)
        new = new.replace(".shortcut.norm.", ".downsample.1.").replace(".shortcut.", ".downsample.0.")
        renamed[re.sub(r"^linear\.", "fc.", new)] = value
    return renamed
