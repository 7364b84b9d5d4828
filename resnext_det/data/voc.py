"""Pascal VOC-layout folders as detectron2 datasets, checked first, evaluated with both VOC metrics.

A folder ``DIR`` with ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg`` and
``ImageSets/Main/<split>.txt`` registers as ``NAME`` (``--voc-dataset NAME DIR SPLIT`` in every
tool that takes ``--dataset``). Its classes are VOC's twenty when every object is one of them,
else the sorted names its annotations use. Before detectron2's own loader
(``load_voc_instances``) reads it, every file it will open is checked, and an error names the
file and what was expected (detectron2 would fail on the first bad file with a bare
``IndexError`` or ``ValueError``).

Evaluation is detectron2's ``PascalVOCDetectionEvaluator``, run for both of VOC's metrics: the
VOC2007 11-point interpolated AP and the VOC2012 area under the PR curve. ``AP``, ``AP50`` and
``AP75`` follow the folder's year (11-point for VOC2007, as detectron2 does; area otherwise);
``AP50_voc07`` and ``AP50_voc12`` give both.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.pascal_voc import CLASS_NAMES, load_voc_instances
from detectron2.evaluation import PascalVOCDetectionEvaluator

from ..errors import AnnotationFileError, DatasetFileError

__all__ = ["VOC_CLASSES", "VOCBothMetricsEvaluator", "check_voc_folder", "register_checked_voc"]

VOC_CLASSES = tuple(CLASS_NAMES)


def _voc_ids(dirname: Path, split: str) -> list[str]:
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        if not (dirname / sub).is_dir():
            raise DatasetFileError(
                f"{dirname} is not a Pascal VOC folder: {sub}/ is missing (expected Annotations/, "
                "JPEGImages/, ImageSets/Main/)"
            )
    split_file = dirname / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        found = sorted(p.stem for p in (dirname / "ImageSets" / "Main").glob("*.txt"))
        raise DatasetFileError(f"split file {split_file} does not exist; this folder has splits {found}")
    ids = split_file.read_text().split()
    if not ids:
        raise DatasetFileError(f"{split_file} lists no images")
    return ids


def _objects(xml_file: Path) -> list[str]:
    """The object names of one annotation file, after checking what detectron2 reads from it."""
    try:
        tree = ET.parse(xml_file)
    except (OSError, ET.ParseError) as e:
        raise AnnotationFileError(f"{xml_file} is not a readable VOC annotation ({e})") from None
    for key in ("./size/height", "./size/width"):
        node = tree.find(key)
        if node is None or not (node.text or "").strip().isdigit():
            raise AnnotationFileError(f"{xml_file}: {key} must hold the image's size in pixels")
    names = []
    for k, obj in enumerate(tree.findall("object")):
        name = obj.findtext("name")
        box = obj.find("bndbox")
        values = [box.findtext(c) if box is not None else None for c in ("xmin", "ymin", "xmax", "ymax")]
        flags = [obj.findtext(c) for c in ("truncated", "difficult")]
        if not name or any(v is None or not re.fullmatch(r"\s*\d+\s*", v) for v in values + flags):
            raise AnnotationFileError(
                f"{xml_file}: object {k} needs <name>, <pose>, integer <truncated> and <difficult>, and a "
                "<bndbox> of integer pixels xmin, ymin, xmax, ymax (what VOC's evaluation reads)"
            )
        if obj.find("pose") is None:
            raise AnnotationFileError(
                f"{xml_file}: object {k} ({name}) has no <pose> (VOC's evaluation reads it)"
            )
        xmin, ymin, xmax, ymax = (int(v) for v in values)
        if xmax < xmin or ymax < ymin:
            raise AnnotationFileError(f"{xml_file}: object {k} ({name}) has xmax < xmin or ymax < ymin")
        names.append(name.strip())
    return names


def check_voc_folder(dirname: str | os.PathLike, split: str) -> tuple[str, ...]:
    """Check the split's annotation and image files; return the dataset's class names."""
    dirname = Path(dirname)
    names = set()
    for image_id in _voc_ids(dirname, split):
        xml_file = dirname / "Annotations" / f"{image_id}.xml"
        if not xml_file.is_file():
            raise DatasetFileError(f"{xml_file} does not exist (listed in ImageSets/Main/{split}.txt)")
        if not (dirname / "JPEGImages" / f"{image_id}.jpg").is_file():
            raise DatasetFileError(f"image {dirname / 'JPEGImages' / image_id}.jpg does not exist")
        names.update(_objects(xml_file))
    return VOC_CLASSES if names <= set(VOC_CLASSES) else tuple(sorted(names))


def _year(dirname: Path) -> int:
    """2007 for a folder named like VOC2007 (its 11-point metric is then the primary one)."""
    match = re.search(r"VOC(20\d\d)", dirname.resolve().name)
    return 2007 if match and match[1] == "2007" else 2012


def register_checked_voc(name: str, dirname: str | os.PathLike, split: str) -> None:
    """Register the checked folder as ``name`` (the check runs now: a bad folder fails at start)."""
    dirname = Path(dirname)
    classes = check_voc_folder(dirname, split)
    DatasetCatalog.register(name, lambda: load_voc_instances(str(dirname), split, list(classes)))
    MetadataCatalog.get(name).set(
        thing_classes=list(classes),
        dirname=str(dirname),
        year=_year(dirname),
        split=split,
        evaluator_type="pascal_voc",
    )


class VOCBothMetricsEvaluator(PascalVOCDetectionEvaluator):
    """detectron2's VOC evaluator, run once with each metric; the folder's year picks ``AP*``."""

    def evaluate(self):
        primary_is_2007 = self._is_2007
        results = {}
        for metric, is_2007 in (("voc07", True), ("voc12", False)):
            self._is_2007 = is_2007
            result = super().evaluate()  # collective: every process calls it, the main one answers
            if result is None:
                return None
            results[metric] = result["bbox"]
        self._is_2007 = primary_is_2007
        bbox = dict(results["voc07" if primary_is_2007 else "voc12"])
        for metric, values in results.items():
            bbox[f"AP50_{metric}"] = values["AP50"]
            bbox[f"AP_{metric}"] = values["AP"]
        return {"bbox": bbox}
