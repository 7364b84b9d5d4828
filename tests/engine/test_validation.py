"""TEST.VAL_LOSS_PERIOD logs the loss on DATASETS.TEST without changing the run; TEST.BEST_METRIC
keeps model_best.pth, untagged, and its best value across --resume. A LazyConfig run has both
(train.val_loss_period, train.best_metric), through the same engine."""

from __future__ import annotations

import json
import math
from pathlib import Path

from resnext_det import get_config_file
from resnext_det.checkpoint.safe_checkpointer import SafeDetectionCheckpointer, read_checkpoint_file
from resnext_det.data.demo_dataset import register_demo_datasets
from resnext_det.engine import setup_cfg, trainer_from_yaml
from resnext_det.engine.lazy_config import load_lazy_config
from resnext_det.engine.lazy_train import trainer_from_lazy
from resnext_det.engine.validation import BestCheckpoint, best_metric
from resnext_det.seeding import seed_all

import pytest
import torch
from detectron2.utils.events import EventStorage

# code the two detectron2 builds differ in: CI runs this file on both (tests/README.md)
pytestmark = pytest.mark.both_builds


def train_rpn(output_dir, validation_period: int):
    """40 iterations at the generated size (the demo config trains at 2x: 4x the pixels, and this
    fixture only compares the two runs and reads their logs)."""
    cfg = setup_cfg(
        get_config_file("demo/rpn_tiny_C4.yaml"),
        ["SOLVER.MAX_ITER", "40", "SOLVER.STEPS", "()", "SOLVER.IMS_PER_BATCH", "2", "TEST.EVAL_PERIOD", "20",
         "TEST.VAL_LOSS_PERIOD", str(validation_period), "SEED", "0", "OUTPUT_DIR", str(output_dir),
         "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "192", "INPUT.MIN_SIZE_TEST", "128",
         "INPUT.MAX_SIZE_TEST", "192"],
    )  # fmt: skip
    seed_all(0)  # the same initial weights for both runs (default_setup would seed from SEED)
    trainer = trainer_from_yaml(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return trainer


@pytest.fixture(scope="module")
def runs(demo_root, tmp_path_factory):
    with_validation = train_rpn(tmp_path_factory.mktemp("with"), 20)
    without = train_rpn(tmp_path_factory.mktemp("without"), 0)
    return with_validation, without


def test_validation_loss_is_logged_and_changes_nothing_else(runs):
    with_validation, without = runs
    history = with_validation.storage.history("validation/total_loss").values()
    assert [iteration for _, iteration in history] == [19, 39]  # every 20 iterations, and after the last
    assert all(0 < value < 10 and math.isfinite(value) for value, _ in history)
    parts = sum(
        with_validation.storage.history(f"validation/{k}").latest() for k in ("loss_rpn_cls", "loss_rpn_loc")
    )
    assert parts == pytest.approx(history[-1][0])
    # the same training, loss for loss and weight for weight (forked RNG, BN untouched, own storage)
    for key in ("total_loss", "loss_rpn_cls", "rpn/num_pos_anchors"):
        assert with_validation.storage.history(key).values() == without.storage.history(key).values(), key
    a, b = with_validation.model.state_dict(), without.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = [json.loads(line) for line in open(f"{with_validation.checkpointer.save_dir}/metrics.json")]
    # a period that is a multiple of detectron2's writer period (20): every value reaches the file
    assert [line["iteration"] for line in lines if "validation/total_loss" in line] == [19, 39]


def test_the_best_checkpoint_is_kept_untagged(runs):
    trainer, _ = runs
    out = trainer.checkpointer.save_dir
    best = read_checkpoint_file(f"{out}/model_best.pth")["best"]
    recalls = trainer.storage.history("box_proposals/AR@100").values()
    value, iteration = max(recalls)
    assert best == {"metric": "box_proposals/AR@100", "value": value, "iteration": iteration}
    assert open(f"{out}/last_checkpoint").read().strip() == "model_final.pth"  # --resume starts there


def test_best_metric_defaults_and_direction():
    rpn = setup_cfg(get_config_file("demo/rpn_tiny_C4.yaml"))
    frcn = setup_cfg(get_config_file("demo/fast_rcnn_tiny_C4.yaml"))
    assert best_metric(rpn) == ("box_proposals/AR@100", "max")
    assert best_metric(frcn) == ("bbox/AP", "max")
    chosen = setup_cfg(
        get_config_file("demo/fast_rcnn_tiny_C4.yaml"), ["TEST.BEST_METRIC", "validation/total_loss"]
    )
    assert best_metric(chosen) == ("validation/total_loss", "min")


class _Trainer:
    def __init__(self, storage, iteration, max_iter=100):
        self.storage, self.iter, self.max_iter = storage, iteration, max_iter


def test_resume_keeps_the_best_value(tmp_path):
    checkpointer = SafeDetectionCheckpointer(torch.nn.Linear(2, 2), save_dir=str(tmp_path))

    def check(value: float, iteration: int):
        hook = BestCheckpoint(10, checkpointer, "bbox/AP", "max")
        with EventStorage(iteration) as storage:
            hook.trainer = _Trainer(storage, iteration)
            hook.before_train()  # a resumed run: reads the best so far back from model_best.pth
            storage.put_scalar("bbox/AP", value, smoothing_hint=False)
            hook._best_checking()
        return read_checkpoint_file(tmp_path / "model_best.pth")["best"]

    assert check(50.0, 9) == {"metric": "bbox/AP", "value": 50.0, "iteration": 9}
    assert check(40.0, 19)["value"] == 50.0  # after a resume, a worse value does not replace it
    assert check(60.0, 29) == {"metric": "bbox/AP", "value": 60.0, "iteration": 29}
    assert not (tmp_path / "last_checkpoint").exists()  # never tagged


LAZY_RPN = str(Path(__file__).resolve().parents[2] / "configs" / "lazy" / "demo" / "rpn_tiny_C4.py")


def train_lazy_rpn(output_dir, validation_period: int):
    """20 iterations of the demo's LazyConfig RPN, evaluated every 10."""
    overrides = ["train.max_iter=20", "train.eval_period=10", f"train.val_loss_period={validation_period}",
                 f"train.output_dir={output_dir}"]  # fmt: skip
    cfg = load_lazy_config(LAZY_RPN, overrides)
    register_demo_datasets()
    seed_all(0)
    trainer = trainer_from_lazy(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return trainer


def test_a_lazy_run_has_the_validation_loss_and_the_best_checkpoint(demo_root, tmp_path):
    with_validation = train_lazy_rpn(tmp_path / "with", 10)
    without = train_lazy_rpn(tmp_path / "without", 0)
    history = with_validation.storage.history("validation/total_loss").values()
    assert [iteration for _, iteration in history] == [9, 19]
    for key in ("total_loss", "loss_rpn_cls"):  # the same training
        assert with_validation.storage.history(key).values() == without.storage.history(key).values(), key
    # one test set's metrics un-nested, as a YAML run's: the best checkpoint finds its default metric
    value, iteration = max(with_validation.storage.history("box_proposals/AR@100").values())
    best = read_checkpoint_file(tmp_path / "with" / "model_best.pth")["best"]
    assert best == {"metric": "box_proposals/AR@100", "value": value, "iteration": iteration}
