"""Proposal files: format, validation, and dumping them from a ProposalNetwork."""

from __future__ import annotations

import pickle

from resnext_det import get_config_file
from resnext_det.engine import attach_proposal_files, dump_proposals, setup_cfg
from resnext_det.proposals.convert import store_to_pickle
from resnext_det.proposals.files import (
    ProposalFileError,
    check_proposals_cover,
    proposal_file_path,
    read_proposal_file,
    write_proposal_file,
)
from resnext_det.proposals.store import ProposalStore, proposal_store_path

import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

# code the two detectron2 builds differ in: CI runs this file on both (tests/README.md)
pytestmark = pytest.mark.both_builds


def proposals_for(ids, n=3):
    rng = np.random.default_rng(0)
    boxes = [np.sort(rng.uniform(0, 100, (n, 4)).astype(np.float32), axis=1) for _ in ids]
    return {"ids": list(ids), "boxes": boxes, "objectness_logits": [np.zeros(n, np.float32) for _ in ids]}


def test_round_trip_in_detectron2_format(tmp_path):
    path = write_proposal_file(tmp_path / "p.pkl", proposals_for([1, 2]))
    assert not list(tmp_path.glob("*.partial"))
    raw = pickle.loads(path.read_bytes())
    assert raw["bbox_mode"] == 0 and type(raw["bbox_mode"]) is int  # no detectron2 enum inside
    content = read_proposal_file(path)
    assert content["ids"] == [1, 2] and content["boxes"][1].shape == (3, 4)


@pytest.mark.parametrize(
    "content, message",
    [
        ([1, 2], "expected a dict with ids, boxes, objectness_logits"),
        ({"ids": [1], "boxes": []}, "expected a dict with ids, boxes, objectness_logits"),
        (
            {"ids": [1, 2], "boxes": [np.zeros((1, 4))], "objectness_logits": [np.zeros(1)]},
            "differ in length",
        ),
        (
            {"ids": [7], "boxes": [np.zeros((2, 5))], "objectness_logits": [np.zeros(2)]},
            "image 7 has boxes of shape",
        ),
        ({"ids": 3, "boxes": [], "objectness_logits": []}, "'ids' is a int, expected a list per image"),
        (
            {"ids": [7], "boxes": [[[0, 0, 1, 1]]], "objectness_logits": [np.zeros(1)]},
            "image 7: boxes and objectness_logits must be numeric numpy arrays, found list",
        ),
        (
            {"ids": [7], "boxes": [np.full((1, 4), np.nan)], "objectness_logits": [np.zeros(1)]},
            "image 7 has infinite or NaN boxes",
        ),
    ],
)
def test_malformed_files_are_explained(tmp_path, content, message):
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps(content))
    with pytest.raises(ProposalFileError, match=message):
        read_proposal_file(path)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ProposalFileError, match="does not exist; run tools/train_rpn.py"):
        read_proposal_file(tmp_path / "none.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ProposalFileError, match="not a readable proposal pickle"):
        read_proposal_file(tmp_path / "junk.pkl")


class Payload:
    def __reduce__(self):  # a pickle may ask to call anything while it loads
        return (print, ("this ran while loading",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"ids": [1], "boxes": [Payload()], "objectness_logits": [np.zeros(1)]}))
    with pytest.raises(
        ProposalFileError,
        match=r"not a readable proposal pickle: UnpicklingError: it asks to load builtins.print",
    ):
        read_proposal_file(path)
    assert "this ran" not in capsys.readouterr().out


def test_coverage_check_names_missing_images(demo_root, tmp_path):
    ids = [r["image_id"] for r in DatasetCatalog.get("resnext_demo_val")]
    path = write_proposal_file(tmp_path / "p.pkl", proposals_for(ids[:-3]))
    with pytest.raises(
        ProposalFileError, match=f"no proposals for 3 of the {len(ids)} images of resnext_demo_val"
    ):
        check_proposals_cover(path, "resnext_demo_val")
    write_proposal_file(path, proposals_for(ids))
    assert len(check_proposals_cover(path, "resnext_demo_val")["ids"]) == len(ids)


def test_dump_from_a_proposal_network_and_attach(demo_root, tmp_path):
    cfg = setup_cfg(
        get_config_file("demo/rpn_tiny_C4.yaml"),
        [
            "DATASETS.TRAIN",
            "('resnext_demo_val',)",
            "MODEL.RPN.POST_NMS_TOPK_TRAIN",
            "30",
            "MODEL.RPN.POST_NMS_TOPK_TEST",
            "30",
            "OUTPUT_DIR",
            str(tmp_path),
        ],
    )
    written = dump_proposals(cfg, build_model(cfg))
    assert written == {"resnext_demo_val": proposal_store_path(tmp_path, "resnext_demo_val")}
    assert not proposal_file_path(tmp_path, "resnext_demo_val").exists()  # one format: the store
    # detectron2's pickle, converted from it (tools/convert_proposals.py): the same numbers
    store = ProposalStore(written["resnext_demo_val"])
    pickle_file = store_to_pickle(
        written["resnext_demo_val"], proposal_file_path(tmp_path, "resnext_demo_val")
    )
    content = check_proposals_cover(pickle_file, "resnext_demo_val")
    for image_id, boxes, logits in zip(
        content["ids"], content["boxes"], content["objectness_logits"], strict=True
    ):
        np.testing.assert_array_equal(store.get(image_id)[0], boxes)
        np.testing.assert_array_equal(store.get(image_id)[1], logits)
    records = {r["image_id"]: r for r in DatasetCatalog.get("resnext_demo_val")}
    assert sorted(content["ids"]) == sorted(records)
    for image_id, boxes, logits in zip(
        content["ids"], content["boxes"], content["objectness_logits"], strict=True
    ):
        assert 0 < len(boxes) <= 30 and boxes.dtype == np.float32 and logits.shape == (len(boxes),)
        assert (boxes[:, 2] <= records[image_id]["width"] + 1e-3).all() and (boxes[:, :2] >= 0).all()
        assert (np.diff(logits) <= 1e-6).all()  # sorted by objectness

    def stage2():
        return setup_cfg(
            get_config_file("demo/fast_rcnn_tiny_C4.yaml"),
            ["DATASETS.TRAIN", "('resnext_demo_val',)"],
            extra=lambda c: attach_proposal_files(c, str(tmp_path)),
        )

    # stage 2 reads the store; a pickle alone is named, with the command that converts it
    assert stage2().PROPOSALS.STORE_DIR == str(tmp_path) and stage2().DATASETS.PROPOSAL_FILES_TRAIN == ()
    proposal_store_path(tmp_path, "resnext_demo_val").unlink()  # the name is a link to the version
    expected = r"proposals_resnext_demo_val\.pkl is detectron2's proposal pickle, but stage 2 reads "
    with pytest.raises(ProposalFileError, match=expected + r"stage 1's store .*tools/convert_proposals\.py"):
        stage2()
    with pytest.raises(
        ProposalFileError, match=r"proposals_resnext_demo_train/ does not exist; run tools/train_rpn"
    ):
        setup_cfg(
            get_config_file("demo/fast_rcnn_tiny_C4.yaml"),
            [],
            extra=lambda c: attach_proposal_files(c, str(tmp_path)),
        )
