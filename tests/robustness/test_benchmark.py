"""P, mPC and rPC from known answers: a detector that sees exactly the clean images.

The oracle below returns an image's ground truth when given that image's exact pixels and
nothing otherwise: a corruption that changes nothing must give mPC = P = 100, one that blanks
the image AP 0, whatever the evaluation around them does right or wrong."""

import json
import zlib

from resnext_det.errors import ConfigError
from resnext_det.robustness import Corruption, format_table, read_robustness, run_benchmark
from resnext_det.robustness.plots import ROBUSTNESS_PICTURES, write_robustness_pictures

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import annotations_to_instances, read_image
from detectron2.structures import Boxes, Instances
from PIL import Image

UNCHANGED = Corruption("unchanged", lambda rgb, severity: rgb)
BLANK = Corruption("blank", lambda rgb, severity: np.full_like(rgb, 127))


class GroundTruthOracle:
    """Each clean image's ground truth as detections (of ``score``); nothing for any other image."""

    def __init__(self, records, score: float = 1.0):
        self.calls = 0
        self.truth = {}
        for record in records:
            image = read_image(record["file_name"], format="BGR")
            gt = annotations_to_instances(record["annotations"], image.shape[:2])
            found = Instances(image.shape[:2])
            found.pred_boxes, found.pred_classes = gt.gt_boxes, gt.gt_classes
            found.scores = torch.full((len(gt),), score)
            self.truth[zlib.crc32(image.tobytes())] = found

    def __call__(self, image_bgr):
        self.calls += 1
        found = self.truth.get(zlib.crc32(image_bgr.tobytes()))
        if found is None:
            found = Instances(image_bgr.shape[:2])
            found.pred_boxes, found.scores = Boxes(torch.zeros(0, 4)), torch.zeros(0)
            found.pred_classes = torch.zeros(0, dtype=torch.long)
        return found


@pytest.fixture
def val_records(demo_root):
    return DatasetCatalog.get("resnext_demo_val")[:6]


def test_unchanged_images_give_mpc_equal_to_p_and_blank_ones_ap_zero(val_records, tmp_path):
    oracle = GroundTruthOracle(val_records)
    state = run_benchmark(
        oracle,
        "resnext_demo_val",
        tmp_path,
        [UNCHANGED, BLANK],
        [1, 3],
        model="oracle",
        records=val_records,
        progress=False,
    )
    assert state["clean"]["AP"] == pytest.approx(100.0)
    for severity in ("1", "3"):
        assert state["corrupted"]["unchanged"][severity]["AP"] == pytest.approx(100.0)
        assert state["corrupted"]["blank"][severity]["AP"] == 0.0
    summary = state["summary"]["AP"]
    assert summary["per_corruption"] == {"unchanged": pytest.approx(100.0), "blank": 0.0}
    assert summary["mPC"] == pytest.approx(50.0) and summary["rPC"] == pytest.approx(0.5)
    assert oracle.calls == 5 * len(val_records)  # clean + 2 corruptions x 2 severities
    assert json.loads((tmp_path / "robustness.json").read_text()) == state
    # the log's table has every number of the grid
    table = format_table(state)
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[2:-2]}
    assert rows == {"unchanged": ["100.0"] * 3, "blank": ["0.0"] * 3}
    assert "P 100.0  mPC 50.0  rPC 50.0%" in table
    # the scores' calibration per evaluation: always right at score 1 is calibrated; nothing
    # detected has no D-ECE (and no part in the mean)
    assert state["clean"]["D-ECE"] == pytest.approx(0.0, abs=1e-12)
    assert state["corrupted"]["unchanged"]["3"]["D-ECE"] == pytest.approx(0.0, abs=1e-12)
    assert state["corrupted"]["blank"]["3"]["D-ECE"] is None
    assert state["summary"]["D-ECE"]["mean_corrupted"] == pytest.approx(0.0, abs=1e-12)
    assert table.splitlines()[-1] == (
        "D-ECE of the scores (IoU 0.5, scores >= 0.3): clean 0.0%, under corruption 0.0% on average"
    )
    # the run's two pictures: real PNGs, of the size a reader can read
    for path in write_robustness_pictures(state, tmp_path):
        assert path.name in ROBUSTNESS_PICTURES
        width, height = Image.open(path).size
        assert width >= 300 and height >= 150


def test_an_always_right_detector_scoring_0_6_is_0_4_off(val_records, tmp_path):
    """Every detection correct at score 0.6: one bin, precision 1, D-ECE 0.4 exactly; AP is
    unaffected by a constant score."""
    oracle = GroundTruthOracle(val_records, score=0.6)
    state = run_benchmark(oracle, "resnext_demo_val", tmp_path, [UNCHANGED], [2], model="oracle 0.6",
                          records=val_records, progress=False)  # fmt: skip
    assert state["clean"]["AP"] == pytest.approx(100.0)
    assert state["clean"]["D-ECE"] == pytest.approx(0.4) == state["summary"]["D-ECE"]["mean_corrupted"]
    # plot_robustness's calibration view: drawn for runs that have it, not for a file without it
    from resnext_det.robustness.plots import plot_runs_calibration

    drawn = plot_runs_calibration([("a", state), ("b", state)], tmp_path / "calibration.png")
    assert drawn == tmp_path / "calibration.png" and Image.open(drawn).size[0] >= 300
    older = {**state, "summary": {k: v for k, v in state["summary"].items() if k != "D-ECE"}}
    assert plot_runs_calibration([("a", state), ("old", older)], tmp_path / "none.png") is None


def test_a_rerun_continues_and_a_file_of_another_model_is_refused(val_records, tmp_path):
    oracle = GroundTruthOracle(val_records)
    args = ("resnext_demo_val", tmp_path, [BLANK], [1])
    run_benchmark(oracle, *args, model="oracle", records=val_records, progress=False)
    assert oracle.calls == 2 * len(val_records)
    # the same grid: nothing evaluated again; one more severity: only it
    again = run_benchmark(oracle, *args[:3], [1, 2], model="oracle", records=val_records, progress=False)
    assert oracle.calls == 3 * len(val_records)
    assert set(again["corrupted"]["blank"]) == {"1", "2"} and again["summary"]["severities"] == [1, 2]
    assert read_robustness(tmp_path)["summary"] == again["summary"]
    before = (tmp_path / "robustness.json").read_text()
    with pytest.raises(
        ConfigError, match=r"holds the corruption results of another run \(model: 'oracle' there"
    ):
        run_benchmark(oracle, *args, model="another", records=val_records, progress=False)
    with pytest.raises(ConfigError, match=r"images: 6 there, 3 now"):
        run_benchmark(oracle, *args, model="oracle", records=val_records[:3], progress=False)
    assert (tmp_path / "robustness.json").read_text() == before  # nothing of the first run lost


def test_a_folder_without_a_finished_run_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"no robustness.json"):
        read_robustness(tmp_path)
    (tmp_path / "robustness.json").write_text(json.dumps({"model": "m", "clean": {}}))
    with pytest.raises(ConfigError, match=r"not a finished robustness run \(missing corrupted, summary"):
        read_robustness(tmp_path)


class PixelRecorder(GroundTruthOracle):
    """The oracle, also keeping a checksum of every image it is given, in order."""

    def __init__(self, records):
        super().__init__(records)
        self.seen = []

    def __call__(self, image_bgr):
        self.seen.append(zlib.crc32(image_bgr.tobytes()))
        return super().__call__(image_bgr)


def test_dataloader_workers_corrupt_the_same_pixels_in_the_same_order(val_records, tmp_path):
    """``workers`` processes read and corrupt the images (a real, seeded corruption: a function of
    the file, not of the process); the model sees exactly what one process would have shown it."""
    from resnext_det.deploy.evaluate import evaluate_predictor
    from resnext_det.robustness import CorruptedImages, benchmark_corruption

    corrupted = CorruptedImages(benchmark_corruption("shot_noise"), 3)
    seen = {}
    for workers in (0, 2):
        recorder = PixelRecorder(val_records)
        evaluate_predictor(recorder, "resnext_demo_val", tmp_path / str(workers), records=val_records,
                           image_transform=corrupted, workers=workers)  # fmt: skip
        seen[workers] = recorder.seen
    assert len(seen[0]) == len(val_records) and len(set(seen[0])) == len(val_records)
    assert seen[2] == seen[0]
    clean = [zlib.crc32(read_image(r["file_name"], format="BGR").tobytes()) for r in val_records]
    assert not set(clean) & set(seen[0])  # every image was corrupted
