"""Checkpoints: atomic, newest complete one on resume, never diverged weights, tensors only."""

from __future__ import annotations

from resnext_det.checkpoint import WeightsMismatchError
from resnext_det.checkpoint.safe_checkpointer import (
    SafeCheckpointer,
    complete_checkpoints,
    is_complete_checkpoint,
)
from resnext_det.errors import TrainingDivergedError

import pytest
import torch

# code the two detectron2 builds differ in: CI runs this file on both (tests/README.md)
pytestmark = pytest.mark.both_builds


def checkpointer(directory, value: float = 1.0):
    model = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(model.weight, value)
    return model, SafeCheckpointer(model, str(directory))


def test_save_writes_the_file_then_the_tag_and_nothing_else(tmp_path):
    _, ckpt = checkpointer(tmp_path)
    ckpt.save("model_0000004", iteration=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000004.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"
    assert ckpt.get_checkpoint_file() == str(tmp_path / "model_0000004.pth")


def test_resume_takes_the_newest_complete_checkpoint(tmp_path):
    _, ckpt = checkpointer(tmp_path, 1.0)
    ckpt.save("model_0000004", iteration=4)
    torch.nn.init.constant_(ckpt.model.weight, 2.0)
    ckpt.save("model_0000009", iteration=9)
    # killed while writing iteration 14: a truncated file under the final name (a copy tool, not
    # ours, could leave one), and our own temporary file
    good = (tmp_path / "model_0000009.pth").read_bytes()
    (tmp_path / "model_0000014.pth").write_bytes(good[: len(good) // 2])
    (tmp_path / "model_0000019.pth.partial").write_bytes(good[:100])
    assert not is_complete_checkpoint(tmp_path / "model_0000014.pth")
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["model_0000009.pth", "model_0000004.pth"]

    model, resumed = checkpointer(tmp_path, 0.0)
    assert resumed.has_checkpoint()
    extra = resumed.resume_or_load("", resume=True)
    assert extra["iteration"] == 9 and torch.all(model.weight == 2.0)


def test_a_tag_naming_a_missing_file_falls_back(tmp_path):
    _, ckpt = checkpointer(tmp_path)
    ckpt.save("model_0000004", iteration=4)
    (tmp_path / "last_checkpoint").write_text("model_0000099.pth")  # deleted by hand, say
    assert ckpt.get_checkpoint_file() == str(tmp_path / "model_0000004.pth")
    (tmp_path / "model_0000004.pth").unlink()
    assert not ckpt.has_checkpoint() and ckpt.get_checkpoint_file() == ""


def test_diverged_weights_are_not_saved(tmp_path):
    model, ckpt = checkpointer(tmp_path)
    ckpt.save("model_0000004", iteration=4)
    with torch.no_grad():
        model.weight[0, 1] = float("nan")
    with pytest.raises(
        TrainingDivergedError, match=r"1 weight tensor\(s\) are infinite or NaN \(first: weight\)"
    ):
        ckpt.save("model_0000009", iteration=9)
    assert ckpt.get_checkpoint_file().endswith("model_0000004.pth")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000004.pth"]


class Payload:
    def __reduce__(self):  # what a malicious checkpoint does: run a callable while loading
        return (print, ("this ran while loading",))


def test_checkpoints_load_without_running_code(tmp_path, capsys):
    torch.save({"model": {"weight": torch.ones(2, 3)}, "extra": Payload()}, tmp_path / "evil.pth")
    _, ckpt = checkpointer(tmp_path)
    with pytest.raises(
        WeightsMismatchError, match=r"evil.pth cannot be read as a checkpoint \(UnpicklingError"
    ):
        ckpt.load(str(tmp_path / "evil.pth"))
    assert "this ran" not in capsys.readouterr().out
    (tmp_path / "cut.pth").write_bytes((tmp_path / "evil.pth").read_bytes()[:50])
    with pytest.raises(WeightsMismatchError, match="cut.pth cannot be read as a checkpoint"):
        ckpt.load(str(tmp_path / "cut.pth"))
