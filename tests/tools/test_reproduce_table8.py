"""docs/paper_fidelity.md's commands on the demo data: a Torch7 ``.t7`` model converted with
``convert_weights.py --source fb-torch7``, then tools/reproduce_table8.py: the paper family's
stage 1, stage 2 and evaluation through the orchestrator tools/demo.py shares
(resnext_det.engine.pipeline), the row in its table, a finished run kept, an interrupted stage 2
resumed, and the folders it refuses.

The ``.t7`` holds a random classifier of the demo's template in models/resnext.lua's layout
(tests/torch7_files.py), so the numbers only need to be what the evaluation wrote; a few
iterations on the 40 val images."""

from __future__ import annotations

import json

from resnext_det.engine.families import paper_overrides
from resnext_det.modeling import resnext

import pytest
import tool_runs
from detectron2.config import CfgNode
from torch7_files import resnext_lua_network, torchvision_names, write_t7

#: a few iterations on the 40 val images (stage 2: checkpoints at iterations 2 and 4 of 6)
SHORT = [
    "DATASETS.TRAIN", "('resnext_demo_val',)", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "6",
    "SOLVER.STEPS", "(4,)", "SOLVER.CHECKPOINT_PERIOD", "2", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
]  # fmt: skip


@pytest.fixture(scope="module")
def reproduction(tmp_path_factory):
    pytest.importorskip("torchfile")  # in the test extra
    folder = tmp_path_factory.mktemp("table8")
    classifier = resnext(50, 4, 4, num_classes=4, stem_out_channels=16, res2_out_channels=32)  # the demo's
    t7 = write_t7(folder / "demo.t7", resnext_lua_network(torchvision_names(classifier.state_dict()), 4))
    weights = folder / "demo_fb.pth"
    converted = tool_runs.run_tool(
        "tools/convert_weights.py", "--source", "fb-torch7", str(t7), str(weights),
        "--config-file", "configs/demo/fast_rcnn_tiny_C4.yaml",
    )  # fmt: skip
    assert converted.returncode == 0, converted.stderr[-2000:]
    out, table = folder / "demo", folder / "table8.json"
    command = ["tools/reproduce_table8.py", "--model", "demo", "--family", "paper", "--weights", str(weights),
               "--output", str(out), "--table", str(table), *SHORT]  # fmt: skip
    first = tool_runs.run_tool(*command)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return out, table, command, first


def test_the_row_is_what_the_stages_measured(reproduction):
    out, table, _, first = reproduction
    row = json.loads((out / "table8_row.json").read_text())
    box = json.loads((out / "eval" / "coco_eval.json").read_text())["resnext_demo_val"]["bbox"]
    recall = json.loads((out / "rpn" / "proposal_recall.json").read_text())["resnext_demo_val"]
    assert (row["model"], row["family"], row["test_set"]) == ("demo", "paper", "resnext_demo_val")
    assert (row["AP"], row["AP50"], row["AP75"]) == tuple(round(box[k], 2) for k in ("AP", "AP50", "AP75"))
    assert row["rpn_AR@1000"] == recall["AR@1000"] and row["rpn_AR@100"] == recall["AR@100"]
    for stage in ("rpn", "fast_rcnn"):
        speed = row["training"][stage]
        assert speed["iterations"] == 6 and speed["s_per_iter"] > 0
        assert speed["device_hours"] == pytest.approx(speed["s_per_iter"] * 6 / 3600, abs=1e-3)
    assert row["paper"] is None  # the demo is no Table 8 row
    assert json.loads(table.read_text())["rows"] == {"demo/paper": row}
    assert (
        "stage 1: RPN, then proposals" in first.stdout
        and f"| {row['AP50']:.1f} | {row['AP']:.1f} |" in first.stdout
    )


def test_the_paper_familys_settings_reached_both_stages(reproduction):
    """--model demo --family paper: the demo's configs with the paper family's size-free settings."""
    out, *_ = reproduction
    for stage in ("rpn", "fast_rcnn"):
        dumped = CfgNode.load_yaml_with_base(str(out / stage / "config.yaml"))
        overrides = paper_overrides(stage)
        assert overrides, stage
        for key, value in zip(overrides[::2], overrides[1::2], strict=True):
            node = dumped
            for part in key.split("."):
                node = node[part]
            assert str(list(node) if isinstance(node, (list, tuple)) else node) == value, key
    assert dumped["MODEL"]["ROI_BOX_HEAD"]["POOLER_TYPE"] == "ROIPool"


def test_a_finished_reproduction_is_kept_and_an_interrupted_one_resumes(reproduction):
    out, table, command, _ = reproduction
    again = tool_runs.run_tool(*command, "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count(": kept (") == 3
    assert json.loads((out / "table8_row.json").read_text())["seconds"] == {}
    # what a kill after stage 2's second checkpoint leaves: no later weights, no evaluation
    frcn = out / "fast_rcnn"
    for later in ("model_0000005.pth", "model_final.pth"):
        (frcn / later).unlink()
    (frcn / "last_checkpoint").write_text("model_0000003.pth")
    evaluation = out / "eval" / "coco_eval.json"
    evaluation.unlink()
    resumed = tool_runs.run_tool(*command, "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert resumed.stdout.count(": kept (") == 1  # stage 1
    assert "train_fast_rcnn.py" in resumed.stdout and "--resume" in resumed.stdout
    assert (frcn / "model_final.pth").is_file() and evaluation.is_file()
    assert set(json.loads((out / "table8_row.json").read_text())["seconds"]) == {
        "stage 2: Fast R-CNN on the proposals",
        "COCO evaluation on the test set",
    }


def test_folders_of_another_run_are_refused(reproduction, tmp_path):
    out, table, command, _ = reproduction
    without_resume = tool_runs.run_tool(*command)
    assert without_resume.returncode == 1
    assert f"{out} holds this reproduction already: pass --resume to continue it" in without_resume.stderr
    other = [*command]
    other[other.index("paper")] = "modern"
    refused = tool_runs.run_tool(*other, "--resume")
    assert (
        refused.returncode == 1
        and "holds another reproduction (family 'paper' -> 'modern', other overrides" in refused.stderr
    )
    both = tool_runs.run_tool(*command, "--resume", "--overwrite")
    assert both.returncode == 1 and "--resume continues the reproduction" in both.stderr
    assert (out / "fast_rcnn" / "model_final.pth").is_file()  # nothing removed
    missing = tool_runs.run_tool("tools/reproduce_table8.py", "--model", "R50", "--weights",
                                 str(tmp_path / "none.pth"), "--output", str(tmp_path / "o"))  # fmt: skip
    assert missing.returncode == 1 and f"--weights {tmp_path / 'none.pth'} not found" in missing.stderr
    assert not (tmp_path / "o").exists()
    typo = tool_runs.run_tool(
        *[w if w != str(out) else str(tmp_path / "typo") for w in command], "SOLVER.MAX_ITERS", "3"
    )
    assert typo.returncode == 1 and "Non-existent key: SOLVER.MAX_ITERS" in typo.stderr
    assert not (tmp_path / "typo").exists()  # a typo writes no reproduction.json to trip the next run
