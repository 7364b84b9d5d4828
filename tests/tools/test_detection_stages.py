"""Stage 1 (tools/train_rpn.py) then stage 2 (tools/train_fast_rcnn.py), as a user runs them."""

from __future__ import annotations

import json

import pytest
from tool_runs import run_tool

# both detection stages through the tools, on one and two processes (DDP on gloo, COCOeval): CI
# runs these on both detectron2 builds
pytestmark = [pytest.mark.slow, pytest.mark.both_builds]

# Train on the 40-image val split too, 2 iterations each: this checks the plumbing, not accuracy.
# From random weights, so BN with batch statistics (the demo configs' FrozenBN expects the demo's
# pretrained weights; on random ones the 2-iteration model detects nothing to evaluate).
SMALL = [
    "DATASETS.TRAIN", "('resnext_demo_val',)", "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2",
    "MODEL.RESNEXT.NORM", "BN", "MODEL.RESNEXT.FREEZE_AT", "0",
]  # fmt: skip


def test_rpn_then_fast_rcnn_on_its_proposals(tiny_pipeline, tmp_path):
    """docs/detection.md's block (the shared tiny pipeline): stage 1's files, stage 2's final
    evaluation, eval_coco.py's table and JSON; then eval_coco.py --images and a stage 2 whose
    proposal files are missing."""
    rpn_out, frcn_out = tiny_pipeline.yaml / "rpn", tiny_pipeline.yaml / "frcn"
    _, frcn, evaluation, _ = tiny_pipeline.results["yaml"]
    stage2 = tiny_pipeline.commands["yaml"][2][1:5]  # --config-file CONFIG --proposals RPN_DIR
    recall = json.loads((rpn_out / "proposal_recall.json").read_text())
    assert set(recall["resnext_demo_val"]) == {"AR@100", "AR@1000"}
    assert (rpn_out / "proposals_resnext_demo_val" / "boxes.npy").is_file()  # the store stage 2 reads
    assert not (rpn_out / "proposals_resnext_demo_val.pkl").exists()  # one format at the hand-off
    assert (frcn_out / "model_final.pth").is_file()
    assert "copypaste: AP,AP50,AP75" in frcn.stdout + frcn.stderr

    # evaluation on the test set: table and strict JSON with per-category AP
    assert "resnext_demo_val: AP " in evaluation.stdout
    box = json.loads((tiny_pipeline.yaml / "eval" / "coco_eval.json").read_text())["resnext_demo_val"]["bbox"]
    assert {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP-square", "AP-disc", "AP-triangle"} <= set(box)
    weights = ["MODEL.RESNEXT.NORM", "BN", "MODEL.WEIGHTS", str(frcn_out / "model_final.pth")]
    run = tiny_pipeline.run

    # plain images: the RPN (from --proposals) and the Fast R-CNN run together, pictures drawn
    images = tmp_path / "images"
    images.mkdir()
    for source in sorted((tiny_pipeline.root / "datasets" / "resnext_demo" / "val").glob("*.png"))[:2]:
        (images / source.name).write_bytes(source.read_bytes())
    drawn = run(
        "tools/eval_coco.py",
        *stage2,
        "--images",
        str(images),
        "--output",
        str(tmp_path / "vis"),
        "--score-threshold",
        "0",
        *weights,
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
        "0.0",  # every image then has detections, however little the tiny run learnt
    )
    assert drawn.returncode == 0, drawn.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "vis").glob("*.png")) == sorted(
        p.name for p in images.iterdir()
    )
    # COCO's results format, as tools/predict.py writes it: the dataset's category ids, x y w h
    detections = json.loads((tmp_path / "vis" / "detections.json").read_text())
    assert {d["file_name"] for d in detections} == {p.name for p in images.iterdir()}
    val_json = tiny_pipeline.root / "datasets" / "resnext_demo" / "annotations" / "val.json"
    ids = {c["id"] for c in json.loads(val_json.read_text())["categories"]}
    for d in detections:
        x, y, w, h = d["bbox"]
        assert 0 <= x <= x + w <= 160 and 0 <= y <= y + h <= 128
        assert d["category_id"] in ids and 0 <= d["score"] <= 1

    # stage 2 refuses proposal files that do not cover its datasets, before training
    missing = run(
        "tools/train_fast_rcnn.py",
        *stage2,
        "SOLVER.MAX_ITER",
        "2",
        "OUTPUT_DIR",
        str(tmp_path / "x"),
    )
    assert missing.returncode != 0
    assert "proposals_resnext_demo_train/ does not exist" in missing.stderr


def test_both_stages_on_two_cpu_processes(tmp_path):
    """--num-gpus 2 on a CPU machine: two gloo processes (which the tool starts; it runs in this
    process, which stays out of torch.distributed) train, gather proposals and evaluate."""
    from resnext_det.proposals.store import ProposalStore

    env = {"DETECTRON2_DATASETS": str(tmp_path / "datasets")}
    rpn_out, frcn_out = tmp_path / "rpn", tmp_path / "frcn"
    two = ["--num-gpus", "2", *SMALL]
    rpn = run_tool("tools/train_rpn.py", "--config-file", "configs/demo/rpn_tiny_C4.yaml", *two,
                   "OUTPUT_DIR", str(rpn_out), env=env)  # fmt: skip
    assert rpn.returncode == 0, rpn.stderr[-3000:]
    stage2 = ["--config-file", "configs/demo/fast_rcnn_tiny_C4.yaml", "--proposals", str(rpn_out)]
    frcn = run_tool("tools/train_fast_rcnn.py", *stage2, *two, "OUTPUT_DIR", str(frcn_out), env=env)
    assert frcn.returncode == 0, frcn.stderr[-3000:]
    assert (frcn_out / "model_final.pth").is_file()
    assert "copypaste: AP,AP50,AP75" in frcn.stdout + frcn.stderr
    # each process saw half of the images; the written store has every one exactly once
    store = ProposalStore(rpn_out / "proposals_resnext_demo_val")
    assert sorted(store.ids().tolist()) == list(range(1, 41))
