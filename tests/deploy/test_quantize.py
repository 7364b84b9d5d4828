"""int8 export (tools/export_model.py --quantize int8) of the tiny random pair: what is quantized,
what stays fp32, what meta.json records, both runtimes, and every bad input (nothing written).
The accuracy of int8 on a trained detector is tests/tools/test_demo.py's."""

from __future__ import annotations

import json
from pathlib import Path

from resnext_det.deploy import QuantizeSettings, load, quantize_export
from resnext_det.deploy.cpu import cpu_features
from resnext_det.deploy.quantize import DEFAULT_KEEP_FP32, module_path
from resnext_det.errors import ExportError

import cv2
import numpy as np
import onnx
import pytest
from tool_runs import run_tool

pytestmark = pytest.mark.slow  # calibrates and runs ONNX models

CALIBRATION = ["--calibration-dataset", "resnext_demo_train", "--calibration-images", "4"]


@pytest.fixture(scope="module")
def int8_dir(onnx_dir, demo_root, tmp_path_factory):
    """The tiny pair's ONNX export quantized on 4 demo training images, its box regression kept fp32."""
    output = tmp_path_factory.mktemp("int8") / "int8"
    settings = QuantizeSettings("resnext_demo_train", images=4, method="minmax", keep_fp32=("bbox_pred",))
    return quantize_export(onnx_dir, output, settings)


def producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {output: node for node in model.graph.node for output in node.output}


def test_int8_quantizes_the_convolutions_and_leaves_the_box_arithmetic_fp32(int8_dir, onnx_dir):
    model = onnx.load(str(int8_dir / "model.onnx"))
    made_by = producers(model)
    fed_by_dequantize = lambda node: [  # noqa: E731
        name for name in node.input if name in made_by and made_by[name].op_type == "DequantizeLinear"
    ]
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs and all(len(fed_by_dequantize(n)) >= 2 for n in convs)  # activation and weight
    for op_type in ("RoiAlign", "NonMaxSuppression", "Resize", "TopK", "Exp"):
        nodes = [n for n in model.graph.node if n.op_type == op_type]
        assert nodes and not any(fed_by_dequantize(n) for n in nodes), op_type
    meta = json.loads((int8_dir / "meta.json").read_text())
    quantization = meta["quantization"]
    excluded = set(quantization["excluded_nodes"])
    gemms = {n.name: n for n in model.graph.node if n.op_type == "Gemm"}
    assert excluded and excluded < set(gemms)  # bbox_pred's Gemm, while cls_score's is quantized
    # an excluded node keeps its fp32 weights (its input may be the dequantized activation that
    # it shares with a quantized node: cls_score reads the same box features)
    assert all(gemms[name].input[1] not in fed_by_dequantize(gemms[name]) for name in excluded)
    assert any(
        node.input[1] in fed_by_dequantize(node) for name, node in gemms.items() if name not in excluded
    )
    # meta.json: the calibration, the method, the fp32 parts, the check and the CPU it ran on
    assert quantization["calibration"]["dataset"] == "resnext_demo_train"
    assert quantization["calibration"]["images"] == 4 and quantization["method"] == "minmax"
    assert quantization["keep_fp32"] == ["bbox_pred"]
    assert quantization["fp32_model"]["folder"] == str(Path(onnx_dir).resolve())
    check = quantization["check"]
    assert check["images"] == 4 and check["cpu"] == cpu_features()
    assert check["ap_drop"] == pytest.approx(check["fp32"]["AP"] - check["int8"]["AP"])
    assert check["int8_time_ratio"] > 0
    fp32_meta = json.loads((Path(onnx_dir) / "meta.json").read_text())
    assert meta["classes"] == fp32_meta["classes"] and meta["test_size"] == fp32_meta["test_size"]
    assert meta["model_sha256"] != fp32_meta["model_sha256"]
    assert (int8_dir / "model.onnx").stat().st_size < 0.5 * (Path(onnx_dir) / "model.onnx").stat().st_size


def test_both_runtimes_run_the_fp32_and_the_int8_model(int8_dir, onnx_dir, demo_root):
    """Both runtimes take both models. The random pair's scores are too close for the runtimes'
    roundings to keep one order (tests/tools/test_demo.py compares them on the trained demo)."""
    image = np.concatenate([cv2.imread(str(p)) for p in sorted((demo_root / "val").glob("*.png"))[:2]])
    for folder in (onnx_dir, int8_dir):
        for backend in ("onnxruntime", "openvino"):
            predictor = load(folder, backend=backend)
            assert predictor.backend_name == backend
            boxes, scores, classes = predictor.run(image)
            assert len(scores) > 0 and boxes.shape == (len(scores), 4) and classes.dtype == np.int64
            assert np.all(boxes[:, 2:] >= boxes[:, :2]) and np.all(boxes[:, 2] <= image.shape[1])
            assert np.all(np.diff(scores) <= 0)  # best first


def test_bad_quantization_input_is_one_clear_error_and_writes_nothing(
    onnx_dir, int8_dir, tiny_stage_dirs, demo_root, tmp_path
):
    rpn, frcn = (str(d) for d in tiny_stage_dirs)
    out = tmp_path / "out"
    exported = ["--exported", str(onnx_dir), "--quantize", "int8"]
    # a registered training split whose one image is not an image
    broken = tmp_path / "broken_split"
    broken.mkdir()
    (broken / "garbage.png").write_bytes(b"not a png")
    annotations = json.loads((demo_root / "annotations" / "train.json").read_text())
    annotations["images"] = [{**annotations["images"][0], "file_name": "garbage.png"}]
    annotations["annotations"] = [
        a for a in annotations["annotations"] if a["image_id"] == annotations["images"][0]["id"]
    ]
    (broken / "broken.json").write_text(json.dumps(annotations))
    cases = {
        "unregistered": ([*exported, "--calibration-dataset", "coco_2099"],
                         "--calibration-dataset 'coco_2099' is not registered"),
        "too few": ([*exported, "--calibration-dataset",
                     "resnext_demo_train", "--calibration-images", "161"],
                    "has 160 images, fewer than the --calibration-images 161 asked for"),
        "test split": (["--rpn", rpn, "--fast-rcnn", frcn, "--quantize", "int8", "--calibration-dataset",
                        "resnext_demo_val"], "is a split this model is evaluated on"),
        "pt2": (["--rpn", rpn, "--fast-rcnn", frcn, "--format", "pt2", "--quantize", "int8", *CALIBRATION],
                "--format pt2 cannot take it"),
        "already int8": (["--exported", str(int8_dir), "--quantize", "int8", *CALIBRATION],
                         "holds an already quantized model (int8, calibrated on resnext_demo_train)"),
        "unknown module": ([*exported, *CALIBRATION, "--keep-fp32",
                            "box_head"], "--keep-fp32 box_head: no node of the model"),
        "negative drop": ([*exported, *CALIBRATION, "--max-ap-drop", "-1"],
                          "--max-ap-drop is the AP points int8 may lose (>= 0), got -1.0"),
        "no calibration": (exported, "needs --calibration-dataset"),
        "no quantize": (["--exported", str(onnx_dir), "--calibration-dataset", "resnext_demo_train"],
                        "--calibration-dataset is for --quantize int8"),
        "unreadable image": ([*exported, "--dataset", "broken", str(broken / "broken.json"), str(broken),
                              "--calibration-dataset", "broken", "--calibration-images", "1"],
                             f"--calibration-dataset image {broken / 'garbage.png'} is not a readable image"),
    }  # fmt: skip
    for name, (args, message) in cases.items():
        result = run_tool("tools/export_model.py", *args, "--output", str(out))
        assert result.returncode == 1, (name, result.stderr[-2000:])
        assert message in result.stderr, (name, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, name
        assert not out.exists() and not list(tmp_path.glob(".out*")), name
        assert sorted(p.name for p in broken.iterdir()) == ["broken.json", "garbage.png"], name
    with pytest.raises(ExportError, match="use onnxruntime or openvino"):
        load(int8_dir, backend="aotinductor")


def test_an_int8_model_losing_more_than_max_ap_drop_is_refused(onnx_dir, demo_root, tmp_path, monkeypatch):
    """The refusal itself, on a drop this test sets: a real one is not reproducible (the demo's
    int8 model scored 1.4 AP above fp32 on its 40 calibration images here, and int8 rounds
    differently on CPUs without VNNI), so the evaluation of the two models is replaced by one
    that gives the int8 model 10 AP less; the quantization and the rest are real."""
    import resnext_det.deploy.evaluate as evaluate

    def fake_evaluation(predictor, dataset_name, output_dir, records=None):
        assert len(records) == 2
        quantized = "quantization" in predictor.predictor.meta
        return {"bbox": {"AP": 40.0 if quantized else 50.0, "AP50": 60.0 if quantized else 70.0}}

    monkeypatch.setattr(evaluate, "evaluate_predictor", fake_evaluation)
    out = tmp_path / "int8"
    with pytest.raises(ExportError) as refused:
        quantize_export(onnx_dir, out, QuantizeSettings("resnext_demo_train", images=2, max_ap_drop=5.0))
    assert (
        "int8 loses 10.00 AP on the 2 calibration images of resnext_demo_train (fp32 50.00, int8 40.00)"
        in str(refused.value)
    )
    assert "more than --max-ap-drop 5.0" in str(refused.value)
    assert not out.exists() and not list(tmp_path.iterdir())
    kept = quantize_export(onnx_dir, out, QuantizeSettings("resnext_demo_train", images=2, max_ap_drop=10.0))
    quantization = json.loads((kept / "meta.json").read_text())["quantization"]
    assert quantization["check"]["ap_drop"] == 10.0
    # by default each trunk's stem stays fp32: a nested module's nodes found by the exporter's scopes
    model = onnx.load(str(kept / "model.onnx"))
    stems = [n.name for n in model.graph.node if module_path(n).split(".")[1:2] == ["stem"]]
    assert quantization["keep_fp32"] == list(DEFAULT_KEEP_FP32)
    assert set(quantization["excluded_nodes"]) == set(stems)
    assert {module_path(n) for n in model.graph.node if n.name in stems} == set(DEFAULT_KEEP_FP32)


def test_the_issue_command_exports_and_quantizes_the_stages_in_one_go(tiny_stage_dirs, demo_root, tmp_path):
    """``--rpn --fast-rcnn --format onnx --quantize int8``: the fp32 export is made in a temporary
    folder beside the output and removed; meta.json names the stages, not that folder."""
    rpn, frcn = (str(d) for d in tiny_stage_dirs)
    out = tmp_path / "x50_int8"
    result = run_tool("tools/export_model.py", "--rpn", rpn, "--fast-rcnn", frcn, "--format", "onnx",
                      "--quantize", "int8", *CALIBRATION, "--output", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "int8 (minmax, 4 images of resnext_demo_train); on those images AP" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x50_int8"]  # no fp32 folder left behind
    meta = json.loads((out / "meta.json").read_text())
    assert meta["quantization"]["fp32_model"]["folder"] is None
    assert meta["sources"]["rpn"]["dir"] == str(Path(rpn).resolve())
    boxes, scores, classes = load(out).run(cv2.imread(str(sorted((demo_root / "val").glob("*.png"))[0])))
    assert len(scores) == len(boxes) == len(classes)
