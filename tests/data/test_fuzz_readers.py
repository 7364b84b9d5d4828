"""Property-based fuzzing (hypothesis) of the readers that take files from outside.

The COCO json loader, the proposal pickle reader and the proposal store get randomly corrupted
inputs: values replaced by arbitrary JSON / Python values, keys dropped, bytes cut off or
flipped. Every outcome must be a clean result or one of the documented errors
(``AnnotationFileError``/``DatasetFileError``, ``ProposalFileError``), never another exception.
A fixed number of examples, derandomized, so CI runs the same cases each time.
"""

from __future__ import annotations

import copy
import json
import pickle

from resnext_det.data.coco import AnnotationFileError, DatasetFileError, load_checked_coco_json
from resnext_det.proposals.files import ProposalFileError, read_proposal_file
from resnext_det.proposals.store import ProposalStore, write_proposal_store

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

FUZZ = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**12) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=6,
)
EXTRA_KEYS = [
    "segmentation",
    "keypoints",
    "iscrowd",
    "area",
    "bbox_mode",
    "id",
    "bbox",
    "height",
    "file_name",
]


def valid_coco() -> dict:
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "height": 20, "width": 30},
            {"id": 2, "file_name": "b.png", "height": 40, "width": 10},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [0, 0, 30, 20], "area": 600, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [2.5, 1, 0, 0], "area": 0, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}],
    }


@st.composite
def corrupted_coco(draw) -> bytes:
    content = valid_coco()
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["replace", "delete", "add", "top"]))
        if kind == "top":
            key = draw(st.sampled_from(["images", "annotations", "categories", "info"]))
            if draw(st.booleans()):
                content.pop(key, None)
            else:
                content[key] = draw(JSON_VALUES)
            continue
        section = draw(st.sampled_from(["images", "annotations", "categories"]))
        entries = content.get(section)
        if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
            continue
        entry = entries[draw(st.integers(0, len(entries) - 1))]
        if not isinstance(entry, dict):
            continue
        if kind == "add":
            entry[draw(st.sampled_from(EXTRA_KEYS))] = draw(JSON_VALUES)
        elif entry:
            key = draw(st.sampled_from(sorted(entry)))
            if kind == "delete":
                del entry[key]
            else:
                entry[key] = draw(JSON_VALUES)
    data = json.dumps(content).encode()
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return data


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_images")
    from PIL import Image

    Image.new("RGB", (30, 20)).save(root / "a.png")
    Image.new("RGB", (10, 40)).save(root / "b.png")
    return root


@FUZZ
@given(data=corrupted_coco())
def test_coco_loader_gives_records_or_a_documented_error(tmp_path, image_root, data):
    path = tmp_path / "fuzz.json"
    path.write_bytes(data)
    try:
        records = load_checked_coco_json(str(path), str(image_root), "fuzz")
    except (AnnotationFileError, DatasetFileError):
        return
    for record in records:  # what came back is usable: boxes of four numbers, known classes
        for obj in record.get("annotations", []):
            assert len(obj["bbox"]) == 4 and obj["category_id"] in (0, 1)


def valid_proposals() -> dict:
    rng = np.random.default_rng(0)
    return {
        "ids": [3, 1, 2],
        "boxes": [rng.random((n, 4), dtype=np.float32) * 50 for n in (2, 0, 5)],
        "objectness_logits": [rng.standard_normal(n).astype(np.float32) for n in (2, 0, 5)],
        "bbox_mode": 0,
    }


PY_VALUES = (
    JSON_VALUES
    | hnp.arrays(hnp.scalar_dtypes(), hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
    | st.lists(hnp.arrays(np.float32, hnp.array_shapes(max_dims=2, max_side=5)), max_size=3)
)


@st.composite
def corrupted_proposal_pickle(draw) -> bytes:
    content = valid_proposals()
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(["ids", "boxes", "objectness_logits", "bbox_mode"]))
        action = draw(st.sampled_from(["replace", "delete", "item"]))
        if action == "delete":
            content.pop(key, None)
        elif action == "replace" or not isinstance(content.get(key), list) or not content[key]:
            content[key] = draw(PY_VALUES)
        else:
            content[key][draw(st.integers(0, len(content[key]) - 1))] = draw(PY_VALUES)
    data = pickle.dumps(content, protocol=draw(st.sampled_from([2, 4, 5])))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return data


@FUZZ
@given(data=corrupted_proposal_pickle())
def test_proposal_reader_gives_a_checked_dict_or_a_documented_error(tmp_path, data):
    path = tmp_path / "fuzz.pkl"
    path.write_bytes(data)
    try:
        content = read_proposal_file(path)
    except ProposalFileError:
        return
    for boxes, logits in zip(content["boxes"], content["objectness_logits"], strict=True):
        assert boxes.shape == (len(logits), 4) and np.isfinite(boxes).all()


@FUZZ
@given(
    target=st.sampled_from(["boxes.npy", "objectness_logits.npy", "ids.npy", "offsets.npy", "meta.json"]),
    cut=st.integers(0, 400),
    garbage=st.binary(max_size=64),
    meta=JSON_VALUES,
)
def test_proposal_store_opens_or_raises_a_documented_error(tmp_path, target, cut, garbage, meta):
    proposals = valid_proposals()
    store_dir = tmp_path / "store"
    write_proposal_store(store_dir, copy.deepcopy(proposals), dataset_name="fuzz")
    file = store_dir / target
    if target == "meta.json" and garbage[:1] == b"{":
        file.write_text(json.dumps(meta))
    else:
        file.write_bytes(file.read_bytes()[:cut] + garbage)
    try:
        store = ProposalStore(store_dir)
        found = [store.find(i) for i in proposals["ids"]]
    except ProposalFileError:
        return
    for result in found:
        if result is not None:
            assert result[0].shape == (len(result[1]), 4)
