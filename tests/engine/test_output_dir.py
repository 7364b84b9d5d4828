"""An OUTPUT_DIR with an earlier run is refused unless --resume or --overwrite says what to do."""

from __future__ import annotations

from resnext_det.engine.output_dir import prepare_output_dir
from resnext_det.errors import OutputDirError

import pytest


def earlier_run(directory):
    directory.mkdir()
    for name in ("last_checkpoint", "model_0000009.pth", "metrics.json", "config.yaml", "notes.txt"):
        (directory / name).write_text("x")
    return directory


def test_a_new_or_unrelated_folder_is_used(tmp_path):
    prepare_output_dir(tmp_path / "new", resume=False, overwrite=False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    prepare_output_dir(tmp_path / "mine", resume=False, overwrite=False)


def test_an_earlier_run_is_refused_with_what_to_do(tmp_path):
    out = earlier_run(tmp_path / "out")
    with pytest.raises(
        OutputDirError,
        match=r"holds an earlier run \(last_checkpoint, metrics.json, model_0000009.pth\): pass --resume",
    ):
        prepare_output_dir(out, resume=False, overwrite=False)
    assert len(list(out.iterdir())) == 5


def test_resume_keeps_and_overwrite_removes_only_the_run(tmp_path):
    out = earlier_run(tmp_path / "out")
    prepare_output_dir(out, resume=True, overwrite=False)
    assert len(list(out.iterdir())) == 5
    prepare_output_dir(out, resume=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "notes.txt"]
    with pytest.raises(OutputDirError, match="pass one"):
        prepare_output_dir(out, resume=True, overwrite=True)
