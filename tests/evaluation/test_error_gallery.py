"""errors.html: the images with the most errors first, each box in the colour of its outcome, and the page working
in headless Chromium."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ssdlite.evaluation import CocoEvaluator, evaluate_results_file
from ssdlite.evaluation.error_gallery import write_error_gallery
from tests.browser import chromium, needs_chromium, page_elements

from .coco_eval_fixtures import CAT, DOG
from .coco_eval_fixtures import hand_built_coco as coco

BOX = (20, 20, 60, 60)


@pytest.fixture
def dataset(tmp_path):
    """Four images whose outcomes are known (score threshold 0.25):

    1. a cat found and a dog missed: 1 error;
    2. a cat called dog, a duplicate of it, and a background dog: 3 errors;
    3. a cat found: no error (left out of the gallery);
    4. a cat boxed poorly, and a detection below the threshold (not drawn): 1 error.
    """
    images = tmp_path / "images"
    images.mkdir()
    for image_id in range(1, 5):
        cv2.imwrite(str(images / f"{image_id}.jpg"), np.full((120, 160, 3), 90, np.uint8))
    ground_truth, detections = coco(
        dict.fromkeys(range(1, 5), (160, 120)),
        [(1, CAT, BOX), (1, DOG, (100, 20, 40, 40)), (2, CAT, BOX), (3, CAT, BOX), (4, CAT, BOX)],
        [(1, CAT, BOX, 0.9), (2, DOG, BOX, 0.8), (2, DOG, (21, 20, 60, 60), 0.7), (2, DOG, (120, 80, 30, 30), 0.6),
         (3, CAT, BOX, 0.9), (4, CAT, (50, 50, 60, 60), 0.9), (4, DOG, (0, 0, 10, 10), 0.1)],
    )
    return ground_truth, detections, images


def cards(page: str) -> list[tuple[str, list[str]]]:
    """(caption's file name, kinds of its boxes) of each card, in page order."""
    found, elements = [], page_elements(page)
    for element in elements:
        if element["tag"] == "figure":
            found.append((element["title"].rsplit("/", 1)[-1], []))
        elif element["tag"] == "g" and element.get("class") == "box":
            found[-1][1].append(element["data-kind"])
    return found


def test_images_with_most_errors_first_each_box_coloured_by_outcome(dataset, tmp_path):
    ground_truth, detections, images = dataset
    evaluator = CocoEvaluator(ground_truth)
    path = write_error_gallery(evaluator, evaluator.detection_table(detections), images, tmp_path / "errors.html",
                               score_threshold=0.25)
    assert cards(path.read_text(encoding="utf-8")) == [
        # The dog called a cat is a classification error; the second dog on the cat, IoU 0.97 with it, is one too
        # (TIDE tests the class before the duplicate); the dog on nothing is background.
        ("2.jpg", ["wrong class", "wrong class", "background", "ground truth"]),
        ("1.jpg", ["correct", "ground truth", "missed"]),
        ("4.jpg", ["poor box", "ground truth"]),
    ]


def test_ssdlite_eval_results_mode_writes_the_gallery_given_the_images(dataset, tmp_path):
    ground_truth, detections, images = dataset
    (tmp_path / "gt.json").write_text(json.dumps(ground_truth))
    (tmp_path / "dt.json").write_text(json.dumps(detections))
    evaluate_results_file(tmp_path / "gt.json", tmp_path / "dt.json", out_dir=tmp_path / "report", images_dir=images)
    assert (tmp_path / "report" / "errors.html").is_file()
    assert len(list((tmp_path / "report" / "errors_files").glob("*.jpg"))) == 3


def test_a_missing_image_folder_is_one_clear_error_before_any_work(dataset, tmp_path):
    ground_truth, detections, _ = dataset
    (tmp_path / "gt.json").write_text(json.dumps(ground_truth))
    (tmp_path / "dt.json").write_text(json.dumps(detections))
    with pytest.raises(FileNotFoundError, match="image folder '.*nowhere' does not exist; --images is the folder"):
        evaluate_results_file(tmp_path / "gt.json", tmp_path / "dt.json", out_dir=tmp_path / "report",
                              images_dir=tmp_path / "nowhere")
    assert not (tmp_path / "report").exists()


@pytest.mark.slow  # starts Chromium
@needs_chromium
def test_the_error_gallery_in_chromium(dataset, tmp_path):
    ground_truth, detections, images = dataset
    evaluator = CocoEvaluator(ground_truth)
    path = write_error_gallery(evaluator, evaluator.detection_table(detections), images, tmp_path / "errors.html",
                               score_threshold=0.25)
    screenshot = tmp_path / "errors.png"
    chromium(f"--screenshot={screenshot}", "--virtual-time-budget=2000", path.as_uri(),
             user_data_dir=tmp_path / "profile")
    shot = cv2.imread(str(screenshot))
    assert shot is not None and shot.std() > 10, "no screenshot, or a blank one"
    for fragment, shown in (("", 3), ("#kind=missed", 1), ("#kind=wrong%20class,poor%20box", 2)):
        dom = chromium("--dump-dom", path.as_uri() + fragment, user_data_dir=tmp_path / "profile").stdout
        [body] = page_elements(dom, "body")
        assert body.get("data-ready") == "1" and "data-errors" not in body, dom[-3000:]
        assert int(body["data-shown"]) == shown, fragment
