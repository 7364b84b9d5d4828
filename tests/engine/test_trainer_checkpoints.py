"""The engine's trainer reads weights and checkpoints the same way on detectron2 0.6 and on main.

Both cases failed on main before: reading a weights file that is not named ``.pth`` called
detectron2's ``_load_file`` outside ``load()`` (an AssertionError), and main's
``DefaultTrainer.load_state_dict`` required the ``_trainer`` entry that v0.6 never wrote. The
checkpoints of the earlier, DefaultTrainer-based runs (optimizer under ``_trainer``) still resume.
"""

from __future__ import annotations

import logging

from resnext_det import get_config_file
from resnext_det.checkpoint import WeightsMismatchError
from resnext_det.engine import ResNeXtTrainer, setup_cfg, trainer_from_yaml

import pytest
import torch

# code the two detectron2 builds differ in: CI runs this file on both (tests/README.md)
pytestmark = pytest.mark.both_builds


def tiny_trainer(output_dir, *overrides) -> ResNeXtTrainer:
    cfg = setup_cfg(
        get_config_file("demo/faster_rcnn_tiny_C4.yaml"),
        ["SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "20", "OUTPUT_DIR", str(output_dir), *overrides],
    )
    return trainer_from_yaml(cfg)


def marked_state(trainer: ResNeXtTrainer, converted: bool = False) -> dict[str, torch.Tensor]:
    """The trainer's weights with one tensor set to a value no initialisation produces; with
    ``converted``, only what ``convert_weights.py`` writes (the trunk and res5, no BN counters)."""
    state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    if converted:
        state = {
            k: v
            for k, v in state.items()
            if k.startswith(("backbone.", "roi_heads.res5.")) and not k.endswith("num_batches_tracked")
        }
    state["backbone.res4.0.conv2.weight"].fill_(0.125)
    return state


@pytest.mark.parametrize("name", ["converted.pt", "converted.pkl", "converted.pth"])
def test_resnext_det_weights_load_whatever_their_suffix(demo_root, tmp_path, name):
    state = marked_state(tiny_trainer(tmp_path / "first"), converted=True)
    weights = tmp_path / name
    torch.save({"model": state, "__author__": "resnext_det"}, weights)

    trainer = tiny_trainer(tmp_path / "second", "MODEL.WEIGHTS", str(weights))
    trainer.resume_or_load(resume=False)
    loaded = trainer.model.state_dict()["backbone.res4.0.conv2.weight"]
    assert torch.equal(loaded, state["backbone.res4.0.conv2.weight"])


def test_weights_of_another_template_are_refused_whatever_their_suffix(demo_root, tmp_path):
    state = marked_state(tiny_trainer(tmp_path / "first"), converted=True)
    state["backbone.res4.0.conv2.weight"] = torch.zeros(3, 3, 3, 3)
    weights = tmp_path / "other.pkl"
    torch.save({"model": state, "__author__": "resnext_det"}, weights)
    trainer = tiny_trainer(tmp_path / "second", "MODEL.WEIGHTS", str(weights))
    with pytest.raises(WeightsMismatchError, match=r"backbone\.res4\.0\.conv2\.weight"):
        trainer.resume_or_load(resume=False)


def test_resume_from_a_checkpoint_without_optimizer_state(demo_root, tmp_path, caplog):
    """A checkpoint as detectron2 0.6's own DefaultTrainer writes it: the model, the trainer's
    iteration and hooks, and no ``_trainer`` (optimizer) entry."""
    output = tmp_path / "run"
    output.mkdir()
    state = marked_state(tiny_trainer(tmp_path / "first"))
    torch.save(
        {"model": state, "trainer": {"iteration": 7, "hooks": {}}, "iteration": 7},
        output / "model_0000007.pth",
    )
    (output / "last_checkpoint").write_text("model_0000007.pth")

    trainer = tiny_trainer(output)
    with caplog.at_level(logging.WARNING, logger="resnext_det"):
        trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 8
    assert torch.equal(
        trainer.model.state_dict()["backbone.res4.0.conv2.weight"], state["backbone.res4.0.conv2.weight"]
    )
    assert "has no optimizer state" in caplog.text


def test_checkpoints_carry_the_optimizer_state_on_every_build(demo_root, tmp_path):
    trainer = tiny_trainer(tmp_path / "run")
    state = trainer.state_dict()
    assert state["iteration"] == trainer.iter
    assert set(state) >= {"iteration", "hooks", "optimizer", "stream_seed"}
    assert state["optimizer"]["param_groups"][0]["lr"] == trainer.optimizer.param_groups[0]["lr"]


def test_resume_from_a_checkpoint_of_the_default_trainer_based_runs(demo_root, tmp_path):
    """Before the one engine, YAML runs checkpointed detectron2's ``DefaultTrainer``, whose
    optimizer state sits under ``_trainer``: a ``--resume`` still takes it (and the stream seed)."""
    output = tmp_path / "run"
    output.mkdir()
    first = tiny_trainer(tmp_path / "first")
    optimizer = first.optimizer.state_dict()
    optimizer["param_groups"][0]["lr"] = 0.125  # a value the config does not give
    trainer_state = {"iteration": 7, "hooks": {}, "_trainer": {"iteration": 7, "optimizer": optimizer}}
    trainer_state["stream_seed"] = 1234
    torch.save(
        {"model": first.model.state_dict(), "trainer": trainer_state, "iteration": 7},
        output / "model_0000007.pth",
    )
    (output / "last_checkpoint").write_text("model_0000007.pth")

    trainer = tiny_trainer(output)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 8
    assert trainer.optimizer.param_groups[0]["lr"] == 0.125
    assert trainer.stream_seed == 1234
