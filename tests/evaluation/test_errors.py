"""TIDE's error breakdown: against the tidecv package on the COCO fixtures, and on hand-built cases."""

import contextlib
import copy
import io
import json

import numpy as np
import pytest

from ssdlite.evaluation import CocoEvaluator
from ssdlite.evaluation.errors import ERROR_TYPES, TRUE_POSITIVE, analyse_detections, error_breakdown

from .coco_eval_fixtures import CAT, DOG, make_coco_fixture
from .coco_eval_fixtures import hand_built_coco as coco


def tidecv_errors(ground_truth, detections, tmp_path):
    """tidecv 1.0.1 run as its README shows (TIDE().evaluate(COCO, COCOResult, mode=BOX)), on files. Its COCO
    reader needs a segmentation per annotation even in box mode: each box's own polygon."""
    from tidecv import TIDE, datasets

    ground_truth = copy.deepcopy(ground_truth)
    for annotation in ground_truth["annotations"]:
        x, y, w, h = annotation["bbox"]
        annotation["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    (tmp_path / "gt.json").write_text(json.dumps(ground_truth))
    (tmp_path / "dt.json").write_text(json.dumps(detections))
    tide = TIDE()
    with contextlib.redirect_stdout(io.StringIO()):
        run = tide.evaluate(datasets.COCO(str(tmp_path / "gt.json")), datasets.COCOResult(str(tmp_path / "dt.json")),
                            mode=TIDE.BOX)
    counts = {name: 0 for name in ERROR_TYPES}
    for error in run.errors:
        counts[error.short_name] += 1
    return run.ap, tide.get_main_errors()["dt"], tide.get_special_errors()["dt"], counts


def ours(ground_truth, detections):
    evaluator = CocoEvaluator(ground_truth)
    return error_breakdown(evaluator.ground_truth, evaluator.detection_table(detections),
                           [image["id"] for image in evaluator.images])


@pytest.mark.parametrize("seed", [0, 3])
def test_breakdown_equals_tidecv(seed, tmp_path):
    # Crowd regions, empty images, duplicates, wrong classes, poor boxes and tied scores (coco_eval_fixtures).
    ground_truth, detections = make_coco_fixture(seed=seed)
    ap, main, special, counts = tidecv_errors(ground_truth, detections, tmp_path)
    breakdown = ours(ground_truth, detections)

    assert 100 * breakdown.ap50 == pytest.approx(ap, abs=1e-9)
    assert {name: 100 * value for name, value in breakdown.delta_ap.items()} == pytest.approx(main, abs=1e-9)
    assert 100 * breakdown.false_positive_ap == pytest.approx(special["FalsePos"], abs=1e-9)
    assert 100 * breakdown.false_negative_ap == pytest.approx(special["FalseNeg"], abs=1e-9)
    assert breakdown.counts == counts
    assert all(counts[name] > 0 for name in ERROR_TYPES)  # the fixture holds every type


def test_each_detection_gets_the_type_of_the_first_rule_that_fits():
    box = (100, 100, 100, 100)
    ground_truth, detections = coco(
        {1: (400, 400)},
        [(1, CAT, box), (1, DOG, (300, 300, 50, 50))],
        [
            (1, CAT, box, 0.9),                    # takes the cat
            (1, CAT, (105, 100, 100, 100), 0.8),   # IoU 0.9 with the cat already taken: duplicate
            (1, DOG, (100, 102, 100, 100), 0.7),   # IoU 0.96 with the cat, wrong class
            (1, CAT, (150, 150, 100, 100), 0.6),   # IoU 0.14 with the cat: poor box
            (1, DOG, (150, 150, 100, 100), 0.5),   # IoU 0.14 with the cat, wrong class and poor box: both
            (1, CAT, (0, 300, 40, 40), 0.4),       # touches nothing: background
        ],
    )
    evaluator = CocoEvaluator(ground_truth)
    outcomes = analyse_detections(evaluator.ground_truth, evaluator.detection_table(detections), [1])

    assert outcomes.outcome.tolist() == [TRUE_POSITIVE, "Dupe", "Cls", "Loc", "Both", "Bkg"]
    assert outcomes.ground_truth_rows.tolist() == [0, 0, 0, 0, -1, -1]
    assert outcomes.missed_rows.tolist() == [1]  # the dog: nothing near it
    assert outcomes.counts() == {"Cls": 1, "Loc": 1, "Both": 1, "Dupe": 1, "Bkg": 1, "Miss": 1}
    # The cat was taken, so no Cls or Loc error pointing at it can be fixed into a true positive.
    assert not outcomes.fixes.any()


def test_fixing_a_poor_box_gains_what_the_precision_recall_curve_says():
    # Image 1: a cat boxed poorly (IoU 1/3) at score 0.9. Image 2: a cat found at 0.8.
    ground_truth, detections = coco(
        {1: (400, 400), 2: (400, 400)},
        [(1, CAT, (100, 100, 100, 100)), (2, CAT, (100, 100, 100, 100))],
        [(1, CAT, (150, 100, 100, 100), 0.9), (2, CAT, (100, 100, 100, 100), 0.8)],
    )
    breakdown = ours(ground_truth, detections)
    # As is: precision 0 then 1/2 at recall 1/2; the envelope gives 1/2 at the 51 recall points 0 .. 0.50.
    assert breakdown.ap50 == pytest.approx(51 * 0.5 / 101)
    # Fixed: both true, AP 1. Nothing else to fix.
    assert breakdown.delta_ap == pytest.approx({"Cls": 0, "Loc": 1 - 51 * 0.5 / 101, "Both": 0, "Dupe": 0, "Bkg": 0,
                                                "Miss": 0})
    assert breakdown.counts["Loc"] == 1


def test_a_fix_moves_a_wrong_class_to_the_class_of_its_object_and_only_the_best_scored_one():
    ground_truth, detections = coco(
        {1: (400, 400)},
        [(1, CAT, (100, 100, 100, 100))],
        [(1, DOG, (100, 100, 100, 100), 0.9), (1, DOG, (101, 100, 100, 100), 0.8)],
    )
    evaluator = CocoEvaluator(ground_truth)
    outcomes = analyse_detections(evaluator.ground_truth, evaluator.detection_table(detections), [1])
    assert outcomes.outcome.tolist() == ["Cls", "Cls"]
    assert outcomes.fixes.tolist() == [True, False]
    assert outcomes.missed_rows.tolist() == []  # an error points at the cat: it is not counted as missed too
    breakdown = ours(ground_truth, detections)
    # As is: cat AP 0 (nothing found), dog AP 0 (no dog at all): 0. Fixed: one true cat, the other dropped: 1.
    assert breakdown.ap50 == 0.0
    assert breakdown.delta_ap["Cls"] == pytest.approx(1.0)


def test_images_without_detections_count_their_objects_as_missed():
    ground_truth, detections = coco({1: (100, 100), 2: (100, 100)}, [(1, CAT, (10, 10, 50, 50))],
                                    [(2, DOG, (10, 10, 50, 50), 0.5)])
    breakdown = ours(ground_truth, detections)
    assert breakdown.counts == {"Cls": 0, "Loc": 0, "Both": 0, "Dupe": 0, "Bkg": 1, "Miss": 1}
    # Fixing the background detection leaves the cat's AP at 0; taking the missed cat out leaves the dog class,
    # detections without objects, at 0 too.
    assert breakdown.ap50 == 0.0 and breakdown.delta_ap == pytest.approx(dict.fromkeys(ERROR_TYPES, 0.0))
    assert np.isfinite(breakdown.false_negative_ap)
