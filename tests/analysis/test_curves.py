"""metrics.json read as a user's runs leave it (cut, resumed), and the curves' numbers."""

from __future__ import annotations

import json

from resnext_det.analysis import panel_series, plot_runs, read_metrics
from resnext_det.errors import MissingFileError

import numpy as np
import pytest
from PIL import Image

RPN_LINES = [
    {"iteration": 19, "total_loss": 0.9, "loss_rpn_cls": 0.6, "loss_rpn_loc": 0.3, "lr": 0.01, "time": 0.5},
    {"iteration": 39, "total_loss": 0.7, "loss_rpn_cls": 0.5, "loss_rpn_loc": 0.2, "lr": 0.02, "time": 0.25},
    # killed after 39, resumed from the checkpoint at 19: the later run's 39 is the one that counts
    {"iteration": 39, "total_loss": 0.6, "loss_rpn_cls": 0.4, "loss_rpn_loc": 0.2, "lr": 0.02, "time": 0.5},
    {"iteration": 59, "total_loss": 0.5, "loss_rpn_cls": 0.3, "loss_rpn_loc": 0.2, "lr": 0.02, "time": 0.5},
    {"iteration": 60, "box_proposals/AR@100": 47.2, "box_proposals/AR@1000": 52.0,
     "box_proposals/ARl@100": float("nan")},
    {"iteration": 60, "validation/total_loss": 0.55},
]  # fmt: skip


def write_run(folder, lines, cut_tail: str = "", batch: int | None = 4):
    folder.mkdir(parents=True)
    text = "".join(json.dumps(line) + "\n" for line in lines) + cut_tail
    (folder / "metrics.json").write_text(text)
    if batch:
        (folder / "config.yaml").write_text(f"SOLVER:\n  IMS_PER_BATCH: {batch}\n")
    return folder


def test_a_cut_resumed_run_reads_each_iteration_once(tmp_path):
    run = read_metrics(write_run(tmp_path / "rpn", RPN_LINES, cut_tail='{"iteration": 79, "total_lo'))
    assert run.skipped_lines == 1
    assert [r["iteration"] for r in run.records] == [19, 39, 59, 60]
    assert run.series("total_loss") == ([19, 39, 59], [0.9, 0.6, 0.5])  # the resumed run's 39
    assert run.series("box_proposals/ARl@100") == ([], [])  # NaN is not plotted
    assert run.records[-1]["validation/total_loss"] == 0.55  # one iteration's records merged


def test_panels_hold_the_numbers_of_every_run(tmp_path):
    rpn = read_metrics(write_run(tmp_path / "rpn", RPN_LINES))
    pretrain = read_metrics(
        write_run(
            tmp_path / "pretrain",
            [
                {"iteration": 9, "total_loss": 1.4, "lr": 0.1, "images_per_s": 1100.0},
                {"iteration": 10, "top1_err": 12.5, "top5_err": 1.0},
            ],
            batch=None,
        )
    )
    panels = panel_series([rpn, pretrain])
    assert set(panels) == {
        "losses",
        "lr",
        "classification_error",
        "rpn_recall",
        "validation",
        "throughput",
    }
    assert panels["losses"]["rpn: loss_rpn_cls"] == {"iteration": [19, 39, 59], "value": [0.6, 0.4, 0.3]}
    assert panels["rpn_recall"]["rpn: box_proposals/AR@100"]["value"] == [47.2]
    assert panels["classification_error"] == {
        "pretrain: top1_err": {"iteration": [10], "value": [12.5]},
        "pretrain: top5_err": {"iteration": [10], "value": [1.0]},
    }
    assert panels["validation"] == {"rpn: validation/total_loss": {"iteration": [60], "value": [0.55]}}
    # detectron2 logs seconds per iteration: images/s = SOLVER.IMS_PER_BATCH / time
    assert panels["throughput"]["rpn: images/s"] == {"iteration": [19, 39, 59], "value": [8.0, 8.0, 8.0]}
    assert panels["throughput"]["pretrain: images/s"]["value"] == [1100.0]  # as pretraining logs it


def test_plot_runs_writes_a_picture_per_panel_and_the_numbers(tmp_path):
    runs = [read_metrics(write_run(tmp_path / name, RPN_LINES)) for name in ("a", "b")]
    written = plot_runs(runs, tmp_path / "plots")
    names = sorted(p.name for p in written)
    panels = ["losses", "lr", "rpn_recall", "validation", "throughput", "overview"]
    assert names == sorted(f"{panel}.png" for panel in panels)
    for path in written:
        with Image.open(path) as picture:
            assert picture.format == "PNG" and picture.width > 400
            assert len(np.unique(np.asarray(picture.convert("L")))) > 10  # something is drawn
    series = json.loads((tmp_path / "plots" / "series.json").read_text())
    assert series == panel_series(runs)
    assert set(series["losses"]) >= {"a: total_loss", "b: total_loss"}  # both runs, overlaid


def test_a_missing_run_is_named(tmp_path):
    with pytest.raises(MissingFileError, match=r"nowhere/metrics\.json not found: give a run's OUTPUT_DIR"):
        read_metrics(tmp_path / "nowhere")


def test_the_tool_plots_runs_and_reports_cut_lines(tmp_path):
    from tool_runs import run_tool

    rpn = write_run(tmp_path / "rpn", RPN_LINES, cut_tail='{"iteration": 79')
    frcn = write_run(tmp_path / "frcn", [{"iteration": 9, "total_loss": 2.0, "loss_cls": 1.5, "lr": 0.04},
                                         {"iteration": 10, "bbox/AP": 35.1, "bbox/AP50": 74.7}])  # fmt: skip
    result = run_tool("tools/plot_metrics.py", str(rpn), str(frcn), "--output", str(tmp_path / "p"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "rpn: 4 iterations logged, 1 unreadable line(s) skipped" in result.stdout
    series = json.loads((tmp_path / "p" / "series.json").read_text())
    assert series["detection_ap"]["frcn: bbox/AP50"]["value"] == [74.7]
    assert (tmp_path / "p" / "overview.png").is_file()
    missing = run_tool("tools/plot_metrics.py", str(tmp_path / "none"))
    assert missing.returncode == 1 and missing.stderr.strip().splitlines()[-1].startswith("error: ")


def test_a_top5_error_of_zero_throughout_is_left_out_and_single_evaluations_are_bars(tmp_path):
    """With 4 classes (the demo's) top-5 error is 0 at every evaluation: no line along the x
    axis; a panel of one evaluation per series is drawn (as bars), the overview has no hole."""
    lines = [{"iteration": 9, "total_loss": 1.4, "lr": 0.1},
             {"iteration": 10, "top1_err": 7.0, "top5_err": 0.0},
             {"iteration": 20, "top1_err": 3.0, "top5_err": 0.0}]  # fmt: skip
    pretrain = read_metrics(write_run(tmp_path / "pretrain", lines, batch=None))
    evaluated = [
        {"iteration": 9, "total_loss": 2.0, "lr": 0.04},
        {"iteration": 10, "bbox/AP": 35.1, "bbox/AP50": 74.7},
    ]
    frcn = read_metrics(write_run(tmp_path / "frcn", evaluated))
    panels = panel_series([pretrain, frcn])
    assert panels["classification_error"] == {
        "pretrain: top1_err": {"iteration": [10, 20], "value": [7.0, 3.0]}
    }
    assert set(panels["detection_ap"]) == {"frcn: bbox/AP", "frcn: bbox/AP50"}
    written = plot_runs([pretrain, frcn], tmp_path / "plots")
    assert {p.name for p in written} == {f"{p}.png" for p in panels} | {"overview.png"}
    with Image.open(tmp_path / "plots" / "overview.png") as overview:  # 4 panels: 2 x 2
        assert abs(overview.width / overview.height - 5.4 / 3.9) < 0.15
