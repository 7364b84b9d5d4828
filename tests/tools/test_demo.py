"""README command 1: the demo pipeline reaches a measured accuracy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from resnext_det.deploy import build_graph, load
from resnext_det.engine.two_stage import load_stage_pair

import cv2
import numpy as np
import pytest
import tool_runs
from exported_models import EXACT_SIZES, INEXACT_SIZE, assert_same_detections, eager

pytestmark = pytest.mark.slow  # the demo pipeline, about 5 minutes

ROOT = Path(__file__).resolve().parents[2]
#: The README's and docs/demo.md's numbers: the last run of scripts/readme_pictures.py (SEED 0).
DOCS_RESULTS = json.loads((ROOT / "docs" / "demo_results.json").read_text())
#: docs/demo.md's five seeds (scripts/demo_seeds.py): how far the demo moves when only its random
#: streams change, which is also how far float-level differences between CPUs (vector units,
#: thread counts) can move it.
DOCS_SEEDS = json.loads((ROOT / "docs" / "demo_seeds.json").read_text())["spread"]
#: How far this run may land from the documented numbers. AP50 varies little between seeds (see
#: DOCS_SEEDS), so it must be within 5 points of the README's; AP (IoU 0.5:0.95) varies more, so
#: it must be within 5 points of the seeds' range. A regression of more than this, or a README
#: that no longer says what the demo gives, fails.
WINDOW = 5.0


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo, run once as README command 1 runs it: (its folder, the environment it adds, its
    command without the interpreter, result)."""
    tmp_path = tmp_path_factory.mktemp("demo")
    env = {"DETECTRON2_DATASETS": str(tmp_path / "datasets")}
    command = ["tools/demo.py", "--output-dir", str(tmp_path / "demo")]
    first = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=1500,
                           env={**os.environ, **env})  # fmt: skip
    return tmp_path, env, command, first


def test_demo_pipeline(demo):
    tmp_path, env, command, first = demo
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    results = json.loads((tmp_path / "demo" / "demo_results.json").read_text())
    assert results["variant"] == "full" and results["seed"] == 0 and results["processes"] == 1
    assert results["pretrain_top1_err"] < 10  # 4 classes: chance is 75%
    box, documented = results["bbox"], DOCS_RESULTS["bbox"]
    assert abs(box["AP50"] - documented["AP50"]) <= WINDOW, (box, documented)
    seeds = DOCS_SEEDS["AP"]
    assert seeds["min"] - WINDOW <= box["AP"] <= seeds["max"] + WINDOW, (box, DOCS_SEEDS)
    assert DOCS_RESULTS["variant"] == results["variant"]
    assert set(results["seconds"]) == {
        "pretrain (shape crops, the demo's ImageNet)",
        "convert to detectron2 weights",
        "stage 1: RPN, then proposals",
        "stage 2: Fast R-CNN on the proposals",
        "COCO evaluation on the test set",
        "detections drawn on the val images",
        "export both stages as one ONNX model",
        "COCO evaluation of the exported model (ONNX Runtime)",
        "curves of the three training runs",
        "stage 1's val proposals and what they miss",
    }
    curves = json.loads((tmp_path / "demo" / "plots" / "series.json").read_text())
    assert curves["detection_ap"]["fast_rcnn: bbox/AP"]["value"][-1] == pytest.approx(results["bbox"]["AP"])
    recall = curves["rpn_recall"]["rpn: box_proposals/AR@100"]["value"]
    assert recall[-1] == pytest.approx(results["rpn_AR@100"])
    # the exported model (one ONNX graph, run by ONNX Runtime) scores what the PyTorch pair does
    assert abs(results["exported_onnx_bbox"]["AP"] - results["bbox"]["AP"]) <= 0.1
    assert abs(results["exported_onnx_bbox"]["AP50"] - results["bbox"]["AP50"]) <= 0.1
    check_analysis_and_browse(tmp_path / "demo", results)
    pictures = sorted((tmp_path / "demo" / "vis").glob("*.png"))
    assert len(pictures) == 40 and (tmp_path / "demo" / "demo_detections.png").is_file()
    # a re-run keeps every finished stage and reports the same numbers
    again = tool_runs.run_tool(*command, env=env)  # keeps every stage: nothing is trained
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count(": kept ") == 10
    rerun = json.loads((tmp_path / "demo" / "demo_results.json").read_text())
    assert rerun["bbox"] == results["bbox"] and rerun["seconds"] == {}
    # another seed, or a folder of the former --quick variant, is not silently kept
    other_seed = tool_runs.run_tool(*command, "--seed", "1", env=env)
    assert other_seed.returncode != 0
    assert (
        "holds the 'full, seed 0, 1 process' demo, whose stages would be kept for the "
        "'full, seed 1, 1 process' one" in other_seed.stderr
    )
    variant = (tmp_path / "demo" / "variant.txt").read_text()
    (tmp_path / "demo" / "variant.txt").write_text("quick\n")
    mixed = tool_runs.run_tool(*command, env=env)
    assert mixed.returncode != 0 and "holds the 'quick' demo" in mixed.stderr
    (tmp_path / "demo" / "variant.txt").write_text(variant)
    assert json.loads((tmp_path / "demo" / "demo_results.json").read_text()) == rerun  # nothing rewritten


def check_analysis_and_browse(demo: Path, results: dict) -> None:
    """eval_coco.py --analysis and browse_dataset.py agree with the COCO evaluation and the data."""
    analysis = json.loads((demo / "eval" / "analysis" / "resnext_demo_val" / "analysis.json").read_text())
    box = results["bbox"]
    curves = analysis["pr_curves"]["all"]
    assert 100 * curves["IoU 0.5:0.95"]["ap"] == pytest.approx(box["AP"], abs=1e-6)
    assert 100 * curves["IoU 0.5"]["ap"] == pytest.approx(box["AP50"], abs=1e-6)
    for name, curves in analysis["pr_curves"]["classes"].items():
        assert 100 * curves["IoU 0.5:0.95"]["ap"] == pytest.approx(box[f"AP-{name}"])
    errors = analysis["error_breakdown"]["all"]
    assert 100 * errors["C75"] == pytest.approx(box["AP75"])
    assert 100 * errors["C50"] == pytest.approx(box["AP50"])
    areas = [errors[t] for t in ("C75", "C50", "Loc", "Sim", "Oth", "BG", "FN")]
    assert areas == sorted(areas) and areas[-1] == 1.0  # each forgives more
    ground_truth = json.loads(Path(analysis["ground_truth"]).read_text())
    objects = [a for a in ground_truth["annotations"] if not a.get("iscrowd", 0)]
    confusion = analysis["confusion_matrix"]
    per_class = [sum(a["category_id"] == c["id"] for a in objects) for c in ground_truth["categories"]]
    assert [sum(row) for row in confusion["matrix"][:-1]] == per_class  # each object once in its row
    assert sorted(p.name for p in (demo / "eval" / "analysis" / "resnext_demo_val").iterdir()) == sorted(
        ["analysis.json", "pr_curves.png", "error_breakdown.png", "error_breakdown_per_class.png",
         "confusion_matrix.png"]
    )  # fmt: skip
    browsed = json.loads((demo / "browse" / "browse.json").read_text())
    assert browsed["summary"]["objects"] == len(objects) and len(browsed["images"]) == 40
    assert results["proposal_recall"]["recall@0.5"] == browsed["summary"]["recall@0.5"] >= 0.5
    drawn = [e for e in browsed["images"] if "picture" in e]
    assert len(drawn) == 12 and (demo / "browse" / "contact_sheet.png").is_file()
    worst = max(e["recall@0.7"] for e in drawn if e["recall@0.7"] is not None)
    undrawn = [e["recall@0.7"] for e in browsed["images"] if "picture" not in e]
    assert all(recall is None or recall >= worst for recall in undrawn)


def run_tool(*args, env) -> subprocess.CompletedProcess:
    result = tool_runs.run_tool(*args, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def demo_pt2(demo):
    """The demo's trained pair exported to .pt2 by the README's command: the suite's one
    AOTInductor compile (about 100 s), read by every .pt2 check."""
    tmp_path, env, _, first = demo
    assert first.returncode == 0, first.stderr[-3000:]
    stages = ["--rpn", str(tmp_path / "demo" / "rpn"), "--fast-rcnn", str(tmp_path / "demo" / "fast_rcnn")]
    run_tool("tools/export_model.py", *stages, "--format", "pt2", "--output", str(tmp_path / "pt2"), env=env)
    return tmp_path / "pt2"


def val_mosaic(val: Path, height: int, width: int) -> np.ndarray:
    """A BGR image of ``height`` x ``width`` tiled from the val images (cut at the edges): many
    objects, so that the trained pair gives many detections to compare (23-44 measured)."""
    canvas = np.zeros((height, width, 3), np.uint8)
    tiles = iter(sorted(val.glob("*.png")))
    for y in range(0, height, 128):
        for x in range(0, width, 160):
            tile = cv2.imread(str(next(tiles)))
            canvas[y : y + 128, x : x + 160] = tile[: min(128, height - y), : min(160, width - x)]
    return canvas


def test_the_demo_pt2_package_equals_eager_at_any_size(demo, demo_pt2):
    """The .pt2 package (torch.export with a symbolic image size, AOTInductor) against the eager
    graph of the same stages, at sizes upsampled, kept and resized unevenly: the same resize
    kernel as eager, so boxes within 1e-3 px everywhere."""
    tmp_path = demo[0]
    assert json.loads((demo_pt2 / "meta.json").read_text())["format"] == "pt2"
    graph = build_graph(load_stage_pair(tmp_path / "demo" / "rpn", tmp_path / "demo" / "fast_rcnn"))
    predictor = load(demo_pt2)
    val = tmp_path / "datasets" / "resnext_demo" / "val"
    for size in (*EXACT_SIZES, INEXACT_SIZE):
        image = val_mosaic(val, *size)
        assert_same_detections(predictor.run(image), eager(graph, image), box_tolerance=1e-3)


def test_the_demo_detector_exported_to_pt2_and_onnx_matches_pytorch(demo, demo_pt2):
    """README's export commands on the demo's trained stages: AP within 0.1 of the PyTorch pair
    for both formats, and per image the same detections to 1e-2 px."""
    tmp_path, env, _, first = demo
    demo = tmp_path / "demo"
    stages = ["--rpn", str(demo / "rpn"), "--fast-rcnn", str(demo / "fast_rcnn")]
    exported_eval = ["--exported", str(tmp_path / "pt2"), "OUTPUT_DIR", str(tmp_path / "eval_pt2")]
    run_tool("tools/eval_coco.py", "--analysis", *exported_eval, env=env)
    pytorch = json.loads((demo / "eval" / "coco_eval.json").read_text())["resnext_demo_val"]["bbox"]
    for folder in (demo / "eval_exported", tmp_path / "eval_pt2"):
        exported = json.loads((folder / "coco_eval.json").read_text())["resnext_demo_val"]["bbox"]
        assert abs(exported["AP"] - pytorch["AP"]) <= 0.1 and abs(exported["AP50"] - pytorch["AP50"]) <= 0.1
    # --analysis after an exported model's evaluation reads that model's detections
    analysis_file = tmp_path / "eval_pt2" / "analysis" / "resnext_demo_val" / "analysis.json"
    analysis = json.loads(analysis_file.read_text())
    assert analysis["detections"].startswith(str(tmp_path / "eval_pt2"))
    assert 100 * analysis["pr_curves"]["all"]["IoU 0.5:0.95"]["ap"] == pytest.approx(exported["AP"], abs=1e-6)
    val = tmp_path / "datasets" / "resnext_demo" / "val"
    detections = {}
    for name, model in (("pytorch", stages), ("onnx", ["--model", str(demo / "exported")]),
                        ("pt2", ["--model", str(tmp_path / "pt2")])):  # fmt: skip
        out = tmp_path / f"predict_{name}"
        run_tool("tools/predict.py", *model, "--input", str(val), "--output", str(out),
                 "--score-threshold", "0", "--no-progress", env=env)  # fmt: skip
        detections[name] = json.loads((out / "detections.json").read_text())
    assert len(detections["pytorch"]) > 40 * 3  # 40 images, several detections each
    for name in ("onnx", "pt2"):
        assert len(detections[name]) == len(detections["pytorch"]), name
        for ours, theirs in zip(detections[name], detections["pytorch"], strict=True):
            assert (ours["file_name"], ours["category_id"]) == (theirs["file_name"], theirs["category_id"])
            # detections.json rounds to 0.01 px: 1e-2 px of agreement shows as at most 0.011
            assert max(abs(a - b) for a, b in zip(ours["bbox"], theirs["bbox"], strict=True)) <= 0.011, name


def test_test_time_augmentation_on_the_demo(demo):
    """TEST.AUG.ENABLED through eval_coco.py: one view without flip is the plain evaluation; the
    README's sizes-and-flip row runs (its AP measured there)."""
    tmp_path, env, _, first = demo
    assert first.returncode == 0, first.stderr[-3000:]
    demo = tmp_path / "demo"
    stage2 = ["--config-file", "configs/demo/fast_rcnn_tiny_C4.yaml", "--proposals", str(demo / "rpn"),
              "MODEL.WEIGHTS", str(demo / "fast_rcnn" / "model_final.pth")]  # fmt: skip
    one_view = ["TEST.AUG.ENABLED", "True", "TEST.AUG.MIN_SIZES", "(256,)", "TEST.AUG.MAX_SIZE", "384",
                "TEST.AUG.FLIP", "False"]  # fmt: skip
    run_tool("tools/eval_coco.py", *stage2, *one_view, "OUTPUT_DIR", str(tmp_path / "tta1"), env=env)
    plain = json.loads((demo / "eval" / "coco_eval.json").read_text())["resnext_demo_val"]["bbox"]
    tta = json.loads((tmp_path / "tta1" / "coco_eval.json").read_text())["resnext_demo_val"]["bbox"]
    assert abs(tta["AP"] - plain["AP"]) <= 0.05 and abs(tta["AP50"] - plain["AP50"]) <= 0.05


def confident_found(
    ours: list[dict], theirs: list[dict], score: float = 0.5, iou: float = 0.9
) -> tuple[int, int]:
    """(how many of ``ours`` score at least ``score``, how many of those ``theirs`` has too: a
    detection of the same class whose box overlaps it at IoU >= ``iou``). ``theirs`` holds every
    detection down to predict.py's threshold, so that a score just across ``score`` is no miss."""
    from detectron2.structures import Boxes, pairwise_iou

    def boxes(detections):
        import torch

        xywh = torch.tensor([d["bbox"] for d in detections], dtype=torch.float32).reshape(-1, 4)
        return Boxes(torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1))

    confident = [d for d in ours if d["score"] >= score]
    overlaps = pairwise_iou(boxes(confident), boxes(theirs))
    found = sum(
        any(overlaps[i, j] >= iou and d["category_id"] == t["category_id"] for j, t in enumerate(theirs))
        for i, d in enumerate(confident)
    )
    return len(confident), found


#: How much AP and AP50 int8 may lose against fp32 on the demo's val split, per runtime. The split
#: has 98 objects, so one of them found or missed moves AP50 by about 1, and so does any change of
#: rounding: OpenVINO's own resize moved fp32's AP50 by 1.1. The issue's bound, 1.0, is held for
#: ONNX Runtime, the default runtime (measured: 0.1 AP lost on this suite's one-thread demo, 0.4
#: gained on the two-thread one); OpenVINO's int8 lost 1.2 on the two-thread demo and gained on
#: the one-thread one (docs/deploy.md's table).
MAX_INT8_LOSS = {"onnxruntime": 1.0, "openvino": 1.5}
#: ... and a gain is noise of the same kind (1.4 AP50 seen), bounded so that a broken fp32
#: reference cannot pass
MAX_INT8_GAIN = 2.0


def test_the_demo_detector_in_int8(demo, tmp_path):
    """docs/deploy.md's int8 export of the demo's trained pair with the default settings
    (MinMax, the stems in fp32) on 40 training images: on the val split it loses at most
    ``MAX_INT8_LOSS`` AP and AP50 against the fp32 export, and OpenVINO's fp32 run is within 0.3
    of ONNX Runtime's; on a real photo at an odd size (matplotlib's grace_hopper.jpg, 389x517,
    reduced to the test size) the confident detections of each model are found by the other."""
    from resnext_det.deploy.quantize import DEFAULT_KEEP_FP32

    import matplotlib.cbook

    root, env, _, first = demo
    assert first.returncode == 0, first.stderr[-3000:]
    fp32, int8 = root / "demo" / "exported", tmp_path / "int8"
    run_tool("tools/export_model.py", "--exported", str(fp32), "--quantize", "int8", "--calibration-dataset",
             "resnext_demo_train", "--calibration-images", "40", "--output", str(int8), env=env)  # fmt: skip
    quantization = json.loads((int8 / "meta.json").read_text())["quantization"]
    calibration = {**quantization["calibration"], "dataset": "resnext_demo_train", "images": 40}
    assert quantization["calibration"] == calibration
    assert quantization["method"] == "minmax" and quantization["keep_fp32"] == list(DEFAULT_KEEP_FP32)
    reference = json.loads((root / "demo" / "eval_exported" / "coco_eval.json").read_text())
    reference = reference["resnext_demo_val"]
    measured = {}
    for model, backend in ((int8, "onnxruntime"), (int8, "openvino"), (fp32, "openvino")):
        out = tmp_path / f"eval_{model.name}_{backend}"
        run_tool("tools/eval_coco.py", "--exported", str(model), "--backend", backend, "OUTPUT_DIR", str(out),
                 env=env)  # fmt: skip
        evaluation = json.loads((out / "coco_eval.json").read_text())
        measured[model.name, backend] = evaluation["resnext_demo_val"]["bbox"]
    print({f"{name} {backend}": (box["AP"], box["AP50"]) for (name, backend), box in measured.items()},
          "fp32 onnxruntime:", (reference["bbox"]["AP"], reference["bbox"]["AP50"]))  # fmt: skip
    for key in ("AP", "AP50"):
        assert abs(measured["exported", "openvino"][key] - reference["bbox"][key]) <= 0.3, (key, measured)
        for backend, bound in MAX_INT8_LOSS.items():
            change = measured["int8", backend][key] - reference["bbox"][key]
            assert -bound <= change <= MAX_INT8_GAIN, (backend, key, measured, reference)
    photo = cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    photo_file = tmp_path / "grace_hopper_389x517.png"
    cv2.imwrite(str(photo_file), cv2.resize(photo, (389, 517)))
    detections = {}
    for model in (fp32, int8):
        out = tmp_path / f"photo_{model.name}"
        run_tool("tools/predict.py", "--model", str(model), "--input", str(photo_file),
                 "--output", str(out), "--score-threshold", "0.25", "--no-progress", env=env)  # fmt: skip
        detections[model.name] = json.loads((out / "detections.json").read_text())
    fp32_side = confident_found(detections["exported"], detections["int8"])
    int8_side = confident_found(detections["int8"], detections["exported"])
    print(f"grace_hopper 389x517: fp32's {fp32_side[0]} detections >= 0.5, {fp32_side[1]} found in int8; "
          f"int8's {int8_side[0]}, {int8_side[1]} found in fp32")  # fmt: skip
    # a photo is far from the demo's shapes: its scores sit near each other and int8's rounding
    # reorders classes (measured: 4 of 5 and 2 of 4 on the one-thread demo, 6 of 7 and 6 of 8 on
    # the two-thread one); the best detection of each side must be found, and half of the rest
    for (total, found), ours, theirs in ((fp32_side, "exported", "int8"), (int8_side, "int8", "exported")):
        assert total >= 3 and found >= 0.5 * total, (fp32_side, int8_side)
        assert confident_found(detections[ours][:1], detections[theirs], score=0) == (1, 1), (
            ours,
            detections,
        )


def test_the_demo_detector_under_corruption_exported_as_in_pytorch(demo, tmp_path):
    """docs/analysis.md's corruption benchmark, on 10 val images and three corruptions: the
    exported ONNX model (stage 1 inside the graph) and the PyTorch pair (its RPN run by the tool
    on each corrupted image, from the stage's own config.yaml) see the same corrupted pixels, so
    their P and mPC agree within 0.2; the corruptions cost the demo's detector AP."""
    root, env, _, first = demo
    assert first.returncode == 0, first.stderr[-3000:]
    grid = [
        "--corruptions",
        "gaussian_noise,motion_blur,jpeg_compression",
        "--severities",
        "2",
        "--max-images",
        "10",
    ]
    stage2 = root / "demo" / "fast_rcnn"
    run_tool("tools/eval_coco.py", "--config-file", str(stage2 / "config.yaml"),
             "--proposals", str(root / "demo" / "rpn"), *grid,
             "MODEL.WEIGHTS", str(stage2 / "model_final.pth"),
             "OUTPUT_DIR", str(tmp_path / "pytorch"), env=env)  # fmt: skip
    run_tool("tools/eval_coco.py", "--exported", str(root / "demo" / "exported"), *grid,
             "OUTPUT_DIR", str(tmp_path / "onnx"), env=env)  # fmt: skip
    pytorch, onnx = (
        json.loads((tmp_path / k / "robustness.json").read_text())["summary"]["AP"]
        for k in ("pytorch", "onnx")
    )
    print({"pytorch": pytorch, "onnx": onnx})
    assert abs(pytorch["P"] - onnx["P"]) <= 0.2 and abs(pytorch["mPC"] - onnx["mPC"]) <= 0.2, (pytorch, onnx)
    for name, ap in pytorch["per_corruption"].items():
        assert abs(ap - onnx["per_corruption"][name]) <= 0.5, (name, pytorch, onnx)
    assert pytorch["mPC"] < pytorch["P"] - 5, pytorch


def test_the_demo_detectors_scores_calibrated_on_its_training_split(demo, tmp_path):
    """docs/analysis.md's calibration command on the demo's pair, on 10 images of each split:
    the temperature and Platt scalings are fitted on the training split's detections and measured
    on the val split's; every D-ECE is a fraction, and precision is what the matching found."""
    root, env, _, first = demo
    assert first.returncode == 0, first.stderr[-3000:]
    stage2 = root / "demo" / "fast_rcnn"
    run_tool("tools/eval_coco.py", "--config-file", str(stage2 / "config.yaml"),
             "--proposals", str(root / "demo" / "rpn"), "--calibration",
             "--calibration-fit", "resnext_demo_train", "--max-images", "10",
             "MODEL.WEIGHTS", str(stage2 / "model_final.pth"), "OUTPUT_DIR", str(tmp_path / "calib"),
             env=env)  # fmt: skip
    report = json.loads((tmp_path / "calib" / "calibration.json").read_text())
    assert report["fit"]["dataset"] == "resnext_demo_train"
    for iou in ("0.5", "0.75"):
        fitted, row = report["fit"]["iou"][iou], report["datasets"]["resnext_demo_val"][iou]
        assert fitted["detections"] > 10 and row["detections"] > 10, (fitted, row)
        assert 0.3 < row["precision"] < 1.0 and row["mean_score"] >= 0.3, row
        for measured in (row, row["temperature"], row["platt"]):
            assert 0.0 < measured["d_ece"] < 0.6, row
            assert measured["detections"] == row["detections"]
