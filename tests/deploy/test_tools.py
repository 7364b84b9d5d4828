"""tools/export_model.py and tools/predict.py as a user runs them: images, a video, bad input."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from tool_runs import run_tool

pytestmark = pytest.mark.slow  # exports and predictions through the tools

ROOT = Path(__file__).resolve().parents[2]


def run(*args, datasets: Path | None = None) -> subprocess.CompletedProcess:
    return run_tool(*args, env={"DETECTRON2_DATASETS": str(datasets)} if datasets else {})


def write_video(path: Path, frames: list[np.ndarray], fps: float = 5.0) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def demo_images(demo_root: Path, count: int) -> list[Path]:
    return sorted((demo_root / "val").glob("*.png"))[:count]


def test_predict_draws_a_video_and_writes_coco_results(onnx_dir, demo_root, tmp_path):
    frames = [cv2.imread(str(p)) for p in demo_images(demo_root, 7)]
    video = write_video(tmp_path / "clip.mp4", frames)
    result = run("tools/predict.py", "--model", str(onnx_dir), "--input", str(video), "--output",
                 str(tmp_path / "vis"), "--score-threshold", "0.2")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    drawn = cv2.VideoCapture(str(tmp_path / "vis" / "clip.mp4"))
    assert int(drawn.get(cv2.CAP_PROP_FRAME_COUNT)) == 7
    ok, frame = drawn.read()
    assert ok and frame.shape[0] >= 384  # small frames are drawn enlarged, labels legible
    detections = json.loads((tmp_path / "vis" / "detections.json").read_text())
    assert detections and {d["image_id"] for d in detections} <= set(range(7))
    assert {d["category_id"] for d in detections} <= {1, 2, 3}  # the dataset's ids, not indices
    assert all(d["score"] >= 0.2 and len(d["bbox"]) == 4 and d["bbox"][2] > 0 for d in detections)
    assert {d["file_name"] for d in detections} <= {f"clip.mp4#{i}" for i in range(7)}
    assert sorted(p.name for p in (tmp_path / "vis").iterdir()) == ["clip.mp4", "detections.json"]


def test_predict_with_the_stage_folders_on_a_folder_and_one_image(
    tiny_stage_dirs, onnx_dir, demo_root, tmp_path
):
    rpn_dir, frcn_dir = tiny_stage_dirs
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in demo_images(demo_root, 3):
        shutil.copy(path, folder / path.name)
    pytorch = run("tools/predict.py", "--rpn", str(rpn_dir), "--fast-rcnn", str(frcn_dir), "--input",
                  str(folder), "--output", str(tmp_path / "a"), "--score-threshold", "0",
                  datasets=demo_root.parent)  # fmt: skip
    assert pytorch.returncode == 0, pytorch.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "a").glob("*.png")) == sorted(p.name for p in folder.iterdir())
    exported = run("tools/predict.py", "--model", str(onnx_dir), "--input", str(folder), "--output",
                   str(tmp_path / "b"), "--score-threshold", "0")  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-3000:]
    a = json.loads((tmp_path / "a" / "detections.json").read_text())
    b = json.loads((tmp_path / "b" / "detections.json").read_text())
    # the same detections from the PyTorch pair and its ONNX export (demo images: exact resize)
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert (x["image_id"], x["category_id"]) == (y["image_id"], y["category_id"])
        np.testing.assert_allclose(x["bbox"], y["bbox"], atol=0.011)
    one = run("tools/predict.py", "--model", str(onnx_dir), "--input", str(folder / "00001.png"), "--output",
              str(tmp_path / "c"))  # fmt: skip
    assert one.returncode == 0 and [p.name for p in (tmp_path / "c").glob("*.png")] == ["00001.png"]


def unfinished(stage_dir: Path, tmp: Path) -> str:
    """A stage folder whose training has not finished: its config, no model_final.pth."""
    (tmp / "rpn").mkdir()
    shutil.copy(stage_dir / "config.yaml", tmp / "rpn" / "config.yaml")
    return str(tmp / "rpn")


def truncated_copy(onnx_dir: Path, tmp: Path) -> str:
    copy = shutil.copytree(onnx_dir, tmp / "cut")
    (copy / "model.onnx").write_bytes((copy / "model.onnx").read_bytes()[:1000])
    return str(copy)


def an_image(tmp: Path) -> str:
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(tmp / "black.png")
    return str(tmp / "black.png")


def not_an_image(tmp: Path) -> str:
    (tmp / "notes.txt").write_text("not an image")
    return str(tmp / "notes.txt")


def broken_png(tmp: Path) -> str:
    (tmp / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return str(tmp / "photo.png")


def mismatched_checkpoint(frcn_dir: Path, tmp: Path) -> str:
    other = shutil.copytree(frcn_dir, tmp / "frcn")
    config = (other / "config.yaml").read_text().replace("BOTTLENECK_WIDTH: 4", "BOTTLENECK_WIDTH: 8")
    (other / "config.yaml").write_text(config)
    return str(other)


#: (docs/troubleshooting.md row, tool arguments from (rpn, frcn, onnx, tmp), expected message)
CASES = [
    ("export: stage folders that are not a pair",
     lambda r, f, o, t: ["tools/export_model.py", "--rpn", str(f), "--fast-rcnn", str(f),
                         "--output", str(t / "x")],
     r"must build a ProposalNetwork \(stage 1\), not GeneralizedRCNN"),
    ("export: a stage folder without model_final.pth",
     lambda r, f, o, t: ["tools/export_model.py", "--rpn", unfinished(r, t), "--fast-rcnn", str(f),
                         "--output", str(t / "x")],
     r"model_final\.pth not found: --rpn must be a finished stage's OUTPUT_DIR"),
    ("export: a checkpoint that does not fit its config",
     lambda r, f, o, t: ["tools/export_model.py", "--rpn", str(r), "--fast-rcnn", mismatched_checkpoint(f, t),
                         "--output", str(t / "x")],
     r"model_final\.pth does not fit the model of --fast-rcnn .*: \d+ shape mismatches"),
    ("export: the output folder exists",
     lambda r, f, o, t: ["tools/export_model.py", "--rpn", str(r), "--fast-rcnn", str(f), "--output", str(o)],
     r"--output .* exists; pass --overwrite to replace it \(nothing was written\)"),
    ("exported model file truncated",
     lambda r, f, o, t: ["tools/predict.py", "--model", truncated_copy(o, t), "--input", an_image(t),
                         "--output", str(t / "v")],
     r"model\.onnx is truncated or changed \(1000 bytes"),
    ("predict: input that is not an image or a video",
     lambda r, f, o, t: ["tools/predict.py", "--model", str(o), "--input", not_an_image(t)],
     r"--input .*notes\.txt is neither an image .*, a video .* nor a folder of images"),
    ("predict: image file unreadable",
     lambda r, f, o, t: ["tools/predict.py", "--model", str(o), "--input", broken_png(t),
                         "--output", str(t / "v")],
     r"--input .*photo\.png is not a readable image"),
    ("eval of a folder that is not an export",
     lambda r, f, o, t: ["tools/eval_coco.py", "--exported", str(t)],
     r"meta\.json not found: .* is not a folder written by tools/export_model\.py"),
]  # fmt: skip


@pytest.mark.parametrize("name,arguments,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_paragraph(name, arguments, expected, tiny_stage_dirs, onnx_dir, tmp_path):
    before = sorted(p.name for p in onnx_dir.iterdir()), (onnx_dir / "model.onnx").stat().st_mtime_ns
    result = run(*arguments(*tiny_stage_dirs, onnx_dir, tmp_path))
    last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert last.startswith("error: ") and re.search(expected, last), last
    assert not (tmp_path / "x").exists() and not (tmp_path / "v").exists()  # nothing written
    assert (
        sorted(p.name for p in onnx_dir.iterdir()),
        (onnx_dir / "model.onnx").stat().st_mtime_ns,
    ) == before


def test_the_troubleshooting_page_lists_every_case():
    page = (ROOT / "docs" / "troubleshooting.md").read_text()
    section = page.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ")}
    missing = [name for name, _, _ in CASES if name not in rows]
    assert not missing, f"docs/troubleshooting.md's table lacks rows for {missing}"


def test_eval_of_an_export_on_its_recorded_dataset_and_on_a_dataset_flag(onnx_dir, demo_root, tmp_path):
    recorded = run("tools/eval_coco.py", "--exported", str(onnx_dir), "OUTPUT_DIR", str(tmp_path / "a"),
                   datasets=demo_root.parent)  # fmt: skip
    assert recorded.returncode == 0, recorded.stderr[-3000:]
    by_flag = run("tools/eval_coco.py", "--exported", str(onnx_dir),
                  "--dataset", "mine", str(demo_root / "annotations" / "val.json"), str(demo_root / "val"),
                  "DATASETS.TEST", "('mine',)", "OUTPUT_DIR", str(tmp_path / "b"))  # fmt: skip
    assert by_flag.returncode == 0, by_flag.stderr[-3000:]
    lazy = run("tools/eval_coco.py", "--exported", str(onnx_dir), "--config-file",
               "configs/lazy/demo/fast_rcnn_tiny_C4.py", f"train.output_dir={tmp_path / 'c'}")  # fmt: skip
    assert lazy.returncode == 0, lazy.stderr[-3000:]
    a, b, c = (json.loads((tmp_path / k / "coco_eval.json").read_text()) for k in "abc")
    assert list(a) == ["resnext_demo_val"] and list(b) == ["mine"] and list(c) == ["resnext_demo_val"]
    # the same images and annotations: named by the flag, or by a LazyConfig's test loader
    assert a["resnext_demo_val"]["bbox"] == b["mine"]["bbox"] == c["resnext_demo_val"]["bbox"]
    assert "[exported onnx fp32 model" in recorded.stdout and "(onnxruntime)]" in recorded.stdout
    assert (tmp_path / "a" / "inference" / "resnext_demo_val" / "coco_instances_results.json").is_file()
