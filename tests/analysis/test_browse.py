"""tools/browse_dataset.py and resnext_det.analysis.browse on a small hand-made COCO dataset and
hand-made stage-1 proposals, whose recalls are worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

from resnext_det.analysis.browse import browse_dataset, matched_ious, matched_proposals, proposal_recall
from resnext_det.data.coco import register_checked_coco
from resnext_det.engine.defaults import setup_cfg
from resnext_det.proposals import stage1_proposals, write_proposal_file, write_proposal_store
from resnext_det.proposals.convert import pickle_to_store

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.evaluation.coco_evaluation import _evaluate_box_proposals
from detectron2.structures import Boxes, Instances
from PIL import Image
from pycocotools.coco import COCO
from tool_runs import run_tool

CONFIG = "configs/demo/rpn_tiny_C4.yaml"


def xywh(x0, y0, x1, y1):
    return [x0, y0, x1 - x0, y1 - y0]


# image id -> its objects (XYXY, category id) and its proposals (XYXY, best first)
IMAGES = {
    1: {
        "objects": [((10, 10, 50, 50), 1), ((100, 10, 140, 50), 2), ((10, 80, 50, 120), 1)],
        # A exactly; B shifted by 16 px (IoU 24/56 = 0.43); nothing near C
        "proposals": [(10, 10, 50, 50), (116, 10, 156, 50), (150, 90, 190, 130)],
    },
    2: {
        # two objects in the same place: one proposal can only be assigned to one of them
        "objects": [((20, 20, 60, 60), 1), ((20, 20, 60, 60), 2)],
        "proposals": [(20, 20, 60, 60)],
    },
    3: {
        # IoU 36/44 = 0.82 (found at 0.7), and IoU 30/50 = 0.6 (found only at 0.5)
        "objects": [((30, 30, 70, 70), 2), ((100, 60, 140, 100), 1)],
        "proposals": [(34, 30, 74, 70), (110, 60, 150, 100), (0, 0, 10, 10)],
    },
}


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """The three images as a registered COCO dataset, with stage 1's proposals in both formats."""
    root = tmp_path_factory.mktemp("browse")
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for image_id, content in IMAGES.items():
        name = f"image_{image_id}.png"
        Image.fromarray(rng.integers(0, 255, (160, 200, 3), dtype=np.uint8)).save(root / name)
        images.append({"id": image_id, "file_name": name, "height": 160, "width": 200})
        for box, category in content["objects"]:
            bbox = xywh(*box)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0})  # fmt: skip
    categories = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    json_file = root / "instances.json"
    json_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    name = "browse_tiny"
    if name not in DatasetCatalog.list():
        register_checked_coco(name, str(json_file), str(root))
    proposals = {
        "ids": list(IMAGES),
        "boxes": [np.asarray(c["proposals"], np.float32) for c in IMAGES.values()],
        # scores descending, stored in reverse order: the browser must sort them itself
        "objectness_logits": [
            np.arange(len(c["proposals"]), 0, -1, dtype=np.float32) for c in IMAGES.values()
        ],
    }
    reversed_ = {k: v if k == "ids" else [a[::-1].copy() for a in v] for k, v in proposals.items()}
    pickle_dir, store_dir = root / "rpn_pickle", root / "rpn_store"
    write_proposal_file(pickle_dir / f"proposals_{name}.pkl", reversed_)
    write_proposal_store(store_dir / f"proposals_{name}", reversed_, name)
    return {"name": name, "json": json_file, "root": root, "pickle": pickle_dir, "store": store_dir}


def browse_cfg(tiny_dataset, *opts):
    """The RPN config on the tiny dataset alone: naming no demo split, it registers none (the
    session's demo_root fixture registers them where the tests generate them)."""
    name = tiny_dataset["name"]
    return setup_cfg(CONFIG, ["DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", "()", *opts])


def test_each_object_gets_one_proposal():
    objects = np.asarray([(20, 20, 60, 60), (20, 20, 60, 60)], np.float32)
    assert matched_ious(objects, objects[:1]).tolist() == [1.0, 0.0]
    assert matched_ious(objects, np.zeros((0, 4))).tolist() == [0.0, 0.0]
    recall = proposal_recall(np.asarray([o for o, _ in IMAGES[3]["objects"]], np.float32),
                             np.asarray(IMAGES[3]["proposals"], np.float32))  # fmt: skip
    assert recall["iou"] == pytest.approx([36 / 44, 30 / 50], abs=1e-4)
    assert (recall["recall@0.5"], recall["recall@0.7"]) == (1.0, 0.5)
    assert proposal_recall(np.zeros((0, 4)), objects)["recall@0.5"] is None
    # which proposal each object got (the one the drawing dots beside it): the better one first
    proposals = np.asarray([(0, 0, 10, 10), (22, 22, 60, 60), (20, 20, 60, 60)], np.float32)
    ious, assigned = matched_proposals(objects, proposals)
    assert assigned.tolist() == [2, 1] and ious.tolist() == pytest.approx([1.0, 38 * 38 / 1600])
    assert matched_proposals(objects, np.zeros((0, 4)))[1].tolist() == [-1, -1]


@pytest.mark.parametrize("source", ["pickle", "store"])
def test_proposal_recall_per_image_and_pooled(tiny_dataset, tmp_path, source):
    """From stage 1's store, and from detectron2's pickle converted into one (the same numbers)."""
    folder, name = tiny_dataset["store"], tiny_dataset["name"]
    if source == "pickle":
        folder = tmp_path / "converted"
        pickle_to_store(tiny_dataset["pickle"] / f"proposals_{name}.pkl", folder / f"proposals_{name}", name)
    lookup = stage1_proposals(str(folder), name)
    result = browse_dataset(name, "proposals", tmp_path, proposals=lookup, top_k=2, worst_first=True)
    by_id = {e["image_id"]: e for e in result.images}
    # top 2 of image 1: A (IoU 1) and the shifted B (0.43): 1 of 3 at 0.5 and at 0.7
    assert by_id[1]["iou"] == pytest.approx([1.0, 24 / 56, 0.0], abs=1e-4)
    assert (by_id[1]["recall@0.5"], by_id[1]["recall@0.7"]) == (pytest.approx(1 / 3), pytest.approx(1 / 3))
    assert (by_id[2]["recall@0.5"], by_id[3]["recall@0.5"], by_id[3]["recall@0.7"]) == (0.5, 1.0, 0.5)
    # pooled over the 7 objects: found at 0.5: A, one of image 2's, both of image 3 -> 4/7; at 0.7: 3/7
    assert result.summary["objects"] == 7
    assert result.summary["recall@0.5"] == pytest.approx(4 / 7)
    assert result.summary["recall@0.7"] == pytest.approx(3 / 7)
    # worst first (recall at 0.7, then 0.5): image 1 (1/3), image 2 (1/2, 1/2), image 3 (1/2, 1)
    assert [Path(p).stem for p in result.pictures] == ["image_1", "image_2", "image_3"]
    assert json.loads((tmp_path / "browse.json").read_text())["summary"] == result.summary
    sheet = Image.open(result.contact_sheet)
    assert sheet.size[0] >= 3 * 200 and sheet.size[1] >= 160
    # the legend above the tiles: the three outline colours on a white band
    tile_height = max(Image.open(p).height for p in result.pictures)
    band = np.asarray(sheet.convert("RGB"))[: sheet.size[1] - tile_height]
    assert band.shape[0] >= 30
    for colour in ("#56B4E9", "#F0E442", "#D55E00"):
        rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(band.astype(int) - rgb).sum(axis=2) < 30).sum() > 20, colour


def test_pooled_recall_is_detectron2s(tiny_dataset, tmp_path):
    """detectron2's proposal evaluation (what stage 1 logs as box_proposals/AR@k) gives the same
    recalls at 0.5 and 0.7 on the same top-k."""
    lookup = stage1_proposals(str(tiny_dataset["store"]), tiny_dataset["name"])
    for top_k in (1, 2, 3):
        name = tiny_dataset["name"]
        ours = browse_dataset(name, "proposals", tmp_path, 1, proposals=lookup, top_k=top_k).summary
        predictions = []
        for image_id in IMAGES:
            boxes, logits = lookup(image_id)
            instances = Instances((160, 200), proposal_boxes=Boxes(torch.as_tensor(boxes)),
                                  objectness_logits=torch.as_tensor(logits))  # fmt: skip
            predictions.append({"image_id": image_id, "proposals": instances})
        theirs = _evaluate_box_proposals(predictions, COCO(str(tiny_dataset["json"])),
                                         thresholds=torch.tensor([0.5, 0.7]), limit=top_k)  # fmt: skip
        assert [ours["recall@0.5"], ours["recall@0.7"]] == pytest.approx(theirs["recalls"].tolist())


def test_augmented_inputs_are_the_mappers(tiny_dataset, tmp_path):
    """No flip, shorter side to 400: the boxes drawn are the annotations times 2.5."""
    cfg = browse_cfg(tiny_dataset, "INPUT.RANDOM_FLIP", "none", "INPUT.MIN_SIZE_TRAIN", "(400,)",
                     "INPUT.MAX_SIZE_TRAIN", "1000")  # fmt: skip
    result = browse_dataset(tiny_dataset["name"], "augmented", tmp_path, num_images=1,
                            training_mapper=DatasetMapper(cfg, is_train=True), seed=cfg.SEED,
                            input_format=cfg.INPUT.FORMAT)  # fmt: skip
    entry = result.images[0]
    assert entry["input_size"] == [400, 500]
    expected = [[2.5 * v for v in box] for box, _ in IMAGES[1]["objects"]]
    assert np.allclose(entry["input_boxes"], expected)
    assert Image.open(result.pictures[0]).size == (500, 400)


def run(*args):
    return run_tool(*args)


def test_the_tool_on_any_coco_dataset(tiny_dataset, tmp_path):
    dataset = ["--dataset", tiny_dataset["name"], str(tiny_dataset["json"]), str(tiny_dataset["root"])]
    common = [
        "tools/browse_dataset.py",
        "--config-file",
        CONFIG,
        *dataset,
        "--dataset-name",
        tiny_dataset["name"],
    ]
    done = run(*common, "--what", "proposals", "--proposals", str(tiny_dataset["store"]), "--top-k", "2",
               "--output", str(tmp_path / "p"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "find 0.571 of the 7 objects at IoU 0.5, 0.429 at 0.7 (3 images)" in done.stdout
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        "browse.json", "contact_sheet.png", "image_1.png", "image_2.png", "image_3.png",
    ]  # fmt: skip
    done = run(*common, "--what", "gt", "--num-images", "2", "--output", str(tmp_path / "gt"))
    assert done.returncode == 0, done.stderr
    entries = json.loads((tmp_path / "gt" / "browse.json").read_text())["images"]
    assert [e["objects"] for e in entries] == [3, 2, 2] and "picture" not in entries[2]
    # proposals for another dataset: named, with what to do
    other = tmp_path / "other"
    write_proposal_store(other / f"proposals_{tiny_dataset['name']}",
                         {"ids": [1], "boxes": [np.zeros((1, 4), np.float32)],
                          "objectness_logits": [np.zeros(1, np.float32)]})  # fmt: skip
    done = run(*common, "--what", "proposals", "--proposals", str(other), "--output", str(tmp_path / "x"))
    assert done.returncode == 1
    assert (
        "no proposals for 2 of the 3 images of browse_tiny" in done.stderr and "Traceback" not in done.stderr
    )
