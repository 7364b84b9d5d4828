"""The table of bad inputs: each gets one paragraph naming the file or key, never a traceback.

Every case runs a real tool as a user would and checks the exit status (1), that the last line
of stderr is ``error: <message>`` matching the expected text, and that no traceback was printed:
the first case of each tool in a child process (the exit status a shell sees), the others in this
process (``tool_runs.run_tool``, the same ``__main__`` without the interpreter's start-up).
docs/troubleshooting.md's table has a row for every case (checked by
``test_the_troubleshooting_page_lists_every_case``); a diverging run is covered by
test_crash_resume.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from resnext_det import resnext
from resnext_det.checkpoint import convert_checkpoint
from resnext_det.proposals.store import proposal_store_path, write_proposal_store

import numpy as np
import pytest
import torch
from PIL import Image
from tool_runs import run_tool, run_tool_process

pytestmark = pytest.mark.slow  # 23 tool runs, 3 of them in child processes

ROOT = Path(__file__).resolve().parents[2]
RPN = ["tools/train_rpn.py", "--config-file", "configs/demo/rpn_tiny_C4.yaml"]
FAST_RCNN = ["tools/train_fast_rcnn.py", "--config-file", "configs/demo/fast_rcnn_tiny_C4.yaml"]
ON_MINE = ["DATASETS.TRAIN", "('mine',)", "DATASETS.TEST", "()"]


def coco_dataset(tmp: Path, **changes) -> list[str]:
    """``--dataset mine JSON IMAGES`` for a one-image COCO dataset, with ``changes`` to the json."""
    images = tmp / "images"
    images.mkdir(exist_ok=True)
    Image.new("RGB", (64, 48), "gray").save(images / "a.png")
    content = {
        "images": [{"id": 1, "file_name": "a.png", "height": 48, "width": 64}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 20], "iscrowd": 0, "area": 400}
        ],
        "categories": [{"id": 1, "name": "square"}],
    }
    for key, value in changes.items():
        if key == "annotation":
            content["annotations"][0].update(value)
        elif value is None:
            del content[key]
        else:
            content[key] = value
    (tmp / "mine.json").write_text(json.dumps(content))
    return ["--dataset", "mine", str(tmp / "mine.json"), str(images)]


def truncated_json(tmp: Path) -> list[str]:
    flags = coco_dataset(tmp)
    (tmp / "mine.json").write_text((tmp / "mine.json").read_text()[:40])
    return flags


def missing_image(tmp: Path) -> list[str]:
    flags = coco_dataset(tmp)
    (tmp / "images" / "a.png").unlink()
    return flags


def broken_image(tmp: Path) -> list[str]:
    flags = coco_dataset(tmp)
    (tmp / "images" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # a cut-off PNG
    return flags


def weights_of_another_template(tmp: Path) -> list[str]:
    classifier = resnext(
        depth=50, cardinality=2, bottleneck_width=4, num_classes=4, stem_out_channels=16, res2_out_channels=32
    )
    torch.save({"model": classifier.state_dict()}, tmp / "classifier.pth")
    torch.save(convert_checkpoint(tmp / "classifier.pth", "pretrain"), tmp / "other_d2.pth")
    return ["MODEL.WEIGHTS", str(tmp / "other_d2.pth")]


def truncated_weights(tmp: Path) -> list[str]:
    torch.save({"model": {"w": torch.zeros(1000)}}, tmp / "full.pth")
    (tmp / "cut.pth").write_bytes((tmp / "full.pth").read_bytes()[:300])
    return ["MODEL.WEIGHTS", str(tmp / "cut.pth")]


def proposals_for(tmp: Path, ids: list[int]) -> list[str]:
    folder = tmp / "rpn"
    for name in ("resnext_demo_train", "resnext_demo_val"):
        boxes = [np.array([[0, 0, 10, 10]], np.float32)] * len(ids)
        proposals = {"ids": ids, "boxes": boxes, "objectness_logits": [np.zeros(1, np.float32)] * len(ids)}
        write_proposal_store(proposal_store_path(folder, name), proposals, dataset_name=name)
    return ["--proposals", str(folder)]


def earlier_run(tmp: Path) -> list[str]:
    (tmp / "out").mkdir()
    (tmp / "out" / "last_checkpoint").write_text("model_0000099.pth")
    (tmp / "out" / "metrics.json").write_text("{}\n")
    return []


@dataclass
class Case:
    name: str  #: the row in docs/troubleshooting.md's table
    tool: list[str]
    flags: Callable[[Path], list[str]]  #: writes the bad input into the folder; flags before KEY VALUE
    opts: list[str]
    expected: str  #: a regex the printed message must match


PRETRAIN = ["tools/pretrain_imagenet.py", "--config-file", "configs/demo/imagenet_tiny.yaml"]
NO_FLAGS: Callable[[Path], list[str]] = lambda tmp: []  # noqa: E731

CASES = [
    Case("missing dataset json", RPN, lambda t: ["--dataset", "mine", str(t / "none.json"), str(t)],
         ON_MINE, r"dataset 'mine': annotation file .*none\.json does not exist"),
    Case("dataset not registered", RPN, NO_FLAGS, ["DATASETS.TRAIN", "('nobody',)"],
         r"dataset 'nobody' is not registered; register it with --dataset nobody JSON IMAGE_ROOT"),
    Case("COCO json without images", RPN, lambda t: coco_dataset(t, images=None),
         ON_MINE, r"mine\.json: key 'images' is missing or not a list"),
    Case("COCO json truncated", RPN, truncated_json,
         ON_MINE, r"mine\.json is not valid JSON .*; is it complete"),
    Case("box of negative size", RPN, lambda t: coco_dataset(t, annotation={"bbox": [4, 4, -20, 20]}),
         ON_MINE, r"annotations\[0\] \(id 1\) has a box of negative size \[4, 4, -20, 20\]"),
    Case("unknown category id", RPN, lambda t: coco_dataset(t, annotation={"category_id": 9}),
         ON_MINE, r"annotations\[0\] \(id 1\) has category_id 9, which is not in 'categories'"),
    Case("image file missing", RPN, missing_image,
         ON_MINE, r"dataset 'mine': 1 of the 1 images of the json are not in .*images \(e\.g\. \['a\.png'"),
    Case("image file unreadable", RPN, broken_image,
         [*ON_MINE, "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "1"],
         r"cannot read image .*a\.png \(image id 1; .*\): it is missing, truncated, not an image"),
    Case("proposals for another dataset", FAST_RCNN, lambda t: proposals_for(t, [90001, 90002]), [],
         r"has no proposals for \d+ of the \d+ images of resnext_demo_\w+ .*written for another dataset"),
    Case("proposals missing", FAST_RCNN, lambda t: ["--proposals", str(t)], [],
         r"proposals_resnext_demo_train/ does not exist; run tools/train_rpn.py first"),
    Case("weights of another architecture", RPN, NO_FLAGS, ["MODEL.WEIGHTS", "@other"],
         r"other_d2\.pth does not fit the model built from the config \(different depth, cardinality"),
    Case("weights file truncated", RPN, NO_FLAGS, ["MODEL.WEIGHTS", "@cut"],
         r"cut\.pth cannot be read as a checkpoint .*is it complete"),
    Case("unknown config key", RPN, NO_FLAGS, ["MODEL.RESNEXT.CARDINALTY", "8"],
         r"command-line override: Non-existent key: MODEL\.RESNEXT\.CARDINALTY \(a typo\?"),
    Case("config value of the wrong type", RPN, NO_FLAGS, ["SOLVER.MAX_ITER", "many"],
         r"command-line override: Type mismatch .* for config key: SOLVER\.MAX_ITER"),
    Case("config file missing", [*RPN[:2], "configs/none.yaml"], NO_FLAGS, [],
         r"config file 'configs/none\.yaml' does not exist"),
    Case("more --num-gpus than present", RPN, lambda t: ["--num-gpus", "10000"], [],
         r"--num-gpus 10000: this machine has no GPU, and 10000 CPU processes are more than its \d+ cores"),
    Case("earlier run in OUTPUT_DIR", RPN, earlier_run, ["OUTPUT_DIR", "@out"],
         r"OUTPUT_DIR .*out holds an earlier run \(last_checkpoint, metrics\.json\): pass --resume"),
    Case("GPU device on a machine without one", RPN, NO_FLAGS, ["MODEL.DEVICE", "cuda"],
         r"MODEL\.DEVICE is 'cuda' but this machine has no usable GPU"),
    Case("mixed precision without a GPU", RPN, NO_FLAGS, ["SOLVER.AMP.ENABLED", "True"],
         r"SOLVER\.AMP\.ENABLED needs a GPU \(CUDA\); add `SOLVER\.AMP\.ENABLED false`"),
    Case("ImageNet folder missing", PRETRAIN, NO_FLAGS, ["DATA.ROOT", "@nowhere"],
         r"nowhere/val does not exist; expected .*nowhere/val/<class>/<image>.JPEG"),
    Case("detectron2's ResNet key set", RPN, NO_FLAGS, ["MODEL.RESNETS.NUM_GROUPS", "32"],
         r"cfg\.MODEL\.RESNETS\.NUM_GROUPS is 32, but the ResNeXt backbone and head do not read "
         r"MODEL\.RESNETS\.\*; set MODEL\.RESNEXT\.CARDINALITY instead"),
    Case("template value out of range", RPN, NO_FLAGS, ["MODEL.RESNEXT.FREEZE_AT", "9"],
         r"cfg\.MODEL\.RESNEXT\.FREEZE_AT must be 0\.\.5 .*got 9"),
    Case("batch that does not divide over processes", RPN, lambda t: ["--num-gpus", "2"],
         ["SOLVER.IMS_PER_BATCH", "3"],
         r"SOLVER\.IMS_PER_BATCH is 3, which does not divide over 2 processes"),
    Case("weights file missing", RPN, NO_FLAGS, ["MODEL.WEIGHTS", "@none.pth"],
         r"MODEL\.WEIGHTS .*none\.pth does not exist; give the path of a weights file"),
    Case("a detector's config for stage 1", [*RPN[:2], FAST_RCNN[2]], NO_FLAGS, [], r"train_rpn\.py trains "
         r"stage 1, a ProposalNetwork; .*fast_rcnn_tiny_C4\.yaml builds a GeneralizedRCNN"),
]  # fmt: skip
SPECIAL_FILES = {"@other": weights_of_another_template, "@cut": truncated_weights}
#: the first case of each tool runs in a child process: the exit status a shell sees
IN_A_CHILD_PROCESS = {next(c.name for c in CASES if c.tool[0] == tool) for tool in {c.tool[0] for c in CASES}}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    return tmp_path_factory.mktemp("datasets")  # the demo data, generated by the first case


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_one_paragraph(case: Case, tmp_path, datasets):
    if case.name.startswith(("GPU device", "mixed precision")) and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    flags = case.flags(tmp_path)
    opts = []
    for value in case.opts:
        if value in SPECIAL_FILES:
            value = SPECIAL_FILES[value](tmp_path)[1]
        elif value.startswith("@"):
            value = str(tmp_path / value[1:])
        opts.append(value)
    opts = opts if "OUTPUT_DIR" in opts else [*opts, "OUTPUT_DIR", str(tmp_path / "out")]
    run = run_tool_process if case.name in IN_A_CHILD_PROCESS else run_tool
    result = run(*case.tool, *flags, *opts, env={"DETECTRON2_DATASETS": str(datasets)})
    last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert last.startswith("error: ") and re.search(case.expected, last), last


def test_the_troubleshooting_page_lists_every_case():
    page = (ROOT / "docs" / "troubleshooting.md").read_text()
    section = page.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ")}
    missing = [case.name for case in CASES if case.name not in rows]
    assert not missing, f"docs/troubleshooting.md's table lacks rows for {missing}"
    assert "training diverged" in rows  # tested in test_crash_resume.py
