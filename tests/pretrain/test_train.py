"""Pretraining learns, resumes exactly after an interruption, and runs on two processes."""

from __future__ import annotations

from pretrain.engine import train
from resnext_det.engine import launch

import pytest
import torch
from detectron2.engine import hooks

# A deterministic input pipeline and no norm layer: then 1 process x 20 images and 2 processes
# x 10 images compute the same gradients, and the weights agree up to float reassociation. (BN
# statistics are per process by design; GN is per sample but on 1x1 res5 maps it amplifies float
# noise, 1e-7 -> 1e-2 in 4 steps, measured, which would hide real errors.)
DETERMINISTIC = [
    "INPUT.CROP_SCALE",
    "(1.0, 1.0)",
    "INPUT.CROP_RATIO",
    "(1.0, 1.0)",
    "INPUT.HFLIP",
    "False",
    "MODEL.RESNEXT.NORM",
    "",
]


def final_weights(cfg):
    return torch.load(f"{cfg.OUTPUT_DIR}/model_final.pth", weights_only=True)["model"]


def test_learns_the_synthetic_classes(tiny_cfg):
    """15 epochs of the tiny recipe: measured 55% top-1 error (chance: 80%)."""
    cfg = tiny_cfg()
    results = train(cfg)
    assert results["top1_err"] <= 65.0, results
    checkpoint = torch.load(f"{cfg.OUTPUT_DIR}/model_final.pth", weights_only=True)
    assert checkpoint["resnext_det"]["template"]["cardinality"] == 4
    assert checkpoint["resnext_det"]["input"]["format"] == "RGB"
    assert set(checkpoint) >= {"model", "optimizer", "scheduler", "rng", "iteration", "epoch"}
    assert checkpoint["epoch"] == 15
    # the model's classes in index order, for TEST.CLASS_SUBSET
    from pretrain.synthetic import SYNTHETIC_CLASSES

    assert open(f"{cfg.OUTPUT_DIR}/classes.txt").read().split() == list(SYNTHETIC_CLASSES)
    lines = open(f"{cfg.OUTPUT_DIR}/metrics.json").read().splitlines()
    assert any('"top1_err"' in line for line in lines) and any('"lr"' in line for line in lines)


class Interrupted(Exception):
    pass


def test_interrupted_then_resumed_equals_uninterrupted(tiny_cfg, tmp_path, monkeypatch):
    opts = ["SOLVER.EPOCHS", "3", "SOLVER.STEPS", "(2,)"]
    reference = tiny_cfg(*opts, "OUTPUT_DIR", str(tmp_path / "reference"))
    train(reference)

    resumed = tiny_cfg(*opts, "OUTPUT_DIR", str(tmp_path / "resumed"))
    original_after_step = hooks.PeriodicCheckpointer.after_step

    def crash_after_first_epoch_checkpoint(self):
        original_after_step(self)
        if self.trainer.iter + 1 == 15:  # 300 images / 20 per batch: end of epoch 1
            raise Interrupted

    monkeypatch.setattr(hooks.PeriodicCheckpointer, "after_step", crash_after_first_epoch_checkpoint)
    with pytest.raises(Interrupted):
        train(resumed)
    monkeypatch.setattr(hooks.PeriodicCheckpointer, "after_step", original_after_step)
    assert (tmp_path / "resumed" / "model_0000014.pth").is_file()
    assert not (tmp_path / "resumed" / "model_final.pth").exists()
    train(resumed, resume=True)

    expected, actual = final_weights(reference), final_weights(resumed)
    assert expected.keys() == actual.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=1e-6, msg=key)


def _train_in_worker(cfg):
    train(cfg)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU (gloo) path runs where CUDA is absent")
def test_two_processes_equal_one_with_the_same_total_batch(tiny_cfg, tmp_path):
    opts = [*DETERMINISTIC, "SOLVER.EPOCHS", "1", "SOLVER.STEPS", "()", "SOLVER.BASE_LR", "0.002"]
    single = tiny_cfg(*opts, "OUTPUT_DIR", str(tmp_path / "one"))
    train(single)
    double = tiny_cfg(*opts, "OUTPUT_DIR", str(tmp_path / "two"))
    launch(_train_in_worker, 2, dist_url="auto", args=(double,))
    expected, actual = final_weights(single), final_weights(double)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-4, atol=1e-4, msg=key)  # measured 1e-5


def test_bf16_autocast_and_channels_last_train(tiny_cfg):
    cfg = tiny_cfg("SOLVER.EPOCHS", "1", "SOLVER.AMP", "bf16", "SOLVER.MEMORY_FORMAT", "channels_last")
    results = train(cfg)
    assert 0 <= results["top1_err"] <= 100
    weights = final_weights(cfg)
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_eval_only_refuses_weights_of_another_template(tiny_cfg, tmp_path):
    from pretrain.engine import build_classifier, load_classifier_weights
    from resnext_det.checkpoint import WeightsMismatchError
    from resnext_det.modeling import resnext

    other = resnext(50, 8, 4, num_classes=5, stem_out_channels=16, res2_out_channels=32)
    torch.save({"model": other.state_dict()}, tmp_path / "other.pth")
    with pytest.raises(WeightsMismatchError, match=r"other.pth does not fit .* res2\.0\.conv1\.weight"):
        load_classifier_weights(build_classifier(tiny_cfg()), str(tmp_path / "other.pth"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without GPUs")
def test_cuda_device_without_gpu_is_explained(tiny_cfg):
    from pretrain.engine import build_classifier

    with pytest.raises(ValueError, match="add `MODEL.DEVICE cpu`"):
        build_classifier(tiny_cfg("MODEL.DEVICE", "cuda"))


def test_memory_format_auto_is_channels_last_on_the_cpu(tiny_cfg):
    from pretrain.config import uses_channels_last
    from pretrain.engine import build_classifier

    cfg = tiny_cfg()
    assert cfg.SOLVER.MEMORY_FORMAT == "auto" and uses_channels_last(cfg)
    model = build_classifier(cfg)
    assert model.stem.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not uses_channels_last(tiny_cfg("SOLVER.MEMORY_FORMAT", "contiguous"))
    cuda = tiny_cfg("MODEL.DEVICE", "cuda")  # not measured on GPUs yet: the conventional layout
    assert not uses_channels_last(cuda)
    cuda.SOLVER.MEMORY_FORMAT = "channels_last"
    assert uses_channels_last(cuda)


def test_bad_precision_keys_are_named(tiny_cfg):
    from pretrain.config import autocast_dtype, uses_channels_last
    from resnext_det.errors import ConfigError

    with pytest.raises(ConfigError, match=r"SOLVER.MEMORY_FORMAT is 'nhwc'; expected one of \['auto'"):
        uses_channels_last(tiny_cfg("SOLVER.MEMORY_FORMAT", "nhwc"))
    with pytest.raises(ConfigError, match=r"SOLVER.AMP is 'fp8'; expected one of \['', 'bf16', 'fp16'\]"):
        autocast_dtype(tiny_cfg("SOLVER.AMP", "fp8"))
    with pytest.raises(KeyError, match="SOLVER.CHANNELS_LAST was renamed to SOLVER.MEMORY_FORMAT"):
        tiny_cfg("SOLVER.CHANNELS_LAST", "True")
