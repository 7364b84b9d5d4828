"""D-ECE from known answers, COCO's matching of detections, the scalings, and the refusal of a
split without ground truth."""

import json

from resnext_det.errors import ConfigError
from resnext_det.robustness.calibration import (
    CONFIDENCE_BINS,
    MatchedDetections,
    check_annotated,
    detection_ece,
    fit_scaling,
    match_detections,
    reliability_curve,
    rescaled,
    write_calibration_report,
)

import numpy as np
import pytest

#: ten scores, one in the middle of each of the 10 confidence bins, 100 detections each
SCORES = np.arange(0.05, 1.0, 0.1)


def calibrated_detector() -> MatchedDetections:
    """A detector whose detections of score s are correct exactly 100 s times in 100."""
    score = np.repeat(SCORES, 100)
    correct = np.concatenate([np.arange(100) < round(100 * s) for s in SCORES])
    boxes = np.tile([0.5, 0.5, 0.2, 0.2], (len(score), 1))
    return MatchedDetections(0.5, score, correct, boxes)


def test_a_calibrated_detector_has_zero_d_ece_and_squared_scores_the_hand_computed_value():
    assert CONFIDENCE_BINS == 10
    calibrated = calibrated_detector()
    assert detection_ece(calibrated) == pytest.approx(0.0, abs=1e-9)
    assert detection_ece(calibrated, position=True) == pytest.approx(
        0.0, abs=1e-9
    )  # one box: one position bin
    # the same detections with their scores squared: 0.05, 0.15 and 0.25 fall into the first bin
    # (mean score (0.0025 + 0.0225 + 0.0625) / 3, precision (5 + 15 + 25) / 300, 300 of 1000
    # detections); every other s is alone in its bin, off by s - s^2 with weight 1/10
    squared = MatchedDetections(0.5, calibrated.score**2, calibrated.correct, calibrated.box)
    first_bin = 0.3 * abs((0.0025 + 0.0225 + 0.0625) / 3 - 0.15)
    others = 0.1 * sum(s - s * s for s in (0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95))
    assert first_bin + others == pytest.approx(0.1675)
    assert detection_ece(squared) == pytest.approx(0.1675, abs=1e-9)
    curve = reliability_curve(squared)
    assert curve["count"] == [300, 100, 100, 100, 100, 100, 100, 100]
    assert curve["precision"][0] == pytest.approx(0.15) and curve["confidence"][-1] == pytest.approx(0.9025)
    # Platt's scaling fitted on the squared scores undoes most of it; applied, it keeps the correctness
    platt = rescaled(squared, fit_scaling("platt", squared))
    assert detection_ece(platt) < 0.05
    assert np.array_equal(platt.correct, squared.correct)


def _gt_json(path):
    images = [{"id": 1, "width": 200, "height": 100, "file_name": "a.png"}]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "area": 1600, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [100, 20, 50, 50], "area": 2500, "iscrowd": 0},
    ]
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "x"}]})
    )
    return str(path)


def test_detections_are_matched_as_coco_matches_them(tmp_path):
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "score": 0.9},  # exact: correct twice
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 36], "score": 0.8},  # a duplicate: wrong
        {
            "image_id": 1,
            "category_id": 1,
            "bbox": [105, 20, 50, 50],
            "score": 0.7,
        },  # IoU 0.82: right at 0.5 and 0.75
        {"image_id": 1, "category_id": 1, "bbox": [115, 20, 50, 50], "score": 0.6},  # after it: a duplicate
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.1},  # below min_score: left out
    ]
    matched = match_detections(_gt_json(tmp_path / "gt.json"), detections, min_score=0.3)
    assert matched[0.5].score.tolist() == [0.9, 0.8, 0.7, 0.6]
    assert matched[0.5].correct.tolist() == [True, False, True, False]
    assert matched[0.75].correct.tolist() == [True, False, True, False]
    # the box's centre and size over the image's width and height
    assert matched[0.5].box[0].tolist() == pytest.approx([30 / 200, 30 / 100, 40 / 200, 40 / 100])
    # a wider box at IoU 0.6 is right at 0.5 only
    loose = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 66], "score": 0.9}]
    assert [m.correct.tolist() for m in match_detections(str(tmp_path / "gt.json"), loose).values()] == [
        [True],
        [False],
    ]


def test_the_report_fits_on_one_split_and_measures_another(tmp_path):
    calibrated = calibrated_detector()
    squared = MatchedDetections(0.5, calibrated.score**2, calibrated.correct, calibrated.box)
    report = write_calibration_report(
        {"val": {0.5: squared}}, tmp_path, fit=("train", {0.5: squared}), min_score=0.3
    )
    row = report["datasets"]["val"]["0.5"]
    assert row["d_ece"] == pytest.approx(0.1675) and row["detections"] == 1000
    assert row["platt"]["d_ece"] < 0.05 and row["temperature"]["d_ece"] < row["d_ece"]
    assert (
        report["fit"]["dataset"] == "train"
        and json.loads((tmp_path / "calibration.json").read_text()) == report
    )
    assert (tmp_path / row["picture"]).stat().st_size > 10_000


def test_a_split_without_annotations_is_refused():
    with pytest.raises(
        ConfigError, match=r"--calibration-fit: dataset 'images_only' has no annotations \(2 images"
    ):
        check_annotated(
            "images_only",
            [{"file_name": "a.png"}, {"file_name": "b.png", "annotations": []}],
            "--calibration-fit",
        )
    check_annotated("has_boxes", [{"file_name": "a.png", "annotations": [{"bbox": [0, 0, 1, 1]}]}])
    with pytest.raises(ConfigError, match="all correct"):
        fit_scaling(
            "platt", MatchedDetections(0.5, np.array([0.5, 0.6]), np.array([True, True]), np.zeros((2, 4)))
        )
