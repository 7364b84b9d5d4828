"""The paper's own ImageNet models: Torch7 ``.t7`` files of facebookresearch/ResNeXt (and the
ResNets of fb.resnet.torch), read into torchvision's ResNet names.

Both repositories build the network one way (``models/resnext.lua``, ``models/resnet.lua``):
an ``nn.Sequential`` of the stem's convolution and batch norm, ReLU, max pooling, four
``nn.Sequential`` stages of blocks, average pooling, a view and the ``nn.Linear`` classifier.
Each block is ``nn.Sequential(nn.ConcatTable(residual, shortcut), nn.CAddTable, ReLU)``; the
residual is conv 1x1, BN, ReLU, conv 3x3 (grouped for ResNeXt's form (c), with the stride), BN,
ReLU, conv 1x1, BN, and the shortcut is ``nn.Identity`` or ``nn.Sequential(conv 1x1, BN)``.
The convolutions (``cudnn.`` or ``nn.SpatialConvolution``) have no bias. The models take RGB
images scaled to 0-1 and normalised by ImageNet's mean and std, as torchvision's do, so once
renamed they convert as torchvision weights do (``checkpoint.convert``). The file format is
parsed by the ``torchfile`` package; form (b) of Fig. 3 (``nn.ConcatTable`` of C branches), in
which no released model was trained, is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, WeightsMismatchError

__all__ = ["torch7_state_dict"]

_CONVOLUTIONS = {b"cudnn.SpatialConvolution", b"nn.SpatialConvolution", b"nn.SpatialConvolutionMM"}
_BATCH_NORMS = {
    b"nn.SpatialBatchNormalization",
    b"cudnn.SpatialBatchNormalization",
    b"fbnn.SpatialBatchNormalization",
}


def torch7_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The model of a ``.t7`` file as a torchvision ResNet/ResNeXt state dict (``conv1``, ``bn1``,
    ``layer1.0.conv2``, ``layer1.0.downsample.0`` ..., ``fc``)."""
    try:
        import torchfile
    except ImportError:
        raise ConfigError(
            "--source fb-torch7 reads Torch7 files with the torchfile package: pip install torchfile "
            "(or resnext-det[torch7])"
        ) from None
    try:
        model = torchfile.load(str(path))
    except Exception as e:  # torchfile raises whatever a malformed file makes it meet
        raise WeightsMismatchError(
            f"{path} cannot be read as a Torch7 file ({type(e).__name__}: {e}); is it complete?"
        ) from None
    return _Reader(path).network(model)


def _typename(module) -> bytes:
    return module.torch_typename() if hasattr(module, "torch_typename") else b"<not a torch object>"


class _Reader:
    """Walks the network, naming each tensor as torchvision does; every surprise is an error
    that names the file and the module's place in it."""

    def __init__(self, path):
        self.path = path
        self.state: dict[str, torch.Tensor] = {}

    def fail(self, where: str, expected: str, module) -> WeightsMismatchError:
        return WeightsMismatchError(
            f"{self.path}: {where} is a {_typename(module).decode()}, expected {expected} (a ResNeXt or "
            "ResNet of facebookresearch/ResNeXt or fb.resnet.torch)"
        )

    def children(self, module, where: str, typename: bytes = b"nn.Sequential") -> list:
        if _typename(module) != typename:
            raise self.fail(where, typename.decode(), module)
        return list(module.modules or [])

    def network(self, model) -> dict[str, torch.Tensor]:
        modules = self.children(model, "the file's model")
        convolutions = [m for m in modules if _typename(m) in _CONVOLUTIONS]
        norms = [m for m in modules if _typename(m) in _BATCH_NORMS]
        stages = [m for m in modules if _typename(m) == b"nn.Sequential"]
        classifiers = [m for m in modules if _typename(m) == b"nn.Linear"]
        if len(convolutions) != 1 or len(norms) != 1 or len(stages) != 4 or len(classifiers) != 1:
            found = ", ".join(_typename(m).decode() for m in modules)
            raise WeightsMismatchError(
                f"{self.path}: expected the ImageNet network (a convolution, a batch norm, four stages and "
                f"a classifier), found {found}"
            )
        self.convolution("conv1", convolutions[0], "the stem's convolution")
        self.norm("bn1", norms[0], "the stem's batch norm")
        for s, stage in enumerate(stages, start=1):
            for b, block in enumerate(self.children(stage, f"stage {s}")):
                self.block(f"layer{s}.{b}", block, f"stage {s}, block {b + 1}")
        self.state["fc.weight"] = _tensor(classifiers[0].weight)
        self.state["fc.bias"] = _tensor(classifiers[0].bias)
        return self.state

    def block(self, name: str, block, where: str) -> None:
        parts = self.children(block, where)
        if not parts:
            raise self.fail(where, "a block (ConcatTable, CAddTable, ReLU)", block)
        branches = self.children(parts[0], f"{where}'s first module", b"nn.ConcatTable")
        if len(branches) != 2:
            raise self.fail(f"{where}'s ConcatTable", "two branches (residual and shortcut)", parts[0])
        residual = self.children(branches[0], f"{where}'s residual branch")
        convolutions = [m for m in residual if _typename(m) in _CONVOLUTIONS]
        norms = [m for m in residual if _typename(m) in _BATCH_NORMS]
        if len(convolutions) != 3 or len(norms) != 3:
            form_b = any(_typename(m) == b"nn.ConcatTable" for m in residual)
            raise WeightsMismatchError(
                f"{self.path}: {where} "
                + (
                    "is Fig. 3's form (b) (a ConcatTable of branches), which no released model uses; "
                    "convert a form (c) model (grouped convolution)"
                    if form_b
                    else "does not have three convolutions, each followed by a batch norm"
                )
            )
        for k, (convolution, norm) in enumerate(zip(convolutions, norms, strict=True), start=1):
            self.convolution(f"{name}.conv{k}", convolution, f"{where}, convolution {k}")
            self.norm(f"{name}.bn{k}", norm, f"{where}, batch norm {k}")
        shortcut = branches[1]
        if _typename(shortcut) == b"nn.Identity":
            return
        projection = self.children(shortcut, f"{where}'s shortcut")
        if len(projection) != 2 or _typename(projection[0]) not in _CONVOLUTIONS:
            raise self.fail(
                f"{where}'s shortcut", "nn.Identity or a 1x1 convolution with its batch norm", shortcut
            )
        self.convolution(f"{name}.downsample.0", projection[0], f"{where}'s shortcut convolution")
        self.norm(f"{name}.downsample.1", projection[1], f"{where}'s shortcut batch norm")

    def convolution(self, name: str, module, where: str) -> None:
        if _typename(module) not in _CONVOLUTIONS:
            raise self.fail(where, "a spatial convolution", module)
        groups = int(module.groups or 1)
        shape = (int(module.nOutputPlane), int(module.nInputPlane) // groups, int(module.kH), int(module.kW))
        weight = _tensor(module.weight)
        if weight.numel() != np.prod(shape):
            raise WeightsMismatchError(
                f"{self.path}: {where} holds {weight.numel()} weights, expected {shape} = {np.prod(shape)}"
            )
        if module.bias is not None and np.any(np.asarray(module.bias) != 0):
            raise WeightsMismatchError(
                f"{self.path}: {where} has a non-zero bias, which the detector's convolutions do not have"
            )
        self.state[f"{name}.weight"] = weight.reshape(shape)

    def norm(self, name: str, module, where: str) -> None:
        if _typename(module) not in _BATCH_NORMS:
            raise self.fail(where, "a spatial batch norm", module)
        eps = float(module.eps or 1e-5)
        if module.running_var is not None:
            variance = _tensor(module.running_var)
        elif module.running_std is not None:  # nn before 2016 kept 1 / sqrt(var + eps)
            variance = _tensor(module.running_std).pow(-2) - eps
        else:
            raise self.fail(where, "a batch norm with its running statistics", module)
        self.state[f"{name}.weight"] = _tensor(module.weight)
        self.state[f"{name}.bias"] = _tensor(module.bias)
        self.state[f"{name}.running_mean"] = _tensor(module.running_mean)
        self.state[f"{name}.running_var"] = variance


def _tensor(array) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
