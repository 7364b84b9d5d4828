"""--source detectron-pkl: Detectron's Caffe2 blobs (batch norms folded into scale and shift),
written here from a torchvision model's tensors under Detectron's names, read back into the same
function; the input the file expects is recorded (BGR, Caffe's mean) and checked; MSRA's ResNets
(stride in the 1x1) and unknown names are refused."""

from __future__ import annotations

import pickle

from resnext_det.checkpoint import classifier_weights_source, convert_checkpoint
from resnext_det.errors import WeightsMismatchError
from resnext_det.modeling import resnext50_32x4d

import numpy as np
import pytest
import torch
import torchvision
from test_convert import assert_same_function, detector, randomise_bn

TORCHVISION_TO_DETECTRON = {
    "conv1": "branch2a",
    "conv2": "branch2b",
    "conv3": "branch2c",
    "downsample": "branch1",
}


def detectron_blobs(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """A torchvision ResNet's tensors as Detectron stored them: ``AffineChannel`` scale and shift
    in place of each batch norm, Caffe2's names, ``_momentum`` blobs beside the weights."""
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}

    def affine(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        scale = state[f"{prefix}.weight"] / np.sqrt(state[f"{prefix}.running_var"] + 1e-5)
        return scale, state[f"{prefix}.bias"] - state[f"{prefix}.running_mean"] * scale

    blobs = {"conv1_w": state["conv1.weight"], "pred_w": state["fc.weight"], "pred_b": state["fc.bias"]}
    blobs["res_conv1_bn_s"], blobs["res_conv1_bn_b"] = affine("bn1")
    for stage in range(1, 5):
        for block in range(len(getattr(model, f"layer{stage}"))):
            prefix, name = f"layer{stage}.{block}", f"res{stage + 1}_{block}"
            for ours, theirs in TORCHVISION_TO_DETECTRON.items():
                conv = f"{prefix}.downsample.0" if ours == "downsample" else f"{prefix}.{ours}"
                if f"{conv}.weight" not in state:
                    continue
                norm = f"{prefix}.downsample.1" if ours == "downsample" else f"{prefix}.bn{ours[-1]}"
                blobs[f"{name}_{theirs}_w"] = state[f"{conv}.weight"]
                blobs[f"{name}_{theirs}_w_momentum"] = np.zeros(1, dtype=np.float32)
                blobs[f"{name}_{theirs}_bn_s"], blobs[f"{name}_{theirs}_bn_b"] = affine(norm)
    return blobs


def write_pkl(path, blobs) -> str:
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)  # Detectron wrote Python 2 pickles
    return str(path)


def test_a_detectron_model_computes_what_its_weights_compute(tmp_path):
    torch.manual_seed(0)
    theirs = randomise_bn(torchvision.models.resnext50_32x4d(weights=None))
    pkl = write_pkl(tmp_path / "X-101-64x4d.pkl", detectron_blobs(theirs))  # a name Detectron released
    assert classifier_weights_source(pkl) == "detectron-pkl"
    assert_same_function(resnext50_32x4d(), theirs, pkl, "detectron-pkl")
    converted = convert_checkpoint(pkl, "detectron-pkl")
    assert converted["resnext_det"]["template"]["cardinality"] == 32
    assert converted["resnext_det"]["detectron2_cfg"] == {
        "INPUT.FORMAT": "BGR",
        "MODEL.PIXEL_MEAN": [102.9801, 115.9465, 122.7717],
        "MODEL.PIXEL_STD": [1.0, 1.0, 1.0],
    }
    # the RGB configs refuse it, naming the keys; a BGR config with Caffe's mean takes it
    torch.save(converted, tmp_path / "d2.pth")
    from resnext_det.checkpoint import check_weights_file_fits

    with pytest.raises(WeightsMismatchError, match=r"set INPUT.FORMAT BGR MODEL.PIXEL_MEAN \[102.98"):
        check_weights_file_fits(detector(), str(tmp_path / "d2.pth"))
    bgr = [
        "INPUT.FORMAT",
        "BGR",
        "MODEL.PIXEL_MEAN",
        "[102.9801, 115.9465, 122.7717]",
        "MODEL.PIXEL_STD",
        "[1, 1, 1]",
    ]
    check_weights_file_fits(detector(bgr), str(tmp_path / "d2.pth"))
    # a name that does not say its input takes --pkl-input
    renamed = write_pkl(tmp_path / "mine.pkl", detectron_blobs(theirs))
    with pytest.raises(WeightsMismatchError, match="a .pkl does not record the input.*--pkl-input detectron"):
        convert_checkpoint(renamed, "detectron-pkl")
    detectron2 = convert_checkpoint(renamed, "detectron-pkl", pkl_input="detectron2")
    assert detectron2["resnext_det"]["detectron2_cfg"]["MODEL.PIXEL_STD"] == [57.375, 57.12, 58.395]


def test_msra_resnets_and_other_pickles_are_refused(tmp_path):
    theirs = torchvision.models.resnet50(weights=None)
    msra = write_pkl(tmp_path / "R-50.pkl", detectron_blobs(theirs))
    with pytest.raises(WeightsMismatchError, match="stride in the first 1x1 convolution.*--source fb-torch7"):
        convert_checkpoint(msra, "detectron-pkl")
    detection = detectron_blobs(theirs) | {"rpn_conv_3x3_w": np.zeros(1, dtype=np.float32)}
    with pytest.raises(WeightsMismatchError, match="blob 'rpn_conv_3x3_w' is not part of an ImageNet ResNet"):
        convert_checkpoint(write_pkl(tmp_path / "X-101-64x4d.pkl", detection), "detectron-pkl")
    code = tmp_path / "evil.pkl"
    code.write_bytes(pickle.dumps({"blobs": {"conv1_w": print}}))
    with pytest.raises(WeightsMismatchError, match="asks to load builtins.print"):
        convert_checkpoint(code, "detectron-pkl", pkl_input="detectron")
