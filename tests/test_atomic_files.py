"""A write that fails half-way leaves the previous file, and no temporary file behind."""

from __future__ import annotations

from resnext_det.atomic_files import atomic_folder, atomic_path, atomic_torch_save, atomic_write_json

import pytest
import torch


def test_a_failed_write_keeps_the_previous_content(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"AP": 1.0})
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as partial:
            partial.write_text('{"AP": 2')  # half written, then the writer dies
            raise RuntimeError("disk full")
    assert target.read_text() == '{\n  "AP": 1.0\n}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_torch_save_lands_complete_under_the_final_name(tmp_path):
    target = tmp_path / "sub" / "model.pth"
    atomic_torch_save({"w": torch.arange(3)}, target)
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.arange(3))
    assert [p.name for p in target.parent.iterdir()] == ["model.pth"]


def test_atomic_folder_replaces_the_folder_only_when_complete(tmp_path):
    target = tmp_path / "export"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(target) as partial:
        (partial / "new.txt").write_text("new")
        raise RuntimeError("export failed half-way")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no partial folder left
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    with atomic_folder(target) as partial:
        (partial / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    assert [p.name for p in target.iterdir()] == ["new.txt"]
