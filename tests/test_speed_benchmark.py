"""The speed benchmark's one command runs end to end (``--quick``: tiny sizes, one repetition) and
writes the table, the JSON and the chart docs/speed.md shows. It runs once per session, as the last
step of ``benchmarks/gpu_check.py --device cpu`` (``gpu_check_on_cpu``), so that no group is timed
twice. Its timings are not asserted here: speed targets live in the benchmark's own output, not in
unit tests."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # the speed benchmark's --quick variant, run by gpu_check on the CPU
def test_quick_speed_benchmark_writes_table_json_and_chart(gpu_check_on_cpu):
    out, run = gpu_check_on_cpu
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    steps = json.loads((out / "gpu_check.json").read_text())["steps"]
    assert (
        steps[-1]["command"][:2] == ["benchmarks/speed.py", "--device"] and "--quick" in steps[-1]["command"]
    )
    tmp_path = out / "speed"

    result = json.loads((tmp_path / "speed_quick.json").read_text())
    rows = result["rows"]
    groups = Counter(r["group"] for r in rows)
    assert groups == {
        "1. C4 backbone, forward+backward": 3,
        "2. C4 Faster R-CNN training iteration": 4,
        "2. C4 Faster R-CNN inference": 4,
        "3. classification training step": 6,
        "3. classification inference": 6,
        "4. Fig. 3 block forms at conv2, forward+backward": 3,
        "4. Fig. 3 block forms at conv4, forward+backward": 3,
        # --quick leaves out the compiled and .pt2 rows (compile time only)
        # and the .pt2 and OpenVINO rows without --quick
        "5. deploy: RPN + Fast R-CNN, image to detections": 5,
        "5. deploy: classification inference": 3,
    }
    # every group is compared with one reference, timed in the same repetitions
    references = [r for r in rows if r["reference"]]
    # classification: one per precision, training and inference; deploy: detection and classification
    assert len(references) == 1 + 2 + 3 * 2 + 2 + 2
    for r in rows:
        assert r["seconds"] > 0 and len(r["all_seconds"]) == 1 and r["seconds"] == r["all_seconds"][0]
        # each ratio is this row's time over one of its group's references, timed in the same round
        group_references = [ref for ref in references if ref["group"] == r["group"]]
        assert any(
            r["ratio"] == pytest.approx(r["all_seconds"][0] / ref["all_seconds"][0])
            for ref in group_references
        ), (r["group"], r["model"])
    by_model = {(r["group"], r["model"]): r for r in rows}
    backbone = "1. C4 backbone, forward+backward"
    assert by_model[(backbone, "detectron2 X50 (32x4d)")]["reference"]
    # fvcore counts the same convolutions in both; detectron2 also runs its frozen stem and res2
    # norms as batch norms (which fvcore counts), where ours folds them into the convolutions
    ours, theirs = (by_model[(backbone, m)]["gmacs"] for m in ("ours X50 (32x4d)", "detectron2 X50 (32x4d)"))
    assert theirs * 0.99 < ours < theirs
    assert 0 < by_model[(backbone, "ours X50 (32x4d)")]["fraction_of_peak"]
    deploy = {r["model"]: r for r in rows if r["group"].startswith("5. deploy: RPN")}
    assert deploy["detectron2 X50 pair, eager"]["reference"]
    assert "ours ONNX Runtime (opset 18)" in deploy and "ours TwoStageGraph, eager" in deploy
    assert len({r["size"] for r in deploy.values()}) == 1  # the same image and RoI count for all
    assert "ours ONNX Runtime int8 (QDQ, calibrated)" in deploy
    # where the time goes: each graph backend's sections share out its whole time
    profiled = {label: r["profile"] for label, r in deploy.items() if "profile" in r}
    assert set(profiled) == {"ours TwoStageGraph, eager", "ours ONNX Runtime (opset 18)",
                             "ours ONNX Runtime int8 (QDQ, calibrated)"}  # fmt: skip
    for label, profile in profiled.items():
        assert sum(profile.values()) == pytest.approx(1.0) and min(profile.values()) >= 0, label
        assert profile["resize + backbones"] > 0 and profile["RoI head"] > 0, label
        assert profile["reorders, other"] < 0.5, label  # the nodes found their sections
    # "of peak" is against the 1x1-convolution ceiling, which no whole network exceeds
    # "of peak" is of torch's best 1x1 convolution, timed while the other test worker runs: a torch
    # row stays under it; ONNX Runtime's own kernels may pass it (1.37 for the classifier, seen
    # twice once --quick had no .pt2 row; 0.83 in a full run, docs/speed.md)
    assert all(r["fraction_of_peak"] < 1 for r in rows if r["fraction_of_peak"] and "ONNX" not in r["model"])
    assert result["environment"]["peak_gmac_per_s"] > 0 and result["environment"]["matmul_gmac_per_s"] > 0
    assert set(result["peak_memory_mib"]) == {"ours_x50", "d2_x50", "ours_r50"}
    assert all(mib > 10 for mib in result["peak_memory_mib"].values())

    table = (tmp_path / "speed_quick.md").read_text()
    assert "| measurement | model | input | s | images/s | ratio (range) |" in table
    assert table.count(" (ref) |") == len(references)
    assert (
        "| backend | s | resize + backbones | RPN + NMS | RoI head | post-processing | reorders, other |"
        in table
    )
    assert (tmp_path / "speed_ratios_quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unequal_roi_counts_stop_the_benchmark():
    """The detection rows compare models only when every res5 head ran on the same RoIs."""
    spec = importlib.util.spec_from_file_location("speed", ROOT / "benchmarks" / "speed.py")
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    assert speed.same_count({"ours_x50": [100, 100], "d2_x50": [100]}, "inference") == 100
    with pytest.raises(RuntimeError, match=r"different numbers of RoIs in inference: .*'d2_x50': \[83\]"):
        speed.same_count({"ours_x50": [100], "d2_x50": [83]}, "inference")
    with pytest.raises(RuntimeError, match="different numbers of RoIs in training"):
        speed.same_count({"ours_x50": [64, 60]}, "training")


def test_a_row_is_the_median_and_range_of_per_round_ratios():
    """timing.row's known answers: the ratio is the median of time / reference per round (not a
    ratio of medians), the range their extremes; only the reference row is marked."""

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from timing import row

    reference = [1.0, 1.0, 2.0]
    got = row("g", "model", [2.0, 4.0, 6.0], reference, images=2, macs=3e9, peak=1e9, size="s")
    assert (got["ratio"], got["ratio_range"], got["seconds"], got["reference"]) == (
        3.0,
        [2.0, 4.0],
        4.0,
        False,
    )
    assert got["images_per_s"] == 0.5 and got["gmac_per_s"] == 0.75 and got["fraction_of_peak"] == 0.75
    ref = row("g", "reference", reference, reference, images=2, macs=None, peak=1e9, size="s")
    assert ref["reference"] and ref["ratio"] == 1.0 and ref["fraction_of_peak"] is None
