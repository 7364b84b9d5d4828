"""The tools with LazyConfig files (configs/lazy/demo/), as a user runs them.

* A LazyConfig twin trains exactly what its YAML twin trains: stage 1, stage 2 on its proposals
  and the evaluation give identical weights, proposals, detections and AP.
* Killed mid-run, a LazyConfig run refuses to restart in its folder without --resume, and with
  --resume continues from the newest complete checkpoint to the uninterrupted run's weights.
* Two CPU processes (gloo) share the data and write one proposal store.
* Mistakes (YAML-style overrides, a missing weights file, a .py config where a YAML one is
  needed) are one paragraph, exit status 1, no traceback.
"""

from __future__ import annotations

import json

from resnext_det.checkpoint.safe_checkpointer import complete_checkpoints

import numpy as np
import pytest
import torch
from test_crash_resume import assert_same_store, assert_same_weights, kill_when
from test_detection_stages import run

pytestmark = pytest.mark.slow  # real training runs through the tools

# the 40-image val split for training and testing, from random weights (BN), a checkpoint every 3
YAML_RPN = [
    "tools/train_rpn.py", "--config-file", "configs/demo/rpn_tiny_C4.yaml",
    "DATASETS.TRAIN", "('resnext_demo_val',)", "SOLVER.MAX_ITER", "12", "SOLVER.STEPS", "(8,)",
    "SOLVER.WARMUP_ITERS", "3", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.CHECKPOINT_PERIOD", "3",
    "MODEL.RESNEXT.NORM", "BN", "MODEL.RESNEXT.FREEZE_AT", "0",
]  # fmt: skip
LAZY_RPN = [
    "tools/train_rpn.py", "--config-file", "configs/lazy/demo/rpn_tiny_C4.py",
    "dataloader.train.dataset.names=[resnext_demo_val]", "train.max_iter=12",
    "lr_multiplier.scheduler.milestones=[8]", "lr_multiplier.scheduler.num_updates=12",
    "lr_multiplier.warmup_length=0.25", "dataloader.train.total_batch_size=2",
    "train.checkpointer.period=3", "model.backbone.norm=BN", "model.backbone.freeze_at=0",
]  # fmt: skip
YAML_FAST_RCNN = [
    "--config-file", "configs/demo/fast_rcnn_tiny_C4.yaml",
    "DATASETS.TRAIN", "('resnext_demo_val',)", "SOLVER.MAX_ITER", "6", "SOLVER.STEPS", "(4,)",
    "SOLVER.WARMUP_ITERS", "3", "SOLVER.IMS_PER_BATCH", "2", "MODEL.RESNEXT.NORM", "BN",
    "MODEL.RESNEXT.FREEZE_AT", "0", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
]  # fmt: skip
LAZY_FAST_RCNN = [
    "--config-file", "configs/lazy/demo/fast_rcnn_tiny_C4.py",
    "dataloader.train.dataset.names=[resnext_demo_val]", "train.max_iter=6",
    "lr_multiplier.scheduler.milestones=[4]", "lr_multiplier.scheduler.num_updates=6",
    "lr_multiplier.warmup_length=0.5", "dataloader.train.total_batch_size=2",
    "model.backbone.norm=BN", "model.backbone.freeze_at=0",
    "model.roi_heads.box_predictor.test_score_thresh=0.0",
]  # fmt: skip


def ok(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    """Stage 1, stage 2 on its proposals, and eval_coco: once from the YAML configs, once from
    their LazyConfig twins (flags before the overrides)."""
    tmp = tmp_path_factory.mktemp("lazy_vs_yaml")
    yaml, lazy = tmp / "yaml", tmp / "lazy"
    ok(run(tmp, *YAML_RPN, "OUTPUT_DIR", str(yaml / "rpn")))
    ok(run(tmp, *LAZY_RPN, f"train.output_dir={lazy / 'rpn'}"))
    for out, stage2, output in (
        (yaml, YAML_FAST_RCNN, ["OUTPUT_DIR", str(yaml / "frcn")]),
        (lazy, LAZY_FAST_RCNN, [f"train.output_dir={lazy / 'frcn'}"]),
    ):
        proposals = ["--proposals", str(out / "rpn")]
        ok(run(tmp, "tools/train_fast_rcnn.py", *stage2[:2], *proposals, *stage2[2:], *output))
    yaml_weights = ["MODEL.WEIGHTS", str(yaml / "frcn" / "model_final.pth"), "OUTPUT_DIR", str(yaml / "eval")]
    yaml_eval = [*YAML_FAST_RCNN[:2], "--proposals", str(yaml / "rpn"), *YAML_FAST_RCNN[2:], *yaml_weights]
    ok(run(tmp, "tools/eval_coco.py", *yaml_eval))
    evaluation = ok(
        run(
            tmp,
            "tools/eval_coco.py",
            *LAZY_FAST_RCNN[:2],
            "--proposals",
            str(lazy / "rpn"),
            "--analysis",
            *LAZY_FAST_RCNN[2:],
            f"train.init_checkpoint={lazy / 'frcn' / 'model_final.pth'}",
            f"train.output_dir={lazy / 'eval'}",
        )  # fmt: skip
    )
    return tmp, yaml, lazy, evaluation


def test_a_lazy_twin_trains_and_evaluates_exactly_as_its_yaml_twin(pipelines):
    _, yaml, lazy, evaluation = pipelines
    for name in ("model_0000005.pth", "model_final.pth"):
        assert_same_weights(yaml / "rpn" / name, lazy / "rpn" / name)
    assert_same_store(
        yaml / "rpn" / "proposals_resnext_demo_val", lazy / "rpn" / "proposals_resnext_demo_val"
    )
    recall = json.loads((lazy / "rpn" / "proposal_recall.json").read_text())
    assert recall == json.loads((yaml / "rpn" / "proposal_recall.json").read_text())
    assert set(recall["resnext_demo_val"]) == {"AR@100", "AR@1000"}
    assert_same_weights(yaml / "frcn" / "model_final.pth", lazy / "frcn" / "model_final.pth")
    detections = [
        json.loads(
            (d / "eval" / "inference" / "resnext_demo_val" / "coco_instances_results.json").read_text()
        )
        for d in (yaml, lazy)
    ]
    assert len(detections[0]) > 0 and detections[0] == detections[1]
    box = json.loads((lazy / "eval" / "coco_eval.json").read_text())["resnext_demo_val"]["bbox"]
    assert box == json.loads((yaml / "eval" / "coco_eval.json").read_text())["resnext_demo_val"]["bbox"]
    assert f"resnext_demo_val: AP {box['AP']:.1f}" in evaluation.stdout
    analysis = json.loads((lazy / "eval" / "analysis" / "resnext_demo_val" / "analysis.json").read_text())
    assert analysis["error_breakdown"]["all"]  # --analysis read the evaluation's files
    assert (lazy / "rpn" / "config.yaml").is_file() and "dataloader:" in (
        lazy / "rpn" / "config.yaml"
    ).read_text()


def test_a_killed_lazy_run_resumes_to_the_uninterrupted_weights(pipelines):
    tmp, _, lazy, _ = pipelines
    out = tmp / "killed"
    kill_when([*LAZY_RPN, f"train.output_dir={out}"], tmp, out / "model_0000005.pth")
    assert not (out / "model_final.pth").exists()
    newest = complete_checkpoints(out)[0]
    (out / "model_0000099.pth").write_bytes(newest.read_bytes()[:1000])  # what a kill mid-write leaves

    again = run(tmp, *LAZY_RPN, f"train.output_dir={out}")
    assert (
        again.returncode == 1 and "holds an earlier run" in again.stderr and "Traceback" not in again.stderr
    )

    resumed = ok(run(tmp, *LAZY_RPN[:3], "--resume", *LAZY_RPN[3:], f"train.output_dir={out}"))
    start = int(newest.stem.split("_")[1]) + 1
    assert f"Starting training from iteration {start}" in resumed.stderr + resumed.stdout
    for name in ("model_0000008.pth", "model_0000011.pth", "model_final.pth"):
        assert_same_weights(out / name, lazy / "rpn" / name)
    assert_same_store(out / "proposals_resnext_demo_val", lazy / "rpn" / "proposals_resnext_demo_val")
    # the optimizer's momentum is in every checkpoint: what an exact resume needs
    trainer_state = torch.load(out / "model_0000005.pth", weights_only=True)["trainer"]
    assert trainer_state["optimizer"]["state"] and trainer_state["stream_seed"] == 0


def test_a_lazy_run_on_two_cpu_processes(tmp_path):
    out = tmp_path / "rpn2"
    ok(
        run(
            tmp_path,
            *LAZY_RPN[:3],
            "--num-gpus",
            "2",
            *LAZY_RPN[3:],
            "train.max_iter=2",
            f"train.output_dir={out}",
        )
    )
    ids = np.load(out / "proposals_resnext_demo_val" / "ids.npy", allow_pickle=False)
    assert len(ids) == 40 and len(set(ids.tolist())) == 40  # every image once, from both processes


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["MODEL.WEIGHTS", "w.pth"], "takes detectron2's LazyConfig overrides, key=value"),
        (["train.init_checkpoint=/no/w.pth"], "train.init_checkpoint /no/w.pth does not exist"),
        (["train.max_itr=3"], "has no key 'train.max_itr'"),
        pytest.param(
            ["train.device=cuda"], "add train.device=cpu",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
        ),
    ],
)  # fmt: skip
def test_lazy_mistakes_are_one_paragraph(args, expected, tmp_path):
    result = run(tmp_path, *LAZY_RPN[:3], *args, f"train.output_dir={tmp_path / 'out'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and expected in message, message


def test_stage1_refuses_a_detector(tmp_path):
    result = run(tmp_path, "tools/train_rpn.py", *LAZY_FAST_RCNN[:2], f"train.output_dir={tmp_path / 'out'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "trains stage 1, a ProposalNetwork" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()  # found before anything was written


def test_a_yaml_only_tool_names_the_tools_that_take_a_lazy_config(tmp_path):
    images = ["--proposals", str(tmp_path), "--images", str(tmp_path)]
    result = run(tmp_path, "tools/eval_coco.py", *LAZY_FAST_RCNN[:2], *images)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "is a LazyConfig (.py): tools/train_rpn.py" in result.stderr.strip().splitlines()[-1]
