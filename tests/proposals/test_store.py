"""The memory-mapped proposal store and the mapper that reads it (stage 2's bounded-RAM path)."""

from __future__ import annotations

import json
import pickle

from resnext_det import get_config_file
from resnext_det.engine import setup_cfg
from resnext_det.proposals.files import ProposalFileError
from resnext_det.proposals.mapper import ProposalLookupMapper, build_store_test_loader, open_stores
from resnext_det.proposals.store import ProposalStore, proposal_store_path, write_proposal_store

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, DatasetMapper, build_detection_test_loader
from detectron2.data.build import get_detection_dataset_dicts

# code the two detectron2 builds differ in: CI runs this file on both (tests/README.md)
pytestmark = pytest.mark.both_builds


def random_proposals(ids, seed=0):
    """Per image a different number of boxes (0 included), sorted by decreasing logit."""
    rng = np.random.default_rng(seed)
    boxes, logits = [], []
    for k, _ in enumerate(ids):
        n = (3 * k) % 7
        xy = rng.uniform(0, 80, (n, 2)).astype(np.float32)
        boxes.append(np.concatenate([xy, xy + rng.uniform(5, 40, (n, 2)).astype(np.float32)], axis=1))
        logits.append(np.sort(rng.normal(size=n).astype(np.float32))[::-1].copy())
    return {"ids": list(ids), "boxes": boxes, "objectness_logits": logits}


@pytest.mark.parametrize("ids", [[40, 3, 17, 1, 25], ["b.jpg", "a.jpg", "c.jpg"]])
def test_round_trip_in_any_id_order(tmp_path, ids):
    proposals = random_proposals(ids)
    path = write_proposal_store(tmp_path / "proposals_x", proposals, dataset_name="x")
    # no temporary left: the name, and the one version it links to
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proposals_x", path.resolve().name]
    store = ProposalStore(path)
    assert len(store) == len(ids) and store.meta["dataset"] == "x"
    for image_id, boxes, logits in zip(ids, proposals["boxes"], proposals["objectness_logits"], strict=True):
        got_boxes, got_logits = store.get(image_id)
        np.testing.assert_array_equal(got_boxes, boxes)
        np.testing.assert_array_equal(got_logits, logits)
        assert got_boxes.flags.writeable  # a copy, not a view of the read-only map
    assert store.missing([*ids, 999, "zzz"]) == [999, "zzz"]
    with pytest.raises(KeyError, match="999"):
        store.get(999)


def test_pickles_without_its_memory_maps(tmp_path):
    store = ProposalStore(write_proposal_store(tmp_path / "s", random_proposals([1, 2, 3])))
    store.get(2)
    blob = pickle.dumps(store)
    assert len(blob) < 2000  # the path and meta only: a worker reopens the maps
    np.testing.assert_array_equal(pickle.loads(blob).get(3)[0], store.get(3)[0])


def test_rewriting_replaces_the_store(tmp_path):
    path = write_proposal_store(tmp_path / "s", random_proposals([1, 2], seed=0))
    write_proposal_store(path, random_proposals([5], seed=1))
    assert list(ProposalStore(path).ids()) == [5]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s", path.resolve().name]  # old version gone


def test_a_rewrite_swaps_versions_atomically(tmp_path):
    path = tmp_path / "proposals_x"
    write_proposal_store(path, random_proposals([1, 2], seed=0))
    first = path.resolve()
    assert path.is_symlink() and first.name.startswith("proposals_x.v")
    # what a kill during the next write leaves: a half-written version and a half-made link
    (tmp_path / "proposals_x.v1.partial").mkdir()
    (tmp_path / "proposals_x.v1.partial" / "boxes.npy").write_bytes(b"\x93NUMPY")
    (tmp_path / "proposals_x.link.partial").symlink_to("proposals_x.v1.partial")
    assert set(ProposalStore(path).ids()) == {1, 2}  # the old store is still the one named
    write_proposal_store(path, random_proposals([3], seed=1))
    assert set(ProposalStore(path).ids()) == {3} and not first.exists()
    assert not (tmp_path / "proposals_x.link.partial").exists()


def test_duplicate_ids_are_refused(tmp_path):
    with pytest.raises(ProposalFileError, match="duplicate image ids"):
        write_proposal_store(tmp_path / "s", random_proposals([1, 1]))


def _corrupt_truncated(path):
    data = (path / "boxes.npy").read_bytes()
    (path / "boxes.npy").write_bytes(data[: len(data) // 2])


def _corrupt_pickled_ids(path):
    np.save(path / "ids.npy", np.array([object(), 1], dtype=object), allow_pickle=True)


def _corrupt_offsets(path):
    offsets = np.load(path / "offsets.npy")
    offsets[-1] += 1
    np.save(path / "offsets.npy", offsets)


def _corrupt_version(path):
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "version": 99}))


def _corrupt_unsorted_ids(path):
    np.save(path / "ids.npy", np.load(path / "ids.npy")[::-1].copy())


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (_corrupt_truncated, r"boxes.npy is not a readable .npy array"),
        (_corrupt_pickled_ids, r"ids.npy is not a readable .npy array"),
        (_corrupt_offsets, r"offsets.npy must rise from 0 to"),
        (_corrupt_version, r"store version 99, this resnext_det reads version 1"),
        (_corrupt_unsorted_ids, r"ids.npy must be sorted without duplicates"),
        (lambda p: (p / "objectness_logits.npy").unlink(), r"objectness_logits.npy is missing"),
        (lambda p: (p / "meta.json").write_text("{"), r"meta.json is not valid JSON"),
    ],
)
def test_corrupt_stores_are_explained(tmp_path, corrupt, message):
    path = write_proposal_store(tmp_path / "s", random_proposals([1, 2, 3, 4]))
    corrupt(path)
    with pytest.raises(ProposalFileError, match=message):
        ProposalStore(path)


def test_missing_store_names_the_directory(tmp_path):
    with pytest.raises(ProposalFileError, match="proposals_resnext_demo_val not found"):
        open_stores(tmp_path, ["resnext_demo_val"])


def _stage2_cfg(store_dir):
    return setup_cfg(
        get_config_file("demo/fast_rcnn_tiny_C4.yaml"),
        ["PROPOSALS.STORE_DIR", str(store_dir), "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST", "4"],
    )


def test_mapper_gives_what_detectron2_gives_from_the_pickle(demo_root, tmp_path):
    """The same proposals reach the model either way: the store only changes where they live."""
    records = DatasetCatalog.get("resnext_demo_val")
    proposals = random_proposals([r["image_id"] for r in records])
    write_proposal_store(proposal_store_path(tmp_path, "resnext_demo_val"), proposals)
    pkl = tmp_path / "p.pkl"
    pkl.write_bytes(pickle.dumps({**proposals, "bbox_mode": 0}))
    cfg = _stage2_cfg(tmp_path)

    ours = build_store_test_loader(cfg, "resnext_demo_val")
    theirs = build_detection_test_loader(
        get_detection_dataset_dicts(["resnext_demo_val"], filter_empty=False, proposal_files=[str(pkl)]),
        mapper=DatasetMapper(cfg, False),
    )
    compared = 0
    for (a,), (b,) in zip(ours, theirs, strict=True):
        assert a["image_id"] == b["image_id"]
        np.testing.assert_array_equal(
            a["proposals"].proposal_boxes.tensor, b["proposals"].proposal_boxes.tensor
        )
        np.testing.assert_array_equal(a["proposals"].objectness_logits, b["proposals"].objectness_logits)
        assert len(a["proposals"]) <= 4
        compared += 1
    assert compared == len(records)


def test_mapper_names_an_image_without_proposals(demo_root, tmp_path):
    records = DatasetCatalog.get("resnext_demo_val")
    write_proposal_store(
        proposal_store_path(tmp_path, "resnext_demo_val"),
        random_proposals([r["image_id"] for r in records[1:]]),
    )
    cfg = _stage2_cfg(tmp_path)
    mapper = ProposalLookupMapper(DatasetMapper(cfg, False), tmp_path, ["resnext_demo_val"])
    with pytest.raises(ProposalFileError, match=f"image id {records[0]['image_id']} .* has no proposals"):
        mapper(records[0])


def test_coverage_check_names_the_images_a_store_lacks(demo_root, tmp_path):
    from resnext_det.proposals.store import check_store_covers

    ids = [r["image_id"] for r in DatasetCatalog.get("resnext_demo_val")]
    path = write_proposal_store(tmp_path / "s", random_proposals(ids[2:]))
    with pytest.raises(
        ProposalFileError,
        match=rf"no proposals for 2 of the {len(ids)} images of resnext_demo_val .*\[1, 2\]",
    ):
        check_store_covers(path, "resnext_demo_val")
    write_proposal_store(path, random_proposals(ids))
    assert len(check_store_covers(path, "resnext_demo_val")) == len(ids)
