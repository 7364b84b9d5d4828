"""The two config families of the paper's C4 detectors, and where they differ.

* **modern** (``configs/COCO-Detection/{rpn,fast_rcnn}_<model>_C4.yaml``): appendix B's schedule on
  detectron2's defaults (800 / 1333 input, RoIAlignV2, 1000 test proposals, test NMS 0.5 ...).
* **paper** (``configs/COCO-Detection/paper/``): the same schedule with every detail that appendix B
  leaves to py-faster-rcnn taken from py-faster-rcnn's source. The paper family's base files say,
  in a comment block above each key they change, where the value comes from (``source:``), what
  detectron2 does differently where it cannot say it exactly (``differs:``) and what the choice is
  expected to do to AP (``effect:``).

``family_differences`` compares the two families' merged configs key by key and attaches those
notes: docs/paper_fidelity.md's table is generated from it, and a key that differs without a
``source:`` note is an error, so the table cannot miss one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..configs_path import get_config_file
from ..errors import ConfigError
from .defaults import setup_cfg

__all__ = [
    "FAMILIES",
    "MODELS",
    "PAPER_TABLE8",
    "STAGES",
    "Difference",
    "family_differences",
    "key_notes",
    "paper_overrides",
    "stage_config",
]

FAMILIES = ("paper", "modern")
STAGES = ("rpn", "fast_rcnn")
#: the models with configs in both families: (depth, cardinality, bottleneck width)
MODELS = {
    "R50": (50, 1, 64),
    "X50_32x4d": (50, 32, 4),
    "R101": (101, 1, 64),
    "X101_32x4d": (101, 32, 4),
    "X101_64x4d": (101, 64, 4),
}
#: Table 8 of the paper: COCO minival, C4 Faster R-CNN trained on trainval35k (X101_64x4d: no
#: row), with the classifiers' params (M) and GFLOPs of Tables 3 and 4
PAPER_TABLE8 = {
    "R50": {"AP50": 47.6, "AP": 26.5, "params_M": 25.5, "GFLOPs": 4.1},
    "X50_32x4d": {"AP50": 49.7, "AP": 27.5, "params_M": 25.0, "GFLOPs": 4.2},
    "R101": {"AP50": 51.1, "AP": 29.8, "params_M": 44.5, "GFLOPs": 7.8},
    "X101_32x4d": {"AP50": 51.9, "AP": 30.0, "params_M": 44.2, "GFLOPs": 8.0},
}
_NOTE_FIELDS = ("source", "differs", "effect")
#: the paper family's settings that belong to COCO-sized images (and its seed): not carried over
#: to other data by ``paper_overrides``
SIZE_DEPENDENT = ("INPUT.", "MODEL.ANCHOR_GENERATOR.", "SEED")


def stage_config(family: str, stage: str, model: str) -> str:
    """The shipped YAML config of one stage of one model in one family."""
    if family not in FAMILIES:
        raise ConfigError(f"unknown config family {family!r}; expected one of {', '.join(FAMILIES)}")
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
    folder = "COCO-Detection/paper" if family == "paper" else "COCO-Detection"
    return get_config_file(f"{folder}/{stage}_{model}_C4.yaml")


_KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Z][A-Z0-9_]*):(?P<value>.*)$")


def key_notes(yaml_path: str | Path) -> dict[str, dict[str, str]]:
    """{full key: {"source", "differs", "effect"}} from the ``# field: text`` comment blocks of a
    YAML config. A block belongs to the keys with values that follow it, until a blank line, a
    new block or a mapping key (``RPN:``); so the four ``INPUT`` sizes under one block share it."""
    notes, path, block, in_comment = {}, [], None, False
    for line in Path(yaml_path).read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if not in_comment:
                block, in_comment = {}, True
            field, _, rest = stripped.lstrip("#").strip().partition(":")
            if field in _NOTE_FIELDS:
                block[field] = rest.strip()
            continue
        in_comment = False
        match = _KEY_LINE.match(line)
        if match is None:
            block = None
            continue
        depth = len(match["indent"]) // 2
        path = [*path[:depth], match["key"]]
        if not match["value"].strip():  # a mapping: its children have their own notes
            block = None
            continue
        if block:
            notes[".".join(path)] = dict(block)
    return notes


@dataclass(frozen=True)
class Difference:
    """One setting where the paper family differs from the modern one."""

    keys: tuple[str, ...]
    stages: tuple[str, ...]
    modern: tuple[str, ...]
    paper: tuple[str, ...]
    source: str
    differs: str
    effect: str


def _flat(cfg, prefix: str = "") -> dict[str, object]:
    items = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if hasattr(value, "items"):
            items.update(_flat(value, name + "."))
        else:
            items[name] = value
    return items


def family_differences(model: str = "X50_32x4d") -> list[Difference]:
    """Every key whose value differs between the two families' configs of ``model``, stage by
    stage, grouped by the note that explains them (a note's keys form one row), in the order the
    paper family's files set them. Raises ``ConfigError`` naming the key and file when a
    difference has no ``source:`` note."""
    rows: dict[tuple, dict] = {}
    for stage in STAGES:
        paper_file = stage_config("paper", stage, model)
        modern = _flat(setup_cfg(stage_config("modern", stage, model)))
        paper = _flat(setup_cfg(paper_file))
        notes = {}
        for base in reversed(_bases(paper_file)):  # the nearest file's note wins
            notes.update(key_notes(base))
        for key in paper:
            if paper[key] == modern.get(key):
                continue
            note = notes.get(key)
            if not note or not note.get("source"):
                raise ConfigError(
                    f"{key} differs between the paper family ({paper[key]!r}) and the modern one "
                    f"({modern.get(key)!r}) for {model} {stage}, but no '# source:' comment above it "
                    f"in {', '.join(map(str, _bases(paper_file)))} says where the paper's value "
                    "comes from"
                )
            row = rows.setdefault(
                (note["source"], note.get("effect", "")), {"note": note, "keys": {}, "stages": []}
            )
            row["keys"].setdefault(key, (modern.get(key), paper[key]))
            if stage not in row["stages"]:
                row["stages"].append(stage)
    stage_order = {(*STAGES,): 0, **{(s,): i + 1 for i, s in enumerate(STAGES)}}
    differences = [
        Difference(
            keys=tuple(row["keys"]),
            stages=tuple(row["stages"]),
            modern=tuple(_show(m) for m, _ in row["keys"].values()),
            paper=tuple(_show(p) for _, p in row["keys"].values()),
            source=row["note"]["source"],
            differs=row["note"].get("differs", ""),
            effect=row["note"].get("effect", ""),
        )
        for row in rows.values()
    ]
    return sorted(differences, key=lambda d: stage_order[d.stages])  # both stages first, then each


def _bases(config_file: str) -> list[Path]:
    """The config and the files it inherits from through ``_BASE_``, nearest first."""
    chain, path = [], Path(config_file)
    while True:
        chain.append(path)
        base = re.search(r'^_BASE_:\s*"?([^"\n]+)"?', path.read_text(), re.M)
        if base is None:
            return chain
        path = (path.parent / base[1].strip()).resolve()


def _show(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def paper_overrides(stage: str, model: str = "X50_32x4d") -> list[str]:
    """The paper family's settings of ``stage`` as ``KEY VALUE`` overrides for another config of
    that stage (the demo's, whose images are 256 px), without those of ``SIZE_DEPENDENT``: what
    ``tools/reproduce_table8.py --model demo --family paper`` trains with."""
    paper = setup_cfg(stage_config("paper", stage, model))
    keys = [k for d in family_differences(model) if stage in d.stages for k in d.keys]
    flat = _flat(paper)
    return [
        word
        for key in keys
        if not key.startswith(SIZE_DEPENDENT)
        for word in (key, str(list(flat[key]) if isinstance(flat[key], tuple) else flat[key]))
    ]
