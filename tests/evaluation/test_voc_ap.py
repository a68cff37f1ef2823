"""VOC AP@0.5: hand-computed examples, pycocotools' own matching, and a brute-force reference."""

import numpy as np
import pytest

from ssdlite.evaluation import CocoEvaluator
from ssdlite.evaluation.coco import _detection_table, _ground_truth_table
from ssdlite.evaluation.voc import (
    average_precision_11_point,
    average_precision_all_points,
    match_detections,
    precision_recall_curve,
)

from .coco_eval_fixtures import make_coco_fixture, pycocotools_reference


def box(x, y, w, h):
    return [float(x), float(y), float(w), float(h)]


def test_hand_computed_example():
    """4 objects; ranked detections TP, FP, TP, TP, FP(duplicate); a detection inside a crowd region is ignored.

    recall    .25  .25  .50  .75  .75
    precision 1    1/2  2/3  3/4  3/5
    all-point: .25 * 1 + .25 * 3/4 + .25 * 3/4 = 0.625
    11-point:  r = 0, .1, .2 -> 1;  r = .3 ... .7 -> 3/4;  r = .8, .9, 1 -> 0  =>  (3 + 5 * 0.75) / 11
    """
    ground_truth = {
        "images": [{"id": 1}, {"id": 2}],
        "categories": [{"id": 5, "name": "thing"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 5, "bbox": box(0, 0, 100, 100), "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 5, "bbox": box(200, 200, 50, 50), "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 5, "bbox": box(10, 10, 40, 40), "iscrowd": 0},
            {"id": 4, "image_id": 2, "category_id": 5, "bbox": box(300, 300, 60, 60), "iscrowd": 0},
            {"id": 5, "image_id": 2, "category_id": 5, "bbox": box(100, 100, 150, 150), "iscrowd": 1},
        ],
    }
    detections = [
        {"image_id": 1, "category_id": 5, "bbox": box(0, 0, 100, 100), "score": 0.9},  # TP (object 1)
        {"image_id": 2, "category_id": 5, "bbox": box(120, 120, 30, 30), "score": 0.85},  # inside crowd: ignored
        {"image_id": 1, "category_id": 5, "bbox": box(400, 0, 50, 50), "score": 0.8},  # FP
        {"image_id": 1, "category_id": 5, "bbox": box(205, 200, 50, 50), "score": 0.7},  # TP (object 2)
        {"image_id": 2, "category_id": 5, "bbox": box(10, 12, 40, 40), "score": 0.6},  # TP (object 3)
        {"image_id": 1, "category_id": 5, "bbox": box(5, 0, 100, 100), "score": 0.5},  # duplicate of 1: FP
    ]
    for backend in ("pycocotools", "faster"):
        metrics = CocoEvaluator(ground_truth, backend=backend).evaluate(detections)
        assert metrics["VOC12_AP50"] == pytest.approx(0.625, abs=1e-12)
        assert metrics["VOC07_AP50"] == pytest.approx((3 + 5 * 0.75) / 11, abs=1e-12)


def test_mean_over_classes_with_ground_truth():
    ground_truth = {
        "images": [{"id": 1}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "no_objects"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": box(0, 0, 10, 10)},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": box(50, 50, 10, 10)},
            {"id": 3, "image_id": 1, "category_id": 2, "bbox": box(80, 80, 10, 10)},
        ],
    }
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": box(0, 0, 10, 10), "score": 0.9},  # a: AP 1
        {"image_id": 1, "category_id": 2, "bbox": box(50, 50, 10, 10), "score": 0.3},  # b: recall 1/2 at P 1
        {"image_id": 1, "category_id": 3, "bbox": box(0, 0, 10, 10), "score": 0.8},  # class without GT
    ]
    metrics = CocoEvaluator(ground_truth).evaluate(detections)
    assert metrics["VOC12_AP50"] == pytest.approx((1.0 + 0.5) / 2)
    assert metrics["VOC07_AP50"] == pytest.approx((1.0 + 6 / 11) / 2)  # b: r = 0 ... 0.5 reached


@pytest.mark.parametrize(
    ("recall", "precision", "voc07", "voc12"),
    [
        ([0.3], [1.0], 4 / 11, 0.3),  # exact recall 0.3 reaches the 0.3 level (no np.arange(0, 1.1, 0.1) drift)
        ([1.0], [1.0], 1.0, 1.0),
        ([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3], (6 + 5 * 2 / 3) / 11, 0.5 + 0.5 * 2 / 3),
        ([], [], 0.0, 0.0),
    ],
)
def test_integration_rules(recall, precision, voc07, voc12):
    recall, precision = np.array(recall, dtype=float), np.array(precision, dtype=float)
    assert average_precision_11_point(recall, precision) == pytest.approx(voc07, abs=1e-12)
    assert average_precision_all_points(recall, precision) == pytest.approx(voc12, abs=1e-12)


def cocoeval_outcomes(coco_eval) -> dict[int, tuple[bool, bool]]:
    """detection index -> (true positive, ignored) from pycocotools' evalImgs at IoU 0.5, area all, 100 dets."""
    outcomes = {}
    for image_evaluation in coco_eval.evalImgs:
        if image_evaluation is None or image_evaluation["aRng"] != coco_eval.params.areaRng[0]:
            continue
        for column, detection_id in enumerate(image_evaluation["dtIds"]):
            ignored = bool(image_evaluation["dtIgnore"][0, column])
            matched = bool(image_evaluation["dtMatches"][0, column] > 0)
            outcomes[detection_id - 1] = (matched and not ignored, ignored)  # loadRes ids are index + 1
    return outcomes


def crowded_fixture():
    """The standard fixture plus one image/category with 130 detections (the per-image limit is 100)."""
    ground_truth, detections = make_coco_fixture(num_images=40, num_classes=4, seed=3)
    annotation = next(a for a in ground_truth["annotations"] if not a["iscrowd"])
    rng = np.random.default_rng(0)
    x, y, w, h = annotation["bbox"]
    for _ in range(130):
        detections.append({"image_id": annotation["image_id"], "category_id": annotation["category_id"],
                           "bbox": [x + rng.normal(0, 2), y + rng.normal(0, 2), w, h],
                           "score": round(float(rng.random()), 2)})
    return ground_truth, detections


def test_matching_equals_cocoeval_at_iou_half():
    ground_truth, detections = crowded_fixture()
    reference = cocoeval_outcomes(pycocotools_reference(ground_truth, detections))
    matches = match_detections(_ground_truth_table(CocoEvaluator(ground_truth)._dataset["annotations"]),
                               _detection_table(detections, "test"))
    ours = {int(row): (bool(tp), bool(ignored)) for row, tp, ignored in
            zip(matches.order, matches.is_true_positive, matches.is_ignored)}
    assert len(ours) < len(detections)  # the 100-per-image limit dropped some
    assert any(ignored for _, ignored in ours.values()) and any(tp for tp, _ in ours.values())
    assert ours == reference


def test_equal_iou_goes_to_the_later_ground_truth_like_cocoeval():
    """The first detection overlaps A and B equally (IoU 9/11) and takes B, as COCOeval does; the second one
    overlaps only B above 0.5 (A: 0.43), so it is a false positive."""
    ground_truth = {
        "images": [{"id": 1}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": box(0, 0, 10, 10), "area": 100, "iscrowd": 0},
                        {"id": 2, "image_id": 1, "category_id": 1, "bbox": box(2, 0, 10, 10), "area": 100, "iscrowd": 0}],
    }
    detections = [{"image_id": 1, "category_id": 1, "bbox": box(1, 0, 10, 10), "score": 0.9},
                  {"image_id": 1, "category_id": 1, "bbox": box(4, 0, 10, 10), "score": 0.8}]
    assert cocoeval_outcomes(pycocotools_reference(ground_truth, detections)) == {0: (True, False), 1: (False, False)}
    metrics = CocoEvaluator(ground_truth).evaluate(detections)
    assert metrics["VOC12_AP50"] == pytest.approx(0.5)


def brute_force_voc_ap(ground_truth, detections) -> tuple[float, float]:
    """Mean VOC07 / VOC12 AP from pycocotools' matching, by the definitions, with plain loops."""
    coco_eval = pycocotools_reference(ground_truth, detections)
    outcomes = cocoeval_outcomes(coco_eval)
    voc07, voc12 = [], []
    for category in ground_truth["categories"]:
        positives = sum(1 for a in ground_truth["annotations"] if a["category_id"] == category["id"] and not a["iscrowd"])
        if positives == 0:
            continue
        # accumulation order of COCOeval: by score, ties by image id then score-sorted position within the image
        ranked = sorted(
            (i for i, d in enumerate(detections) if d["category_id"] == category["id"] and i in outcomes),
            key=lambda i: (-detections[i]["score"], detections[i]["image_id"]),
        )
        flags = [outcomes[i][0] for i in ranked if not outcomes[i][1]]
        precision = [sum(flags[: k + 1]) / (k + 1) for k in range(len(flags))]
        recall = [sum(flags[: k + 1]) / positives for k in range(len(flags))]
        # all-point: every true positive adds 1/positives of recall at the best precision from there on
        voc12.append(sum(max(precision[k:]) / positives for k in range(len(flags)) if flags[k]))
        levels = [t / 10 for t in range(11)]
        voc07.append(sum(max([p for p, r in zip(precision, recall) if r >= t], default=0.0) for t in levels) / 11)
    return float(np.mean(voc07)), float(np.mean(voc12))


@pytest.mark.parametrize("seed", [1, 2])
def test_voc_ap_equals_brute_force_reference(seed):
    ground_truth, detections = make_coco_fixture(num_images=30, num_classes=3, seed=seed)
    expected_voc07, expected_voc12 = brute_force_voc_ap(ground_truth, detections)
    for backend in ("pycocotools", "faster"):
        metrics = CocoEvaluator(ground_truth, backend=backend).evaluate(detections)
        assert metrics["VOC07_AP50"] == pytest.approx(expected_voc07, abs=1e-12)
        assert metrics["VOC12_AP50"] == pytest.approx(expected_voc12, abs=1e-12)


def test_voc12_is_the_all_point_version_of_coco_ap50(coco_fixture, coco_reference):
    """Same matching, different integration: all-point AP and COCO's 101-point AP50 are close, not equal."""
    metrics = CocoEvaluator(coco_fixture[0]).evaluate(coco_fixture[1])
    assert metrics["VOC12_AP50"] == pytest.approx(coco_reference.stats[1], abs=0.02)
    assert metrics["VOC12_AP50"] != coco_reference.stats[1]


def test_precision_recall_curve():
    recall, precision = precision_recall_curve(np.array([True, False, True]), 4)
    np.testing.assert_allclose(recall, [0.25, 0.25, 0.5])
    np.testing.assert_allclose(precision, [1.0, 0.5, 2 / 3])
