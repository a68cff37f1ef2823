"""``errors.html``: the images a model gets most wrong, first, with its mistakes drawn.

The detections at or above the score threshold (the confusion matrix's, default 0.25) are matched and classified as
:mod:`ssdlite.evaluation.errors` classifies them (TIDE's rules), and each box is drawn in the colour of its outcome:
a correct detection, a wrong class, a poor box, both, a duplicate, a background detection, or a missed object (the
ground truth no detection found); the other ground truth is drawn dashed. The page (:mod:`ssdlite.evaluation.gallery`)
filters by class and by outcome and shows each image's counts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ssdlite.evaluation.coco import CocoEvaluator
from ssdlite.evaluation.errors import COLOURS, TRUE_POSITIVE, Outcomes, analyse_detections
from ssdlite.evaluation.gallery import GalleryBox, GalleryImage, write_gallery
from ssdlite.evaluation.voc import BoxTable, rows_by_image

# Outcome -> the gallery's kind, in legend order (colours: ``ssdlite.evaluation.errors.COLOURS``).
KIND_NAMES = {
    TRUE_POSITIVE: "correct",
    "Cls": "wrong class",
    "Loc": "poor box",
    "Both": "class and box",
    "Dupe": "duplicate",
    "Bkg": "background",
    "Miss": "missed",
}
GROUND_TRUTH = ("ground truth", "#bbbbbb")
MAX_IMAGES = 100


def write_error_gallery(
    evaluator: CocoEvaluator,
    detections: BoxTable,
    images_dir: str | Path,
    path: str | Path,
    *,
    score_threshold: float,
    max_images: int = MAX_IMAGES,
) -> Path:
    """Writes the gallery of the ``max_images`` images with the most errors (at least one) to ``path``.

    Args:
        evaluator: the ground truth (its ``file_name`` entries are relative to ``images_dir``).
        detections: every detection (:meth:`CocoEvaluator.detection_table`); those below ``score_threshold`` are
            not drawn.
    """
    kept = _rows(detections, detections.scores >= score_threshold)
    truth = evaluator.ground_truth
    outcomes = analyse_detections(truth, kept, [image["id"] for image in evaluator.images])
    names = evaluator.class_names
    cards = []
    detections_of = rows_by_image(kept.image_ids[outcomes.detection_rows])
    missed_of = rows_by_image(truth.image_ids[outcomes.missed_rows])
    truth_of = rows_by_image(truth.image_ids, ~truth.is_crowd)
    for image in evaluator.images:
        boxes = _detection_boxes(kept, outcomes, detections_of.get(image["id"], []), truth, names)
        missed = outcomes.missed_rows[missed_of.get(image["id"], [])]
        boxes += _truth_boxes(truth, truth_of.get(image["id"], []), set(missed.tolist()), names)
        errors = sum(box.kind not in (KIND_NAMES[TRUE_POSITIVE], GROUND_TRUTH[0]) for box in boxes)
        if errors:
            caption = f"{image['file_name']}: {errors} error{'s' if errors != 1 else ''}"
            cards.append((errors, GalleryImage(Path(images_dir) / image["file_name"], boxes, caption)))
    cards.sort(key=lambda card: -card[0])  # stable: images with as many errors keep the dataset's order
    kinds = {**{KIND_NAMES[name]: COLOURS[name] for name in KIND_NAMES}, GROUND_TRUTH[0]: GROUND_TRUTH[1]}
    intro = (f"The {min(len(cards), max_images)} images with the most errors of {len(evaluator.images)} "
             f"({len(cards)} have at least one), detections scored >= {score_threshold:g}, matched at IoU 0.5 "
             "(TIDE's rules: poor box 0.1-0.5 IoU with its class's object, background below 0.1 with every object).")
    return write_gallery(path, [card for _, card in cards[:max_images]], title="Errors", kinds=kinds, intro=intro)


def _detection_boxes(
    detections: BoxTable, outcomes: Outcomes, indices: np.ndarray, truth: BoxTable, names: dict[int, str]
) -> list[GalleryBox]:
    boxes = []
    for index in np.asarray(indices, dtype=np.int64).tolist():
        if outcomes.ignored[index]:
            continue
        row, outcome = outcomes.detection_rows[index], str(outcomes.outcome[index])
        name = names[int(detections.category_ids[row])]
        text = f"{name} {detections.scores[row]:.2f}"
        if outcome == "Cls":
            text += f" (is {names[int(truth.category_ids[outcomes.ground_truth_rows[index]])]})"
        boxes.append(GalleryBox(_xyxy(detections.boxes[row]), KIND_NAMES[outcome], name, text))
    return boxes


def _truth_boxes(truth: BoxTable, rows: np.ndarray, missed: set[int], names: dict[int, str]) -> list[GalleryBox]:
    boxes = []
    for row in np.asarray(rows, dtype=np.int64).tolist():
        name = names[int(truth.category_ids[row])]
        kind = KIND_NAMES["Miss"] if row in missed else GROUND_TRUTH[0]
        boxes.append(GalleryBox(_xyxy(truth.boxes[row]), kind, name, name if row in missed else "", dashed=True))
    return boxes


def _rows(table: BoxTable, kept: np.ndarray) -> BoxTable:
    return BoxTable(**{field.name: getattr(table, field.name)[kept] for field in dataclasses.fields(table)})


def _xyxy(box: np.ndarray) -> tuple[float, float, float, float]:
    x, y, width, height = (float(value) for value in box)
    return (x, y, x + width, y + height)
