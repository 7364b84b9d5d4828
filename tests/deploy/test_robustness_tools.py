"""tools/eval_coco.py --corruptions / --calibration and tools/plot_robustness.py as a user runs
them, on the tiny exported pair (random weights: the numbers are not the point, the files, the
pictures and the errors are; the demo's trained model is measured in tools/test_demo.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from tool_runs import run_tool

pytestmark = pytest.mark.slow  # the exported model through the tools


def run(*args, datasets: Path) -> subprocess.CompletedProcess:
    return run_tool(*args, env={"DETECTRON2_DATASETS": str(datasets)})


def test_corruptions_of_an_export_then_two_runs_side_by_side(onnx_dir, demo_root, tmp_path):
    out = tmp_path / "robust"
    # the overrides come right after --severities' values (argparse would give them to it)
    result = run("tools/eval_coco.py", "--exported", str(onnx_dir),
                 "--corruptions", "gaussian_noise,pixelate", "--max-images", "3", "--workers", "2",
                 "--severities", "2", "5", "OUTPUT_DIR", str(out),
                 datasets=demo_root.parent)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((out / "robustness.json").read_text())
    assert state["images"] == 3 and state["dataset"] == "resnext_demo_val"
    assert state["model"] == f"exported onnx fp32 {onnx_dir}"
    assert {c: sorted(v) for c, v in state["corrupted"].items()} == {
        "gaussian_noise": ["2", "5"],
        "pixelate": ["2", "5"],
    }
    assert "P " in result.stdout and "mPC" in result.stdout and "pixelate" in result.stdout
    for picture in ("robustness_heatmap.png", "robustness_curves.png"):
        assert Image.open(out / picture).size[0] >= 300
    # a second model's run (a copy, relabelled), then both side by side
    other = tmp_path / "other"
    shutil.copytree(out, other)
    plots = tmp_path / "cmp"
    compared = run("tools/plot_robustness.py", str(out), str(other / "robustness.json"),
                   "--labels", "R50", "X50", "--output", str(plots), datasets=demo_root.parent)  # fmt: skip
    assert compared.returncode == 0, compared.stderr[-3000:]
    assert sorted(p.name for p in plots.iterdir()) == [
        "comparison.json",
        "retention.png",
        "severity.png",
        "summary.png",
    ]
    assert set(json.loads((plots / "comparison.json").read_text())) == {"R50", "X50"}
    # a run of other corruptions: nothing to compare, said as such
    apart = json.loads((out / "robustness.json").read_text())
    apart["corrupted"] = {"snow": apart["corrupted"]["pixelate"]}
    apart["summary"]["corruptions"] = ["snow"]
    (tmp_path / "apart.json").write_text(json.dumps(apart))
    disjoint = run("tools/plot_robustness.py", str(out), str(tmp_path / "apart.json"),
                   "--output", str(tmp_path / "d"), datasets=demo_root.parent)  # fmt: skip
    assert disjoint.returncode == 1, disjoint.stderr[-2000:]
    assert (
        "error: the runs share no (corruption, severity) to compare: robust: gaussian_noise"
        in disjoint.stderr
    )
    missing = run("tools/plot_robustness.py", str(out), str(tmp_path), datasets=demo_root.parent)
    assert (
        missing.returncode == 1 and f"error: {tmp_path}/robustness.json: no robustness.json" in missing.stderr
    )


def test_calibration_of_an_export(onnx_dir, demo_root, tmp_path):
    """The random pair's detections are nearly all wrong: D-ECE is the count-weighted gap of the
    reliability diagram's bins (the picture shows what the number measures), and, where none is
    right (IoU 0.75 here), exactly their mean score; fitting a scaling on such a split is refused
    with the reason. The demo's trained pair fits both (tools/test_demo.py)."""
    out = tmp_path / "calib"
    result = run("tools/eval_coco.py", "--exported", str(onnx_dir), "--calibration",
                 "--calibration-min-score", "0.0", "--max-images", "4", "OUTPUT_DIR", str(out),
                 datasets=demo_root.parent)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "calibration.json").read_text())
    assert report["fit"] is None and report["min_score"] == 0.0
    for iou in ("0.5", "0.75"):
        row = report["datasets"]["resnext_demo_val"][iou]
        assert row["detections"] > 0 and row["precision"] < 0.05
        curve = row["reliability"][0]
        gaps = [
            n * abs(c - p)
            for n, c, p in zip(curve["count"], curve["confidence"], curve["precision"], strict=True)
        ]
        assert sum(curve["count"]) == row["detections"]
        assert row["d_ece"] == pytest.approx(sum(gaps) / row["detections"], abs=1e-9)
        if row["precision"] == 0.0:
            assert row["d_ece"] == pytest.approx(row["mean_score"], abs=1e-9)
        assert Image.open(out / row["picture"]).size[0] >= 300
    assert report["datasets"]["resnext_demo_val"]["0.75"]["precision"] == 0.0
    assert "resnext_demo_val IoU 0.5:" in result.stdout and "D-ECE" in result.stdout
    refused = run("tools/eval_coco.py", "--exported", str(onnx_dir), "--calibration", "--calibration-fit",
                  "resnext_demo_train", "--max-images", "2", "OUTPUT_DIR", str(tmp_path / "fit"),
                  datasets=demo_root.parent)  # fmt: skip
    assert refused.returncode == 1
    expected = "cannot fit temperature scaling at IoU 0.5: the fitting split has no detections at or above"
    assert expected in refused.stderr  # none of the random pair's scores reaches the default 0.3


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--corruptions", "gaussian_noise,fogg"],
            "--corruptions: unknown corruption 'fogg'; expected 'all'",
        ),
        (
            ["--corruptions", "all", "--severities", "0", "3"],
            "--severities: '0' is not a severity; expected integers from 1 to 5",
        ),
        (
            ["--corruptions", "all", "--severities", "6", "OUTPUT_DIR", "x"],
            "--severities: '6' is not a severity",
        ),
        (
            ["--calibration", "--calibration-fit", "nowhere"],
            "--calibration-fit: 'nowhere' is not a registered dataset",
        ),
        (["--calibration-fit", "resnext_demo_train"], "--calibration-fit is a setting of --calibration"),
        (["--max-images", "3"], "--max-images is a setting of --corruptions and --calibration"),
        (["--workers", "2"], "--workers is a setting of --corruptions and --calibration"),
        (["--severities", "2"], "--severities is a setting of --corruptions"),
        (["--calibration-min-score", "0.5"], "--calibration-min-score is a setting of --calibration"),
        (["--corruptions", "all", "--num-gpus", "2"], "run the model in one process, on one device"),
        (
            ["--calibration", "--calibration-fit", "resnext_demo_val"],
            "'resnext_demo_val' is also the test set",
        ),
        (["--corruptions", "all", "--calibration"], "run --corruptions and --calibration as two commands"),
    ],
)
def test_bad_robustness_input_is_one_error_line(onnx_dir, demo_root, tmp_path, flags, message):
    result = run("tools/eval_coco.py", "--exported", str(onnx_dir), *flags, "OUTPUT_DIR", str(tmp_path / "o"),
                 datasets=demo_root.parent)  # fmt: skip
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert message in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "o").exists()


def test_without_imagecorruptions_and_on_a_split_without_annotations(
    onnx_dir, demo_root, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "imagecorruptions", None)  # the tool runs in this process: not installed
    missing = run("tools/eval_coco.py", "--exported", str(onnx_dir), "--corruptions", "snow",
                  "OUTPUT_DIR", str(tmp_path / "o"), datasets=demo_root.parent)  # fmt: skip
    assert missing.returncode == 1
    assert "--corruptions needs the imagecorruptions package: pip install imagecorruptions" in missing.stderr
    # the demo's val images, registered from a COCO json whose images have no boxes
    gt = json.loads((demo_root / "annotations" / "val.json").read_text())
    (tmp_path / "unlabelled.json").write_text(json.dumps({**gt, "annotations": []}))
    unlabelled = run("tools/eval_coco.py", "--exported", str(onnx_dir), "--calibration",
                     "--calibration-fit", "unlabelled",
                     "--dataset", "unlabelled", str(tmp_path / "unlabelled.json"), str(demo_root / "val"),
                     "OUTPUT_DIR", str(tmp_path / "o"), datasets=demo_root.parent)  # fmt: skip
    assert unlabelled.returncode == 1
    assert (
        "--calibration-fit: dataset 'unlabelled' has no annotations (40 images, none with a box)"
        in unlabelled.stderr
    )


def test_the_pytorch_pair_under_corruption_is_named_by_its_weights(tiny_stage_dirs, demo_root, tmp_path):
    """The PyTorch path (stage 2's config.yaml, stage 1's folder: its RPN runs on the corrupted
    images): the run names the weights stage 2 loaded, so a second model's run into the same
    folder is refused, naming both, and the first's results are kept."""
    rpn, frcn = tiny_stage_dirs
    out = tmp_path / "robust"
    command = ["tools/eval_coco.py", "--config-file", str(frcn / "config.yaml"), "--proposals", str(rpn),
               "--corruptions", "contrast", "--severities", "1", "--max-images", "2"]  # fmt: skip
    first = run(*command, "MODEL.WEIGHTS", str(frcn / "model_final.pth"), "OUTPUT_DIR", str(out),
                datasets=demo_root.parent)  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    state = json.loads((out / "robustness.json").read_text())
    assert state["model"] == f"{frcn / 'config.yaml'} with {frcn / 'model_final.pth'}, stage 1 {rpn}"
    assert set(state["corrupted"]) == {"contrast"} and state["images"] == 2
    copy = tmp_path / "another.pth"
    copy.write_bytes((frcn / "model_final.pth").read_bytes())
    second = run(*command, "MODEL.WEIGHTS", str(copy), "OUTPUT_DIR", str(out), datasets=demo_root.parent)
    assert second.returncode == 1, second.stderr[-2000:]
    assert "holds the corruption results of another run" in second.stderr and str(copy) in second.stderr
    assert json.loads((out / "robustness.json").read_text()) == state
