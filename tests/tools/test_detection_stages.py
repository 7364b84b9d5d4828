"""Stage 1 (tools/train_rpn.py) then stage 2 (tools/train_fast_rcnn.py), as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# both detection stages through the tools, on one and two processes (DDP on gloo, COCOeval): CI
# runs these on both detectron2 builds
pytestmark = [pytest.mark.slow, pytest.mark.both_builds]

ROOT = Path(__file__).resolve().parents[2]
# Train on the 40-image val split too, 2 iterations each: this checks the plumbing, not accuracy.
# From random weights, so BN with batch statistics (the demo configs' FrozenBN expects the demo's
# pretrained weights; on random ones the 2-iteration model detects nothing to evaluate).
SMALL = [
    "DATASETS.TRAIN", "('resnext_demo_val',)", "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2",
    "MODEL.RESNEXT.NORM", "BN", "MODEL.RESNEXT.FREEZE_AT", "0",
]  # fmt: skip


def run(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DETECTRON2_DATASETS": str(tmp_path / "datasets")}
    return subprocess.run(
        [sys.executable, "-W", "ignore", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


def train_both_stages(tmp_path, *flags: str):
    """train_rpn.py, then train_fast_rcnn.py on its proposals, as a user runs them; both must succeed."""
    rpn_out, frcn_out = tmp_path / "rpn", tmp_path / "frcn"
    rpn = run(
        tmp_path,
        "tools/train_rpn.py",
        "--config-file",
        "configs/demo/rpn_tiny_C4.yaml",
        *flags,
        *SMALL,
        "OUTPUT_DIR",
        str(rpn_out),
    )
    assert rpn.returncode == 0, rpn.stderr[-3000:]
    stage2 = ["--config-file", "configs/demo/fast_rcnn_tiny_C4.yaml", "--proposals", str(rpn_out)]
    frcn = run(tmp_path, "tools/train_fast_rcnn.py", *stage2, *flags, *SMALL, "OUTPUT_DIR", str(frcn_out))
    assert frcn.returncode == 0, frcn.stderr[-3000:]
    assert (frcn_out / "model_final.pth").is_file()
    assert "copypaste: AP,AP50,AP75" in frcn.stdout + frcn.stderr
    return rpn_out, frcn_out, stage2


def test_rpn_then_fast_rcnn_on_its_proposals(tmp_path):
    rpn_out, frcn_out, stage2 = train_both_stages(tmp_path)
    recall = json.loads((rpn_out / "proposal_recall.json").read_text())
    assert set(recall["resnext_demo_val"]) == {"AR@100", "AR@1000"}
    assert (rpn_out / "proposals_resnext_demo_val.pkl").is_file()
    assert (rpn_out / "proposals_resnext_demo_val" / "boxes.npy").is_file()  # the store stage 2 reads

    # evaluation on the test set: table and strict JSON with per-category AP
    weights = ["MODEL.WEIGHTS", str(frcn_out / "model_final.pth")]
    evaluation = run(
        tmp_path,
        "tools/eval_coco.py",
        *stage2,
        *weights,
        "OUTPUT_DIR",
        str(tmp_path / "eval"),
    )
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    assert "resnext_demo_val: AP " in evaluation.stdout
    box = json.loads((tmp_path / "eval" / "coco_eval.json").read_text())["resnext_demo_val"]["bbox"]
    assert {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP-square", "AP-disc", "AP-triangle"} <= set(box)

    # plain images: the RPN (from --proposals) and the Fast R-CNN run together, pictures drawn
    images = tmp_path / "images"
    images.mkdir()
    for source in sorted((tmp_path / "datasets" / "resnext_demo" / "val").glob("*.png"))[:2]:
        (images / source.name).write_bytes(source.read_bytes())
    drawn = run(
        tmp_path,
        "tools/eval_coco.py",
        *stage2,
        "--images",
        str(images),
        "--output",
        str(tmp_path / "vis"),
        "--score-threshold",
        "0",
        *weights,
    )
    assert drawn.returncode == 0, drawn.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "vis").glob("*.png")) == sorted(
        p.name for p in images.iterdir()
    )
    detections = json.loads((tmp_path / "vis" / "detections.json").read_text())
    assert set(detections) == {p.name for p in images.iterdir()}
    for found in detections.values():
        for d in found:
            x0, y0, x1, y1 = d["box_xyxy"]
            assert 0 <= x0 <= x1 <= 160 and 0 <= y0 <= y1 <= 128 and d["class"] in (0, 1, 2)

    # stage 2 refuses proposal files that do not cover its datasets, before training
    missing = run(
        tmp_path,
        "tools/train_fast_rcnn.py",
        *stage2,
        "SOLVER.MAX_ITER",
        "2",
        "OUTPUT_DIR",
        str(tmp_path / "x"),
    )
    assert missing.returncode != 0
    assert "proposals_resnext_demo_train.pkl does not exist" in missing.stderr


def test_both_stages_on_two_cpu_processes(tmp_path):
    """--num-gpus 2 on a CPU machine: two gloo processes train, gather proposals and evaluate."""
    from resnext_det.proposals.store import ProposalStore

    rpn_out, _, _ = train_both_stages(tmp_path, "--num-gpus", "2")
    # each process saw half of the images; the written store has every one exactly once
    store = ProposalStore(rpn_out / "proposals_resnext_demo_val")
    assert sorted(store.ids().tolist()) == list(range(1, 41))
