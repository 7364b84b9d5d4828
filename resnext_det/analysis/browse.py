"""Look at a dataset the way the model sees it (``tools/browse_dataset.py``): its ground truth,
the training mapper's augmented inputs, or stage 1's proposals and which objects they miss.

Proposal recall per image follows detectron2's proposal evaluation (the ``box_proposals/AR@``
numbers that stage 1 logs): each object is assigned one proposal, greedily, the best-overlapping
(object, proposal) pair first, and counts as found at IoU t when its proposal overlaps it by at
least t. Crowd regions are not objects. Pooled over the dataset's images, the recall equals
detectron2's (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import convert_image_to_rgb, read_image
from detectron2.structures import Boxes, BoxMode, pairwise_iou
from PIL import Image

from ..atomic_files import atomic_write_json
from ..seeding import seeded_rngs
from .pictures import contact_sheet, dataset_metadata, visualizer

__all__ = [
    "PROPOSAL_LEGEND",
    "RECALL_IOUS",
    "VIEWS",
    "BrowseResult",
    "browse_dataset",
    "matched_ious",
    "matched_proposals",
    "proposal_recall",
]

#: the IoUs at which each image's proposal recall is reported
RECALL_IOUS = (0.5, 0.7)
VIEWS = ("gt", "augmented", "proposals")
#: object outline by the IoU of its proposal (Okabe-Ito, colour-blind safe; missed is also
#: dashed): found at 0.7, found only at 0.5, missed
_FOUND, _LOOSE, _MISSED = "#56B4E9", "#F0E442", "#D55E00"
PROPOSAL_LEGEND = (
    (_FOUND, f"object found: its proposal (dotted) has IoU >= {RECALL_IOUS[1]}"),
    (_LOOSE, f"found only at IoU >= {RECALL_IOUS[0]}"),
    (_MISSED, f"missed: IoU < {RECALL_IOUS[0]} (dashed)"),
)


def matched_proposals(objects: np.ndarray, proposals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each object's IoU with the proposal assigned to it (0 if none is left) and that proposal's
    index (-1 if none): repeatedly the (object, proposal) pair of highest IoU is assigned and both
    leave the pool."""
    result, assigned = np.zeros(len(objects)), np.full(len(objects), -1)
    if len(objects) == 0 or len(proposals) == 0:
        return result, assigned
    overlaps = pairwise_iou(Boxes(torch.as_tensor(proposals, dtype=torch.float32)),
                            Boxes(torch.as_tensor(objects, dtype=torch.float32)))  # fmt: skip
    for _ in range(min(len(objects), len(proposals))):
        best_per_object, proposal_of = overlaps.max(dim=0)
        iou, obj = best_per_object.max(dim=0)
        if iou < 0:  # every object assigned
            break
        result[int(obj)], assigned[int(obj)] = float(iou), int(proposal_of[obj])
        overlaps[proposal_of[obj], :] = -1
        overlaps[:, obj] = -1
    return result, assigned


def matched_ious(objects: np.ndarray, proposals: np.ndarray) -> np.ndarray:
    """Each object's IoU with the proposal assigned to it (``matched_proposals``)."""
    return matched_proposals(objects, proposals)[0]


def proposal_recall(objects: np.ndarray, proposals: np.ndarray, ious=RECALL_IOUS) -> dict:
    """``{"objects": n, "iou": [each object's], "recall@0.5": ..., "recall@0.7": ...}``; recalls
    are None for an image without objects."""
    matched = matched_ious(objects, proposals)
    recall = {f"recall@{t:g}": (float((matched >= t).mean()) if len(matched) else None) for t in ious}
    return {"objects": len(matched), "iou": matched.round(4).tolist(), **recall}


def _objects(record: dict) -> tuple[np.ndarray, list[int]]:
    """The record's non-crowd boxes as XYXY_ABS and their class indices."""
    annotations = [a for a in record.get("annotations", []) if not a.get("iscrowd", 0)]
    boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations]
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4), [a["category_id"] for a in annotations]


def _class_name(metadata, index: int) -> str:
    names = getattr(metadata, "thing_classes", None)
    return names[index] if names and 0 <= index < len(names) else str(index)


def draw_ground_truth(record: dict, metadata) -> np.ndarray:
    image = read_image(record["file_name"], format="RGB")
    return visualizer(image, metadata).draw_dataset_dict(record).get_image()


def draw_augmented(mapped: dict, metadata, input_format: str) -> np.ndarray:
    """The mapper's output: the augmented image and the boxes that came with it."""
    image = convert_image_to_rgb(mapped["image"].permute(1, 2, 0), input_format)
    instances = mapped.get("instances")
    drawer = visualizer(np.ascontiguousarray(image), metadata)
    if instances is None or len(instances) == 0:
        return drawer.output.get_image()
    labels = [_class_name(metadata, int(c)) for c in instances.gt_classes]
    return drawer.overlay_instances(boxes=instances.gt_boxes.tensor.numpy(), labels=labels).get_image()


def draw_proposals(
    record: dict, objects, proposals: np.ndarray, recall: dict, metadata, top_k: int
) -> np.ndarray:
    """Each of the record's ``objects`` (``_objects``) outlined by how well the proposal assigned
    to it fits (``PROPOSAL_LEGEND``: found at IoU 0.7, at 0.5 only, missed), labelled with its
    class and that IoU, and that one proposal dotted in the same colour: a hundred proposals per
    image drawn at once bury the objects they are measured against."""
    from matplotlib import patheffects
    from matplotlib.patches import Rectangle

    image = read_image(record["file_name"], format="RGB")
    drawer = visualizer(image, metadata)
    scale = drawer.output.scale
    font_size = 1.25 * drawer._default_font_size

    def rectangle(box, colour, width, style, edged):
        x0, y0, x1, y1 = box
        # a thin black edge keeps the colour visible on any background
        edge = (
            [patheffects.withStroke(linewidth=(width + 1.2) * scale, foreground="black")] if edged else None
        )
        drawer.output.ax.add_patch(
            Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=width * scale,
                      linestyle=style, path_effects=edge)
        )  # fmt: skip

    boxes, classes = objects
    _, assigned = matched_proposals(boxes, proposals)
    for box, cls, iou, k in zip(boxes, classes, recall["iou"], assigned, strict=True):
        colour = _FOUND if iou >= RECALL_IOUS[1] else _LOOSE if iou >= RECALL_IOUS[0] else _MISSED
        if k >= 0:
            rectangle(proposals[k], colour, 0.9, (0, (2, 2)), edged=False)
        rectangle(box, colour, 1.6, "-" if colour != _MISSED else "--", edged=True)
        drawer.draw_text(f"{_class_name(metadata, cls)}: IoU {iou:.2f}", (box[0], box[3]), color=colour,
                         horizontal_alignment="left", font_size=font_size)  # fmt: skip
    summary = ", ".join(
        f"{recall[f'recall@{t:g}']:.2f} at IoU {t:g}"
        for t in RECALL_IOUS
        if recall[f"recall@{t:g}"] is not None
    )
    drawer.draw_text(
        f"recall of the top {top_k}: {summary or 'no objects'}",
        (4, 4),
        color="white",
        horizontal_alignment="left",
        font_size=font_size,
    )
    return drawer.output.get_image()


@dataclass
class BrowseResult:
    """What ``browse_dataset`` drew and measured (also written to ``browse.json``)."""

    pictures: list[Path]
    contact_sheet: Path | None
    images: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


def _pooled_recall(records: list[dict]) -> dict:
    ious = np.concatenate([np.asarray(r["iou"], dtype=float) for r in records]) if records else np.zeros(0)
    recall = {f"recall@{t:g}": (float((ious >= t).mean()) if len(ious) else None) for t in RECALL_IOUS}
    return {"objects": len(ious), **recall}


def browse_dataset(
    dataset_name: str,
    what: str,
    output: str | Path,
    num_images: int = 12,
    proposals=None,
    top_k: int = 100,
    worst_first: bool = False,
    *,
    training_mapper=None,
    seed: int = 0,
    input_format: str = "BGR",
) -> BrowseResult:
    """Draw ``num_images`` images of ``dataset_name`` (``what``: one of ``VIEWS``) into
    ``output/<file stem>.png``, a contact sheet of them and ``browse.json``.

    For "proposals", ``proposals`` is ``image_id -> (boxes, logits)`` best first
    (``resnext_det.proposals.stage1_proposals``); every image's recall of its top ``top_k`` is
    measured, the pooled recall goes to the summary, and ``worst_first`` draws the images of
    lowest recall (at 0.7, then 0.5) instead of the first ones.

    For "augmented", ``training_mapper`` is the config's training mapper (a YAML or a LazyConfig
    run's, ``engine.run_config``), run under ``seed`` so that every call draws the same
    augmentations; ``input_format`` is the colour order of the images it gives."""
    if what not in VIEWS:
        raise ValueError(f"what must be one of {VIEWS}, got {what!r}")
    if what == "augmented" and training_mapper is None:
        raise ValueError('what="augmented" draws what training_mapper gives the model: pass it')
    records = DatasetCatalog.get(dataset_name)
    metadata = dataset_metadata(dataset_name)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    objects = [_objects(r) for r in records]  # (boxes, classes) of each record, once
    entries = [
        {"file_name": r["file_name"], "image_id": r["image_id"], "objects": len(classes)}
        for r, (_, classes) in zip(records, objects, strict=True)
    ]
    summary: dict = {"dataset": dataset_name, "what": what, "images": len(records)}
    order = list(range(len(records)))
    if what == "proposals":
        top = [proposals(record["image_id"])[0][:top_k] for record in records]
        for entry, (boxes, _), kept in zip(entries, objects, top, strict=True):
            entry.update(proposals=len(kept), **proposal_recall(boxes, kept))
        summary.update(top_k=top_k, **_pooled_recall(entries))
        if worst_first:

            def badness(k):
                e = entries[k]
                return tuple(
                    1.0 if e[f"recall@{t:g}"] is None else e[f"recall@{t:g}"] for t in reversed(RECALL_IOUS)
                )

            order.sort(key=badness)
    pictures = []
    with seeded_rngs(max(seed, 0)):  # the same augmentations on every call
        for k in order[:num_images]:
            record, entry = records[k], entries[k]
            if what == "gt":
                drawn = draw_ground_truth(record, metadata)
            elif what == "augmented":
                mapped = training_mapper(dict(record))
                entry["input_size"] = list(mapped["image"].shape[1:])
                if "instances" in mapped:
                    entry["input_boxes"] = mapped["instances"].gt_boxes.tensor.round(decimals=2).tolist()
                drawn = draw_augmented(mapped, metadata, input_format)
            else:
                drawn = draw_proposals(record, objects[k], top[k], entry, metadata, top_k)
            target = output / f"{Path(record['file_name']).stem}.png"
            Image.fromarray(drawn).save(target)
            entry["picture"] = str(target)
            pictures.append(target)
    legend = PROPOSAL_LEGEND if what == "proposals" else None
    sheet = contact_sheet(pictures, output / "contact_sheet.png", legend=legend) if pictures else None
    atomic_write_json(output / "browse.json", {"summary": summary, "images": entries}, indent=1)
    return BrowseResult(pictures, sheet, entries, summary)
