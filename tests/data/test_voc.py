"""Pascal VOC-layout folders: checked, registered, evaluated with both VOC metrics, through the
tools. The folder is the demo's val split written in VOC's layout (JPEG images, XML boxes in
1-based integer pixels)."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from resnext_det.data.voc import VOCBothMetricsEvaluator, check_voc_folder, register_checked_voc
from resnext_det.errors import AnnotationFileError, DatasetFileError

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances
from PIL import Image
from tool_runs import run_tool

# code the two detectron2 builds differ in: CI runs this file on both (tests/README.md)
pytestmark = pytest.mark.both_builds


def write_voc(demo_root: Path, target: Path, split: str = "val") -> Path:
    """The demo's COCO split as a VOC folder: <target>/{Annotations,JPEGImages,ImageSets/Main}."""
    coco = json.loads((demo_root / "annotations" / f"{split}.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (target / sub).mkdir(parents=True, exist_ok=True)
    ids = []
    for image in coco["images"]:
        image_id = Path(image["file_name"]).stem
        ids.append(image_id)
        Image.open(demo_root / split / image["file_name"]).convert("RGB").save(
            target / "JPEGImages" / f"{image_id}.jpg", quality=95
        )
        root = ET.Element("annotation")
        size = ET.SubElement(root, "size")
        ET.SubElement(size, "width").text, ET.SubElement(size, "height").text = (
            str(image["width"]),
            str(image["height"]),
        )
        for ann in (a for a in coco["annotations"] if a["image_id"] == image["id"]):
            x, y, w, h = ann["bbox"]
            obj = ET.SubElement(root, "object")
            ET.SubElement(obj, "name").text = names[ann["category_id"]]
            ET.SubElement(obj, "pose").text = "Unspecified"
            ET.SubElement(obj, "truncated").text = "0"
            ET.SubElement(obj, "difficult").text = "0"
            box = ET.SubElement(obj, "bndbox")
            for key, value in zip(
                ("xmin", "ymin", "xmax", "ymax"), (x + 1, y + 1, x + w, y + h), strict=True
            ):
                ET.SubElement(box, key).text = str(round(value))
        ET.ElementTree(root).write(target / "Annotations" / f"{image_id}.xml")
    (target / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return target


@pytest.fixture(scope="module")
def voc_folder(demo_root, tmp_path_factory):
    folder = write_voc(demo_root, tmp_path_factory.mktemp("voc") / "VOC2007")
    if "voc_demo_val" not in DatasetCatalog.list():
        register_checked_voc("voc_demo_val", folder, "val")
    return folder


def test_registered_with_its_own_classes_and_year(voc_folder):
    dicts = DatasetCatalog.get("voc_demo_val")
    metadata = MetadataCatalog.get("voc_demo_val")
    assert len(dicts) == 40 and metadata.thing_classes == ["disc", "square", "triangle"]
    assert metadata.year == 2007 and metadata.evaluator_type == "pascal_voc"
    assert sum(len(d["annotations"]) for d in dicts) == 98  # the demo val split's objects


def _evaluate(keep_every: int) -> dict:
    """Ground truth boxes as detections (score 1), keeping every ``keep_every``-th of each class."""
    evaluator = VOCBothMetricsEvaluator("voc_demo_val")
    evaluator.reset()
    seen = {}
    for d in DatasetCatalog.get("voc_demo_val"):
        kept = []
        for a in d["annotations"]:
            seen[a["category_id"]] = seen.get(a["category_id"], -1) + 1
            if seen[a["category_id"]] % keep_every == 0:
                kept.append(a)
        instances = Instances((d["height"], d["width"]))
        instances.pred_boxes = Boxes(
            torch.tensor([a["bbox"] for a in kept], dtype=torch.float32).reshape(-1, 4)
        )
        instances.scores = torch.ones(len(kept))
        instances.pred_classes = torch.tensor([a["category_id"] for a in kept], dtype=torch.int64)
        evaluator.process([{"image_id": d["image_id"]}], [{"instances": instances}])
    return evaluator.evaluate()["bbox"]


def test_both_voc_metrics_on_known_answers(voc_folder):
    perfect = _evaluate(keep_every=1)
    assert perfect["AP50_voc07"] == pytest.approx(100.0) and perfect["AP50_voc12"] == pytest.approx(100.0)
    assert perfect["AP50"] == perfect["AP50_voc07"]  # a VOC2007 folder reports the 11-point metric
    # every other object of each class found, at precision 1: recall 1/2 (or a little more for an
    # odd count). VOC12's area: the recall reached; VOC07's 11 points: precision 1 at recall 0 ..
    # 0.5, i.e. 6 of 11 points
    counts = {}
    for d in DatasetCatalog.get("voc_demo_val"):
        for a in d["annotations"]:
            counts[a["category_id"]] = counts.get(a["category_id"], 0) + 1
    recall = [(-(-n // 2)) / n for n in counts.values()]
    half = _evaluate(keep_every=2)
    assert half["AP50_voc12"] == pytest.approx(100 * sum(recall) / len(recall), abs=1e-6)
    points = [sum(1 for t in [i / 10 for i in range(11)] if t <= r) / 11 for r in recall]
    assert half["AP50_voc07"] == pytest.approx(100 * sum(points) / len(points), abs=1e-6)


def test_bad_folders_are_named(voc_folder, tmp_path):
    with pytest.raises(DatasetFileError, match="not a Pascal VOC folder: Annotations/ is missing"):
        check_voc_folder(tmp_path, "val")
    with pytest.raises(DatasetFileError, match=r"test.txt does not exist; this folder has splits \['val'\]"):
        check_voc_folder(voc_folder, "test")
    copy = Path(shutil.copytree(voc_folder, tmp_path / "copy"))
    first = (copy / "ImageSets" / "Main" / "val.txt").read_text().split()[0]
    (copy / "JPEGImages" / f"{first}.jpg").unlink()
    with pytest.raises(DatasetFileError, match=f"image .*{first}.jpg does not exist"):
        check_voc_folder(copy, "val")
    shutil.copy(voc_folder / "JPEGImages" / f"{first}.jpg", copy / "JPEGImages" / f"{first}.jpg")
    xml_file = copy / "Annotations" / f"{first}.xml"
    xml_file.write_text(xml_file.read_text().replace("<difficult>0</difficult>", ""))
    with pytest.raises(AnnotationFileError, match=f"{first}.xml: object 0 needs <name>, <pose>, integer"):
        check_voc_folder(copy, "val")
    xml_file.write_text("<annotation><size><width>5</width></size>")
    with pytest.raises(AnnotationFileError, match="is not a readable VOC annotation"):
        check_voc_folder(copy, "val")


@pytest.mark.slow  # stage 1, stage 2 and the evaluation on the VOC folder, a few iterations each
def test_the_two_stage_tools_on_a_voc_folder(voc_folder, tmp_path):
    voc = ["--voc-dataset", "voc_demo_val", str(voc_folder), "val"]
    sets = ["DATASETS.TRAIN", "('voc_demo_val',)", "DATASETS.TEST", "('voc_demo_val',)"]
    short = ["SOLVER.MAX_ITER", "4", "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "0"]

    def run(*args):
        done = run_tool(*args)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done

    rpn, frcn = tmp_path / "rpn", tmp_path / "frcn"
    run("tools/train_rpn.py", "--config-file", "configs/demo/rpn_tiny_C4.yaml", *voc, *sets, *short,
        "MODEL.WEIGHTS", "", "OUTPUT_DIR", str(rpn))  # fmt: skip
    assert (rpn / "proposals_voc_demo_val" / "boxes.npy").is_file()
    stage2 = ["--config-file", "configs/demo/fast_rcnn_tiny_C4.yaml", "--proposals", str(rpn), *voc]
    run("tools/train_fast_rcnn.py", *stage2, *sets, *short, "MODEL.WEIGHTS", "", "OUTPUT_DIR", str(frcn))
    done = run("tools/eval_coco.py", *stage2, *sets, "MODEL.WEIGHTS", str(frcn / "model_final.pth"),
               "OUTPUT_DIR", str(tmp_path / "eval"))  # fmt: skip
    assert "voc_demo_val: AP " in done.stdout and "AP50_voc07" in done.stdout and "AP50_voc12" in done.stdout
    result = json.loads((tmp_path / "eval" / "coco_eval.json").read_text())["voc_demo_val"]["bbox"]
    assert 0 <= result["AP50_voc07"] <= 100 and 0 <= result["AP50_voc12"] <= 100
