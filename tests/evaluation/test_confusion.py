"""The confusion matrix on hand-built cases whose matrix is known, and the report files of the error analysis."""

import csv
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ssdlite.evaluation import CocoEvaluator, analyse_errors, evaluate_results_file
from ssdlite.evaluation.confusion import confusion_matrix
from ssdlite.evaluation.report import OBJECT_COUNT_BINS

from .coco_eval_fixtures import CAT, DOG, make_coco_fixture
from .coco_eval_fixtures import hand_built_coco as coco
from .test_evaluation_report import assert_png

BOX = (100, 100, 100, 100)


def matrix_of(ground_truth, detections, **options):
    evaluator = CocoEvaluator(ground_truth)
    return confusion_matrix(evaluator.ground_truth, evaluator.detection_table(detections), [CAT, DOG],
                            ["cat", "dog"], **options)


# Rows: true cat, dog, background; columns: predicted cat, dog, background.
@pytest.mark.parametrize(
    "annotations, detections, expected",
    [
        pytest.param([(1, CAT, BOX)], [(1, DOG, BOX, 0.9)], [[0, 1, 0], [0, 0, 0], [0, 0, 0]], id="swapped class"),
        pytest.param([(1, DOG, BOX)], [], [[0, 0, 0], [0, 0, 1], [0, 0, 0]], id="missed object"),
        pytest.param([], [(1, CAT, BOX, 0.5)], [[0, 0, 0], [0, 0, 0], [1, 0, 0]], id="background detection"),
        pytest.param([(1, CAT, BOX)], [(1, CAT, BOX, 0.9), (1, CAT, (105, 100, 100, 100), 0.8)],
                     [[1, 0, 0], [0, 0, 0], [1, 0, 0]], id="duplicate"),
        pytest.param([(1, CAT, BOX)], [(1, CAT, (150, 150, 100, 100), 0.9)], [[0, 0, 1], [0, 0, 0], [1, 0, 0]],
                     id="poor box: a miss and a background detection"),
        pytest.param([(1, CAT, BOX)], [(1, DOG, BOX, 0.2)], [[0, 0, 1], [0, 0, 0], [0, 0, 0]],
                     id="below the score threshold: not counted"),
        # Class-agnostic pairing by IoU: the dog box overlapping the cat more takes it, the cat box is left over.
        pytest.param([(1, CAT, BOX)], [(1, CAT, (110, 100, 100, 100), 0.9), (1, DOG, (101, 100, 100, 100), 0.6)],
                     [[0, 1, 0], [0, 0, 0], [1, 0, 0]], id="highest IoU pairs first"),
    ],
)
def test_known_matrices(annotations, detections, expected):
    ground_truth, results = coco({1: (400, 400)}, annotations, detections)
    matrix = matrix_of(ground_truth, results)
    assert matrix.counts.tolist() == expected
    assert matrix.labels == ["cat", "dog", "background"]


def test_crowd_regions_and_their_detections_are_not_counted():
    ground_truth, results = coco({1: (400, 400)}, [(1, CAT, BOX)], [(1, CAT, (110, 110, 50, 50), 0.9)])
    ground_truth["annotations"][0]["iscrowd"] = 1
    assert matrix_of(ground_truth, results).counts.sum() == 0


def test_normalised_rows_and_csv(tmp_path):
    ground_truth, results = coco(
        {1: (400, 400), 2: (400, 400), 3: (400, 400)},
        [(1, CAT, BOX), (2, CAT, BOX), (3, CAT, BOX), (3, DOG, (250, 250, 100, 100))],
        [(1, CAT, BOX, 0.9), (2, CAT, BOX, 0.9), (3, DOG, BOX, 0.9)],
    )
    matrix = matrix_of(ground_truth, results, score_threshold=0.5)
    assert matrix.counts.tolist() == [[2, 1, 0], [0, 0, 1], [0, 0, 0]]
    assert matrix.normalized() == pytest.approx(np.array([[2 / 3, 1 / 3, 0], [0, 0, 1], [0, 0, 0]]))
    with matrix.write_csv(tmp_path / "m.csv").open() as file:
        rows = list(csv.reader(file))
    assert rows == [["true \\ predicted", "cat", "dog", "background"], ["cat", "2", "1", "0"], ["dog", "0", "0", "1"],
                    ["background", "0", "0", "0"]]


def test_ap_by_objects_per_image_is_cocoeval_on_those_images(coco_fixture):
    ground_truth, detections = coco_fixture
    analysis = analyse_errors(CocoEvaluator(ground_truth), detections)
    objects = {}
    for annotation in ground_truth["annotations"]:
        if not annotation["iscrowd"]:
            objects[annotation["image_id"]] = objects.get(annotation["image_id"], 0) + 1
    reference = {}
    for label, low, high in OBJECT_COUNT_BINS:
        image_ids = [i for i, n in objects.items() if n >= low and (high is None or n <= high)]
        if image_ids:
            coco_gt = COCO()
            coco_gt.dataset = ground_truth
            coco_gt.createIndex()
            coco_eval = COCOeval(coco_gt, coco_gt.loadRes(detections), "bbox")
            coco_eval.params.imgIds = sorted(image_ids)
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
            reference[label] = coco_eval.stats[0]
    assert len(reference) >= 2
    assert analysis.ap_by_objects_per_image == pytest.approx(reference, abs=1e-9)


def test_results_file_report_writes_the_error_analysis(tmp_path):
    ground_truth, detections = make_coco_fixture(num_images=20, seed=2)
    (tmp_path / "gt.json").write_text(json.dumps(ground_truth))
    (tmp_path / "dt.json").write_text(json.dumps(detections))
    metrics = evaluate_results_file(tmp_path / "gt.json", tmp_path / "dt.json", out_dir=tmp_path / "report",
                                    score_threshold=0.3)
    saved = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert saved["confusion_matrix"]["score_threshold"] == 0.3
    assert np.array(saved["confusion_matrix"]["counts"]).shape == (7, 7)  # 6 categories + background
    assert set(saved["errors"]["dAP"]) == {"Cls", "Loc", "Both", "Dupe", "Bkg", "Miss"}
    assert saved["errors"] == metrics["analysis"].breakdown.as_dict()
    assert_png(tmp_path / "report" / "confusion_matrix.png")
    assert_png(tmp_path / "report" / "errors.png")
    assert not (tmp_path / "report" / "errors.html").exists()  # no images given: no gallery
    lines = metrics["analysis"].lines(metrics)
    assert "classification" in lines and "AP by objects per image" in lines
