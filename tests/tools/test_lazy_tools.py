"""The tools with LazyConfig files (configs/lazy/demo/), as a user runs them.

* A LazyConfig twin trains exactly what its YAML twin trains: stage 1, stage 2 on its proposals
  and the evaluation give identical weights, proposals, detections and AP.
* Killed mid-run, a LazyConfig run resumes exactly as a YAML run does (one test for both kinds:
  tests/tools/test_crash_resume.py).
* Two CPU processes (gloo) share the data and write one proposal store.
* Mistakes (YAML-style overrides, a missing weights file, a .py config where a YAML one is
  needed) are one paragraph, exit status 1, no traceback.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pipelines import with_output
from test_crash_resume import assert_same_store, assert_same_weights
from tool_runs import run_tool

# the LazyConfig runs go through detectron2's LazyConfig, instantiate and trainer, which differ
# between the builds: CI runs this file on both
pytestmark = [pytest.mark.slow, pytest.mark.both_builds]


def ok(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_a_lazy_twin_trains_and_evaluates_exactly_as_its_yaml_twin(tiny_pipeline):
    yaml, lazy = tiny_pipeline.yaml, tiny_pipeline.lazy
    evaluation = tiny_pipeline.results["lazy"][-1]
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


def test_a_lazy_run_on_two_cpu_processes(tiny_pipeline, tmp_path):
    """Two gloo processes, which the tool starts (it runs in this process, which stays out of
    torch.distributed)."""
    out = tmp_path / "rpn2"
    rpn = with_output(tiny_pipeline.commands["lazy"][0], out)
    two_processes = [*rpn[:3], "--num-gpus", "2", *rpn[3:], "train.max_iter=2"]
    ok(run_tool(*two_processes, env={"DETECTRON2_DATASETS": str(tmp_path / "datasets")}))
    ids = np.load(out / "proposals_resnext_demo_val" / "ids.npy", allow_pickle=False)
    assert len(ids) == 40 and len(set(ids.tolist())) == 40  # every image once, from both processes


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["MODEL.WEIGHTS", "w.pth"], "takes detectron2's LazyConfig overrides, key=value"),
        (["train.init_checkpoint=/no/w.pth"], "train.init_checkpoint /no/w.pth does not exist"),
        (["train.max_itr=3"], "has no key 'train.max_itr'"),
        (["train.memory_format=nhwc"], "train.memory_format is 'nhwc'; expected one of ['auto'"),
        pytest.param(
            ["train.device=cuda"], "add train.device=cpu",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
        ),
        (["train.amp.enabled=true"], "train.amp.enabled needs a GPU (CUDA); add train.amp.enabled=false"),
    ],
)  # fmt: skip
def test_lazy_mistakes_are_one_paragraph(args, expected, tiny_pipeline, tmp_path):
    lazy_rpn = tiny_pipeline.commands["lazy"][0][:3]
    result = run_tool(*lazy_rpn, *args, f"train.output_dir={tmp_path / 'out'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and expected in message, message
    assert not (tmp_path / "out").exists()  # found by the preflight, before anything was written


def test_stage1_refuses_a_detector(tmp_path):
    lazy_frcn = ["--config-file", "configs/lazy/demo/fast_rcnn_tiny_C4.py"]
    result = run_tool("tools/train_rpn.py", *lazy_frcn, f"train.output_dir={tmp_path / 'out'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "trains stage 1, a ProposalNetwork" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()  # found before anything was written


def test_a_yaml_only_tool_names_the_tools_that_take_a_lazy_config(tmp_path):
    lazy = ["--config-file", "configs/lazy/demo/rpn_tiny_C4.py"]
    result = run_tool("tools/pretrain_imagenet.py", *lazy, "OUTPUT_DIR", str(tmp_path / "out"))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    message = result.stderr.strip().splitlines()[-1]
    assert "is a LazyConfig (.py): the detection tools take those; pretraining" in message, message


def test_lazy_stages_run_wherever_yaml_stages_run(tiny_pipeline, tmp_path):
    """The LazyConfig block's stages (the same weights as the YAML block's) through the tools that
    run stages outside training: predict.py and eval_coco.py --images give the YAML pair's
    detections, browse_dataset.py draws the same training inputs, and train.test_aug evaluates
    as TEST.AUG does. (The exporter reads a LazyConfig stage in tests/deploy: ``onnx_dir``.)"""
    yaml, lazy, run = tiny_pipeline.yaml, tiny_pipeline.lazy, tiny_pipeline.run
    images = tmp_path / "images"
    images.mkdir()
    for source in sorted((tiny_pipeline.root / "datasets" / "resnext_demo" / "val").glob("*.png"))[:2]:
        (images / source.name).write_bytes(source.read_bytes())
    every = ["--input", str(images), "--score-threshold", "0", "--no-progress"]

    def detections(folder):
        found = json.loads((folder / "detections.json").read_text())
        return sorted(found, key=lambda d: (d["file_name"], -d["score"], d["bbox"]))

    for kind, root in (("yaml", yaml), ("lazy", lazy)):
        ok(run("tools/predict.py", "--rpn", str(root / "rpn"), "--fast-rcnn", str(root / "frcn"), *every,
               "--output", str(tmp_path / kind)))  # fmt: skip
    assert len(detections(tmp_path / "yaml")) > 0
    assert detections(tmp_path / "lazy") == detections(tmp_path / "yaml")

    lazy_frcn = tiny_pipeline.commands["lazy"][2][1:5]  # --config-file CONFIG --proposals RPN_DIR
    settings = ["model.backbone.norm=BN", "model.roi_heads.box_predictor.test_score_thresh=0.0"]
    weights = f"train.init_checkpoint={lazy / 'frcn' / 'model_final.pth'}"
    drawn = tmp_path / "drawn"
    ok(run("tools/eval_coco.py", *lazy_frcn, "--images", str(images), "--output", str(drawn),
           "--score-threshold", "0", *settings, weights))  # fmt: skip
    assert detections(drawn) == detections(tmp_path / "yaml")

    pytorch = json.loads((lazy / "eval" / "coco_eval.json").read_text())["resnext_demo_val"]["bbox"]

    browsed = {}
    for kind, config in (
        ("yaml", "configs/demo/rpn_tiny_C4.yaml"),
        ("lazy", "configs/lazy/demo/rpn_tiny_C4.py"),
    ):
        out = tmp_path / f"browse_{kind}"
        ok(run("tools/browse_dataset.py", "--config-file", config, "--what", "augmented", "--dataset-name",
               "resnext_demo_val", "--num-images", "3", "--output", str(out)))  # fmt: skip
        browsed[kind] = [
            {k: e[k] for k in ("file_name", "input_size", "input_boxes")}
            for e in json.loads((out / "browse.json").read_text())["images"]
            if "picture" in e  # the drawn ones
        ]
    assert len(browsed["yaml"]) == 3 and browsed["lazy"] == browsed["yaml"]

    yaml_frcn = tiny_pipeline.commands["yaml"][2][1:5]
    yaml_tta = ["TEST.AUG.ENABLED", "True", "TEST.AUG.MIN_SIZES", "(224,)", "TEST.AUG.MAX_SIZE", "384"]
    lazy_tta = [
        "train.test_aug.enabled=true",
        "train.test_aug.min_sizes=[224]",
        "train.test_aug.max_size=384",
    ]
    yaml_settings = ["MODEL.RESNEXT.NORM", "BN", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
                     "MODEL.WEIGHTS", str(yaml / "frcn" / "model_final.pth")]  # fmt: skip
    ok(
        run(
            "tools/eval_coco.py",
            *yaml_frcn,
            *yaml_settings,
            *yaml_tta,
            "OUTPUT_DIR",
            str(tmp_path / "tta_yaml"),
        )
    )
    ok(run("tools/eval_coco.py", *lazy_frcn, *settings, weights, *lazy_tta,
           f"train.output_dir={tmp_path / 'tta_lazy'}"))  # fmt: skip
    tta = {k: json.loads((tmp_path / f"tta_{k}" / "coco_eval.json").read_text()) for k in ("yaml", "lazy")}
    assert tta["lazy"] == tta["yaml"]
    assert tta["lazy"]["resnext_demo_val"]["bbox"] != pytorch  # the flipped view changed the detections
