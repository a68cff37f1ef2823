"""CocoEvaluator against pycocotools run directly, both backends; edge cases and input errors."""

import copy
import json

import numpy as np
import pytest
import torch
from faster_coco_eval import COCO as FasterCOCO
from pycocotools.coco import COCO

from ssdlite.evaluation import (
    BACKENDS,
    COCO_METRIC_NAMES,
    VOC_METRIC_NAMES,
    CocoEvaluator,
)
from ssdlite_runtime.records import predictions_to_coco_results

from .coco_eval_fixtures import make_coco_fixture, pycocotools_reference


def reference_per_class_ap(coco_eval) -> dict[str, float]:
    """AP per category straight from COCOeval's precision (area all, maxDets 100), skipping -1 categories."""
    per_class = {}
    for index, category_id in enumerate(coco_eval.params.catIds):
        precision = coco_eval.eval["precision"][:, :, index, 0, -1]
        if (precision > -1).any():
            per_class[coco_eval.cocoGt.cats[category_id]["name"]] = precision[precision > -1].mean()
    return per_class


def test_fixture_has_the_hard_cases(coco_fixture):
    ground_truth, detections = coco_fixture
    annotations = ground_truth["annotations"]
    areas = np.array([a["area"] for a in annotations])
    assert any(a["iscrowd"] for a in annotations)
    assert (areas < 32**2).any() and ((areas >= 32**2) & (areas < 96**2)).any() and (areas >= 96**2).any()
    annotated = {a["image_id"] for a in annotations}
    empty = [image["id"] for image in ground_truth["images"] if image["id"] not in annotated]
    assert empty and {d["image_id"] for d in detections} & set(empty)  # detections on images without objects
    assert len({a["category_id"] for a in annotations}) >= 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_pycocotools_run_directly(backend, coco_fixture, coco_reference):
    ground_truth, detections = coco_fixture
    metrics = CocoEvaluator(ground_truth, backend=backend).evaluate(detections)

    assert set(metrics) == {*COCO_METRIC_NAMES, *VOC_METRIC_NAMES, "per_class_AP"}
    assert (coco_reference.stats[:12] > 0).all()  # every area range measured: no -1 mapping involved here
    np.testing.assert_allclose([metrics[name] for name in COCO_METRIC_NAMES], coco_reference.stats[:12],
                               rtol=0, atol=1e-6)
    reference = reference_per_class_ap(coco_reference)
    assert list(metrics["per_class_AP"]) == list(reference)  # category-id order, "unused" left out
    assert "unused" not in metrics["per_class_AP"]
    np.testing.assert_allclose(list(metrics["per_class_AP"].values()), list(reference.values()), rtol=0, atol=1e-6)
    assert all(type(metrics[name]) is float for name in (*COCO_METRIC_NAMES, *VOC_METRIC_NAMES))


def test_backends_agree_on_every_number():
    ground_truth, detections = make_coco_fixture(num_images=80, num_classes=7, seed=5)
    reference, fast = (CocoEvaluator(ground_truth, backend=backend).evaluate(detections) for backend in BACKENDS)
    for name in (*COCO_METRIC_NAMES, *VOC_METRIC_NAMES):
        assert fast[name] == pytest.approx(reference[name], abs=1e-6), name
    assert fast["per_class_AP"] == pytest.approx(reference["per_class_AP"], abs=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_detections_give_zeros(backend, coco_fixture):
    ground_truth, _ = coco_fixture
    metrics = CocoEvaluator(ground_truth, backend=backend).evaluate([])
    assert all(metrics[name] == 0.0 for name in (*COCO_METRIC_NAMES, *VOC_METRIC_NAMES))
    with_ground_truth = {c["name"] for c in ground_truth["categories"]
                         if any(a["category_id"] == c["id"] and not a["iscrowd"] for a in ground_truth["annotations"])}
    assert metrics["per_class_AP"] == {name: 0.0 for name in sorted(with_ground_truth)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_absent_area_range_and_category_map_to_documented_values(backend):
    """No small/medium ground truth -> APs/ARs/APm/ARm 0.0 (COCOeval: -1); crowd-only category -> not listed."""
    ground_truth = {
        "images": [{"id": 1, "width": 500, "height": 500}, {"id": 2, "width": 500, "height": 500}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "crowd_only"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 200, 150], "area": 30000, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [50, 60, 120, 140], "area": 16800, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [0, 0, 400, 400], "area": 160000, "iscrowd": 1},
        ],
    }
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [12, 10, 200, 150], "score": 0.9},
        {"image_id": 2, "category_id": 2, "bbox": [300, 300, 100, 100], "score": 0.8},
        {"image_id": 2, "category_id": 3, "bbox": [10, 10, 50, 50], "score": 0.7},
    ]
    reference = pycocotools_reference(ground_truth, detections)
    assert reference.stats[3] == -1 and reference.stats[4] == -1  # what we map

    metrics = CocoEvaluator(ground_truth, backend=backend).evaluate(detections)
    assert metrics["APs"] == metrics["APm"] == metrics["ARs"] == metrics["ARm"] == 0.0
    assert metrics["AP"] == pytest.approx(reference.stats[0], abs=1e-6) and metrics["AP"] > 0
    assert metrics["APl"] == pytest.approx(reference.stats[5], abs=1e-6)
    assert set(metrics["per_class_AP"]) == {"cat", "dog"}
    assert metrics["per_class_AP"]["dog"] == 0.0
    assert metrics["VOC12_AP50"] == pytest.approx(0.5)  # cat 1.0, dog 0.0; crowd_only is not a class here


def test_ground_truth_without_annotations_gives_zeros():
    ground_truth = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}], "annotations": []}
    for backend in BACKENDS:
        metrics = CocoEvaluator(ground_truth, backend=backend).evaluate(
            [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}])
        assert all(metrics[name] == 0.0 for name in (*COCO_METRIC_NAMES, *VOC_METRIC_NAMES))
        assert metrics["per_class_AP"] == {}


def test_ground_truth_sources_agree_and_inputs_are_not_modified(coco_fixture, tmp_path):
    ground_truth, detections = coco_fixture
    ground_truth_before, detections_before = copy.deepcopy(ground_truth), copy.deepcopy(detections)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(ground_truth))
    pycocotools_object = COCO(str(path))
    faster_object = FasterCOCO(str(path))

    expected = CocoEvaluator(ground_truth).evaluate(detections)
    for source in (path, str(path), pycocotools_object, faster_object):
        assert CocoEvaluator(source).evaluate(detections) == expected
    assert ground_truth == ground_truth_before and detections == detections_before


def test_repeated_evaluation_is_stable(coco_fixture):
    ground_truth, detections = coco_fixture
    for backend in BACKENDS:
        evaluator = CocoEvaluator(ground_truth, backend=backend)
        first = evaluator.evaluate(detections)
        evaluator.evaluate(detections[: len(detections) // 2])
        assert evaluator.evaluate(detections) == first


def test_annotation_ids_starting_at_zero_are_renumbered(coco_fixture, coco_reference):
    """COCOeval takes annotation id 0 for "unmatched"; the evaluator renumbers such ids (and duplicates)."""
    ground_truth, detections = coco_fixture
    zero_based = copy.deepcopy(ground_truth)
    for annotation in zero_based["annotations"]:
        annotation["id"] -= 1
    for backend in BACKENDS:
        metrics = CocoEvaluator(zero_based, backend=backend).evaluate(detections)
        assert metrics["AP"] == pytest.approx(coco_reference.stats[0], abs=1e-6)


def test_stdout_stays_quiet(coco_fixture, capsys):
    ground_truth, detections = coco_fixture
    for backend in BACKENDS:
        CocoEvaluator(ground_truth, backend=backend).evaluate(detections)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("what", ["image", "category"])
def test_unknown_ids_name_the_ids_and_the_ground_truth_file(what, coco_fixture, tmp_path):
    ground_truth, detections = coco_fixture
    path = tmp_path / "instances_val.json"
    path.write_text(json.dumps(ground_truth))
    bad = copy.deepcopy(detections[:5])
    bad[1][f"{what}_id"] = 123456
    bad[3][f"{what}_id"] = 777777
    with pytest.raises(ValueError, match=rf"{what} id.*instances_val\.json.*\[123456, 777777\]"):
        CocoEvaluator(path, backend="faster").evaluate(bad)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"image_id": 1}, "must be a JSON list"),
        ([{"image_id": 1000, "category_id": 3, "bbox": [0, 0, 1, 1]}], r"detection \[0\] has no 'score' key"),
        ([{"image_id": 1000, "category_id": 3, "score": 0.5, "bbox": [0, 0, 1, 1]}, {"image_id": 1000}],
         r"detection \[1\] has no 'category_id' key"),
        ([{"image_id": 1000, "category_id": 3, "bbox": [0, 0, 1], "score": 0.5}], r"'bbox' \[0, 0, 1\]"),
        ([{"image_id": 1000, "category_id": 3, "bbox": [0, 0, 1, 1], "score": "high"}], r"'score' 'high'"),
        ([{"image_id": "1000", "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.5}], r"'image_id' '1000'"),
        ([[1000, 3, 0, 0, 1, 1, 0.5]], r"detection \[0\] is a list"),
        ([{"image_id": 1000, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.5},
          {"image_id": 1000, "category_id": 3, "bbox": [50, 40, -20, 30], "score": 0.9}],
         r"detection \[1\] has 'bbox' \[50, 40, -20, 30\] with a negative width or height"),
        ([{"image_id": 1000, "category_id": 3, "bbox": [50, 40, 20, -0.5], "score": 0.9}],
         r"detection \[0\] has 'bbox' \[50, 40, 20, -0.5\] with a negative width or height"),
    ],
)
def test_malformed_results_file_names_the_file_and_the_key(content, message, coco_fixture, tmp_path):
    path = tmp_path / "detections_val.json"
    path.write_text(json.dumps(content))
    evaluator = CocoEvaluator(coco_fixture[0])
    with pytest.raises(ValueError, match=message) as error:
        evaluator.evaluate(path)
    assert "detections_val.json" in str(error.value)


def test_unreadable_inputs(coco_fixture, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        CocoEvaluator(tmp_path / "missing.json")
    evaluator = CocoEvaluator(coco_fixture[0])
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        evaluator.evaluate(tmp_path / "nothing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(ValueError, match="broken.json.*not valid JSON"):
        evaluator.evaluate(broken)
    with pytest.raises(ValueError, match="gt.json.*'annotations'"):
        (tmp_path / "gt.json").write_text(json.dumps({"images": [], "categories": []}))
        CocoEvaluator(tmp_path / "gt.json")
    with pytest.raises(ValueError, match="Unknown evaluation backend 'fast'"):
        CocoEvaluator(coco_fixture[0], backend="fast")


def test_predictions_to_coco_results_maps_labels_and_boxes():
    predictions = [
        {"boxes": torch.tensor([[10.0, 20.0, 50.0, 80.0], [0.12345, 1.0, 2.5, 3.0]]),
         "scores": torch.tensor([0.912345678, 0.5]), "labels": torch.tensor([1, 3])},
        {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)},
        {"boxes": np.array([[5.0, 5.0, 6.0, 7.0]]), "scores": np.array([0.25]), "labels": np.array([2])},
    ]
    results = predictions_to_coco_results(predictions, torch.tensor([7, 8, 9]), [11, 22, 33])
    assert results == [
        {"image_id": 7, "category_id": 11, "bbox": [10.0, 20.0, 40.0, 60.0], "score": 0.91235},
        {"image_id": 7, "category_id": 33, "bbox": [0.123, 1.0, 2.377, 2.0], "score": 0.5},
        {"image_id": 9, "category_id": 22, "bbox": [5.0, 5.0, 1.0, 2.0], "score": 0.25},
    ]
    assert all(type(value) in (int, float) for result in results for value in
               (result["image_id"], result["category_id"], result["score"], *result["bbox"]))


def test_predictions_to_coco_results_rejects_bad_input():
    prediction = {"boxes": torch.ones(1, 4), "scores": torch.ones(1), "labels": torch.tensor([0])}
    with pytest.raises(ValueError, match=r"labels \[0\] outside 1\.\.2"):
        predictions_to_coco_results([prediction], [1], [5, 6])
    with pytest.raises(ValueError, match="2 predictions but 1 image ids"):
        predictions_to_coco_results([prediction, prediction], [1], [5, 6])


def test_perfect_predictions_round_trip_to_ap_one(coco_fixture):
    """GT boxes as xyxy predictions (labels 1..K) -> COCO results -> AP 1.0 with both backends."""
    ground_truth, _ = coco_fixture
    category_ids = [c["id"] for c in ground_truth["categories"]]
    predictions, image_ids = [], []
    for image in ground_truth["images"]:
        objects = [a for a in ground_truth["annotations"] if a["image_id"] == image["id"] and not a["iscrowd"]]
        boxes = torch.tensor([a["bbox"] for a in objects], dtype=torch.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        labels = torch.tensor([category_ids.index(a["category_id"]) + 1 for a in objects], dtype=torch.int64)
        predictions.append({"boxes": boxes, "scores": torch.linspace(0.9, 0.5, len(objects)), "labels": labels})
        image_ids.append(image["id"])
    results = predictions_to_coco_results(predictions, image_ids, category_ids)
    for backend in BACKENDS:
        metrics = CocoEvaluator(ground_truth, backend=backend).evaluate(results)
        assert metrics["AP"] == pytest.approx(1.0) and metrics["VOC07_AP50"] == pytest.approx(1.0)
        assert metrics["VOC12_AP50"] == pytest.approx(1.0) and metrics["AR100"] == pytest.approx(1.0)
