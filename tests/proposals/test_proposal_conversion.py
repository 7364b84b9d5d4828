"""tools/convert_proposals.py: detectron2's pickle <-> the store stage 2 reads, the same numbers."""

from __future__ import annotations

from resnext_det.errors import ProposalFileError
from resnext_det.proposals.convert import dataset_of
from resnext_det.proposals.files import read_proposal_file, write_proposal_file
from resnext_det.proposals.store import ProposalStore

import numpy as np
import pytest
from tool_runs import run_tool


def proposals(ids):
    rng = np.random.default_rng(0)
    boxes = [np.sort(rng.uniform(0, 50, (n, 4)).astype(np.float32), axis=1) for n in range(1, len(ids) + 1)]
    logits = [np.sort(rng.normal(size=len(b)).astype(np.float32))[::-1].copy() for b in boxes]
    return {"ids": ids, "boxes": boxes, "objectness_logits": logits}


@pytest.mark.parametrize("ids", [[3, 1, 2], ["b", "a"]])  # COCO's int ids, and string ids
def test_a_pickle_becomes_a_store_and_back_unchanged(tmp_path, ids):
    original = proposals(ids)
    write_proposal_file(tmp_path / "proposals_mine.pkl", original)
    done = run_tool("tools/convert_proposals.py", str(tmp_path / "proposals_mine.pkl"))
    assert done.returncode == 0, done.stderr
    store = ProposalStore(tmp_path / "proposals_mine")
    assert store.meta["dataset"] == "mine"
    for image_id, boxes, logits in zip(ids, original["boxes"], original["objectness_logits"], strict=True):
        np.testing.assert_array_equal(store.get(image_id)[0], boxes)
        np.testing.assert_array_equal(store.get(image_id)[1], logits)
    back = tmp_path / "back.pkl"
    done = run_tool(
        "tools/convert_proposals.py", str(tmp_path / "proposals_mine"), "--to-pickle", "--output", str(back)
    )
    assert done.returncode == 0, done.stderr
    content = read_proposal_file(back)
    again = dict(
        zip(content["ids"], zip(content["boxes"], content["objectness_logits"], strict=True), strict=True)
    )
    assert sorted(again) == sorted(ids)
    for image_id, boxes, logits in zip(ids, original["boxes"], original["objectness_logits"], strict=True):
        np.testing.assert_array_equal(again[image_id][0], boxes)
        np.testing.assert_array_equal(again[image_id][1], logits)
        assert type(again[image_id][0]) is np.ndarray  # a plain array: detectron2's loader reads it


def test_nothing_is_overwritten_and_the_dataset_is_named(tmp_path):
    write_proposal_file(tmp_path / "proposals_mine.pkl", proposals([1]))
    (tmp_path / "proposals_mine").mkdir()
    done = run_tool("tools/convert_proposals.py", str(tmp_path / "proposals_mine.pkl"))
    assert done.returncode == 1 and "exists; pass --overwrite" in done.stderr.strip().splitlines()[-1]
    assert not any((tmp_path / "proposals_mine").iterdir())  # what was there is untouched
    # the wrong direction for what the input is
    done = run_tool("tools/convert_proposals.py", str(tmp_path / "proposals_mine"))
    assert done.returncode == 1 and "is a store (a folder): convert it with --to-pickle" in done.stderr
    done = run_tool("tools/convert_proposals.py", str(tmp_path / "proposals_mine.pkl"), "--to-pickle")
    assert done.returncode == 1 and "--to-pickle converts a store" in done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(ProposalFileError, match="cannot tell its dataset"):
        dataset_of(tmp_path / "mine.pkl")
