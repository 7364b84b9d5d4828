"""The error analysis on a hand-made ground truth / detection pair whose answers are worked out
by hand below (COCO's 101-point interpolated precision: AP = sum of the precision envelope over
the recall levels 0, 0.01, ..., 1, divided by 101)."""

from __future__ import annotations

import json

from resnext_det.analysis import (
    ERROR_TYPES,
    CocoPair,
    confusion_matrix,
    error_breakdown,
    load_coco_pair,
    pr_curves,
)
from resnext_det.errors import AnnotationFileError, MissingFileError

import pytest

CATEGORIES = [
    {"id": 1, "name": "cat", "supercategory": "animal"},
    {"id": 2, "name": "dog", "supercategory": "animal"},
    {"id": 7, "name": "car", "supercategory": "vehicle"},
    {"id": 9, "name": "boat", "supercategory": "vehicle"},  # no objects: no answer for it
]


def box(x, y, w=40, h=40):
    return [x, y, w, h]


# one image: four cats (A B C D), a dog, a car, and a crowd of cats far away
OBJECTS = [
    ("A", 1, box(10, 10)),
    ("B", 1, box(100, 10)),
    ("C", 1, box(200, 10)),
    ("D", 1, box(300, 10)),
    ("dog", 2, box(10, 100)),
    ("car", 7, box(100, 100)),
]
CROWD = (1, box(500, 300, 80, 80))
# the cat detector's six detections, by score: each error comes before a true positive, so each
# one that is forgiven raises the precision of the true positives after it
CAT_DETECTIONS = [
    (0.95, box(100, 100)),  # on the car: another class's object (Oth)
    (0.90, box(10, 10)),  # A exactly: a true positive at every IoU
    (0.85, box(10, 100)),  # on the dog: a similar class's object (Sim)
    (0.80, box(108, 10)),  # B shifted by 8 px: IoU 32/48 = 0.667 (true positive at 0.5..0.65)
    (0.75, box(300, 100)),  # on nothing (BG)
    (0.70, box(220, 10)),  # C shifted by 20 px: IoU 20/60 = 0.333 (only within Loc's 0.1)
]  # D is never found (FN)
OTHER_DETECTIONS = [
    (7, 0.90, box(100, 100)),  # the car, exactly
    (1, 0.60, box(510, 310, 30, 30)),  # a cat detection inside the crowd: ignored everywhere
]


def coco_pair_data():
    annotations = [
        {"id": i + 1, "image_id": 1, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
        for i, (_, c, b) in enumerate(OBJECTS)
    ]
    c, b = CROWD
    annotations.append(
        {"id": 99, "image_id": 1, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 1}
    )
    ground_truth = {
        "images": [{"id": 1, "width": 640, "height": 480, "file_name": "one.png"}],
        "annotations": annotations,
        "categories": CATEGORIES,
    }
    detections = [{"image_id": 1, "category_id": 1, "bbox": b, "score": s} for s, b in CAT_DETECTIONS]
    detections += [{"image_id": 1, "category_id": c, "bbox": b, "score": s} for c, s, b in OTHER_DETECTIONS]
    return ground_truth, detections


@pytest.fixture(scope="module")
def pair():
    return CocoPair.from_data(*coco_pair_data())


def test_error_breakdown_of_the_cat_class_is_the_hand_computed_one(pair):
    # precision of the cat detections' true positives in score order (4 cats to find; the
    # -1 marks a detection that the setting ignores):
    #  C75: only A  -> recall .25 at precision 1/2                          -> 26 * .5 / 101
    #  C50: A, B    -> precision 1/2 at recall .25 and .5                    -> 51 * .5 / 101
    #  Loc: A, B, C -> precision 1/2, 2/4, 3/6                               -> 76 * .5 / 101
    #  Sim: the dog detection ignored: 1/2, 2/3, 3/5; envelope 2/3 up to .5, then 3/5
    #  Oth: the car detection too: 1/1, 2/2, 3/4
    #  BG: precision 1 up to the recall reached (.75); FN: 1 everywhere
    expected = {
        "C75": 26 * 0.5 / 101,
        "C50": 51 * 0.5 / 101,
        "Loc": 76 * 0.5 / 101,
        "Sim": (51 * 2 / 3 + 25 * 3 / 5) / 101,
        "Oth": (51 * 1 + 25 * 3 / 4) / 101,
        "BG": 76 / 101,
        "FN": 1.0,
    }
    result = error_breakdown(pair)
    assert result["types"] == list(ERROR_TYPES)
    assert result["classes"]["cat"] == pytest.approx(expected, abs=1e-9)
    # the dog is never detected; the car perfectly; the boat has no objects and so no answer
    assert result["classes"]["dog"] == {t: (1.0 if t == "FN" else 0.0) for t in ERROR_TYPES}
    assert result["classes"]["car"] == pytest.approx({t: 1.0 for t in ERROR_TYPES}, abs=1e-12)
    assert result["classes"]["boat"] is None
    assert result["all"] == pytest.approx(
        {t: (expected[t] + result["classes"]["dog"][t] + 1.0) / 3 for t in ERROR_TYPES}, abs=1e-9
    )
    curve = result["curves"]["cat"]["Sim"]
    assert curve[:51] == [pytest.approx(2 / 3, abs=1e-4)] * 51 and curve[51:76] == [0.6] * 25
    assert curve[76:] == [0.0] * 25


def test_without_supercategories_similar_classes_do_not_exist(pair):
    ground_truth, detections = coco_pair_data()
    for category in ground_truth["categories"]:
        del category["supercategory"]
    cat = error_breakdown(CocoPair.from_data(ground_truth, detections))["classes"]["cat"]
    assert cat["Sim"] == pytest.approx(76 * 0.5 / 101) == cat["Loc"]
    assert cat["Oth"] == pytest.approx(error_breakdown(pair)["classes"]["cat"]["Oth"])


def test_pr_curves_are_cocos_ap(pair):
    curves = pr_curves(pair)
    cat = curves["classes"]["cat"]
    assert cat["IoU 0.5"]["ap"] == pytest.approx(51 * 0.5 / 101)
    assert cat["IoU 0.75"]["ap"] == pytest.approx(26 * 0.5 / 101)
    # B is a true positive at 4 of the 10 thresholds (0.5 ... 0.65): the mean curve is 1/2 up to
    # recall .25 and 4/10 * 1/2 from there to .5
    assert cat["IoU 0.5:0.95"]["ap"] == pytest.approx((26 * 0.5 + 25 * 0.2) / 101)
    assert cat["IoU 0.5:0.95"]["precision"][26:51] == [0.2] * 25
    assert curves["classes"]["boat"]["IoU 0.5"] is None
    assert curves["recall"][:3] == [0.0, 0.01, 0.02] and len(curves["recall"]) == 101
    # "all" is the mean over the three classes with objects, and its 0.5:0.95 AP is COCO's AP
    from resnext_det.analysis.coco_pair import quiet

    from pycocotools.cocoeval import COCOeval

    evaluation = COCOeval(pair.ground_truth, pair.detections, "bbox")
    with quiet():
        evaluation.evaluate(), evaluation.accumulate(), evaluation.summarize()
    assert curves["all"]["IoU 0.5:0.95"]["ap"] == pytest.approx(evaluation.stats[0])
    assert curves["all"]["IoU 0.5"]["ap"] == pytest.approx(evaluation.stats[1])


def test_confusion_matrix_counts_each_object_once(pair):
    result = confusion_matrix(pair, iou=0.5, score_threshold=0.5)
    assert result["labels"] == ["cat", "dog", "car", "boat", "background"]
    assert result["matrix"] == [
        # cat dog car boat missed
        [2, 0, 0, 0, 2],  # cats: A and B found; C (IoU .33) and D missed
        [1, 0, 0, 0, 0],  # the dog: called a cat
        [0, 0, 1, 0, 0],  # the car: found (the cat detection on it is "on a found object")
        [0, 0, 0, 0, 0],  # no boats
        [2, 0, 0, 0, 0],  # background: the cat detections on nothing and beside C (IoU .33)
    ]
    assert result["on_found_objects"] == 1 and result["duplicates"] == 0
    # a detection of C exactly at 0.4 counts only below that threshold; a duplicate of A
    # (IoU 38/42) is counted beside the matrix
    ground_truth, detections = coco_pair_data()
    detections.append({"image_id": 1, "category_id": 1, "bbox": box(200, 10), "score": 0.40})
    detections.append({"image_id": 1, "category_id": 1, "bbox": box(12, 10), "score": 0.55})
    more = CocoPair.from_data(ground_truth, detections)
    assert confusion_matrix(more, score_threshold=0.5)["matrix"][0] == [2, 0, 0, 0, 2]
    low = confusion_matrix(more, score_threshold=0.3)
    assert low["matrix"][0] == [3, 0, 0, 0, 1]
    assert low["duplicates"] == 1


def test_no_detections_at_all(tmp_path):
    ground_truth, _ = coco_pair_data()
    empty = CocoPair.from_data(ground_truth, [])
    assert error_breakdown(empty)["classes"]["cat"] == {t: (1.0 if t == "FN" else 0.0) for t in ERROR_TYPES}
    assert pr_curves(empty)["all"]["IoU 0.5"]["ap"] == 0.0
    assert confusion_matrix(empty)["matrix"][0] == [0, 0, 0, 0, 4]


def test_files_are_checked_against_each_other(tmp_path):
    ground_truth, detections = coco_pair_data()
    gt_file, results = tmp_path / "gt.json", tmp_path / "results.json"
    gt_file.write_text(json.dumps(ground_truth))
    results.write_text(json.dumps(detections))
    assert load_coco_pair(gt_file, results).class_names == ["cat", "dog", "car", "boat"]
    with pytest.raises(MissingFileError, match="detections .*nope.json does not exist"):
        load_coco_pair(gt_file, tmp_path / "nope.json")
    results.write_text(json.dumps([{**detections[0], "image_id": 5}]))
    with pytest.raises(AnnotationFileError, match="image or category id.*first: image 5.*another dataset"):
        load_coco_pair(gt_file, results)
    results.write_text('[{"image_id": 1')
    with pytest.raises(AnnotationFileError, match="not valid JSON"):
        load_coco_pair(gt_file, results)
    gt_file.write_text(json.dumps({"images": []}))
    with pytest.raises(AnnotationFileError, match="not a COCO detection json"):
        load_coco_pair(gt_file, results)
