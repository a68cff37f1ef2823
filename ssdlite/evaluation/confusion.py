"""The detection confusion matrix: which classes a model takes for which, what it misses, what it invents.

K + 1 rows (the true class, background last) by K + 1 columns (the predicted class, background last), counted at
one score threshold (default 0.25) and one IoU (0.5), as Ultralytics counts it: per image, the detections at or
above the threshold and the ground truth are paired class-agnostically, greedily by IoU (highest first, each box in
one pair at most, IoU >= 0.5). A pair counts at (true class, predicted class); a ground truth left unpaired at
(its class, background), a missed object; a detection left unpaired at (background, its class), which is where a
duplicate lands too. Crowd regions are not counted; a detection left unpaired that lies inside one (more than half
of its area) is not counted either.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssdlite.evaluation.voc import BoxTable, coco_iou, rows_by_image

BACKGROUND = "background"
DEFAULT_SCORE_THRESHOLD = 0.25
IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of (true class, predicted class) pairs.

    Attributes:
        class_names: the K classes, in category-id order; row and column K is background.
        counts: int64 [K + 1, K + 1], rows the true class, columns the predicted class.
        score_threshold: the lowest score of a detection counted.
        iou_threshold: the lowest IoU of a pair.
    """

    class_names: list[str]
    counts: np.ndarray
    score_threshold: float
    iou_threshold: float = IOU_THRESHOLD

    @property
    def labels(self) -> list[str]:
        """Row and column names: the classes, then background."""
        return [*self.class_names, BACKGROUND]

    def normalized(self) -> np.ndarray:
        """Each row divided by its sum (the share of each true class predicted as each class); 0 for empty rows."""
        totals = self.counts.sum(axis=1, keepdims=True)
        return np.divide(self.counts, totals, out=np.zeros(self.counts.shape), where=totals > 0)

    def write_csv(self, path: str | Path) -> Path:
        """Counts as CSV: a header row of predicted classes, then one row per true class."""
        path = Path(path)
        with path.open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["true \\ predicted", *self.labels])
            writer.writerows([name, *row] for name, row in zip(self.labels, self.counts.tolist()))
        return path


def confusion_matrix(
    ground_truth: BoxTable,
    detections: BoxTable,
    category_ids: Sequence[int],
    class_names: Sequence[str],
    *,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    iou_threshold: float = IOU_THRESHOLD,
) -> ConfusionMatrix:
    """The confusion matrix of ``detections`` against ``ground_truth`` (see the module docstring).

    Args:
        ground_truth, detections: boxes (xywh pixels) with image and category ids.
        category_ids: the K dataset category ids, in the order of the rows; ``class_names`` their names.
        score_threshold: detections scored below it are left out.
        iou_threshold: the lowest IoU of a true-predicted pair.
    """
    index_of = {int(category): index for index, category in enumerate(category_ids)}
    background = len(category_ids)
    counts = np.zeros((background + 1, background + 1), dtype=np.int64)
    kept = detections.scores >= score_threshold
    detection_rows = rows_by_image(detections.image_ids, kept)
    for image_id, truth_rows in rows_by_image(ground_truth.image_ids).items():
        crowd = ground_truth.is_crowd[truth_rows]
        pairs = _count_image(ground_truth, detections, truth_rows[~crowd], detection_rows.pop(image_id, []),
                             truth_rows[crowd], iou_threshold)
        for truth, predicted in pairs:
            counts[index_of[truth] if truth is not None else background,
                   index_of[predicted] if predicted is not None else background] += 1
    for rows in detection_rows.values():  # images without any ground truth: every detection is background
        for predicted in detections.category_ids[rows].tolist():
            counts[background, index_of[predicted]] += 1
    return ConfusionMatrix(list(class_names), counts, float(score_threshold), float(iou_threshold))


def _count_image(
    ground_truth: BoxTable,
    detections: BoxTable,
    truth_rows: np.ndarray,
    detection_rows: np.ndarray,
    region_rows: np.ndarray,
    iou_threshold: float,
) -> list[tuple[int | None, int | None]]:
    """(true category or None, predicted category or None) of every pair and every box left unpaired."""
    detection_rows = np.asarray(detection_rows, dtype=np.int64)
    iou = coco_iou(detections.boxes[detection_rows], ground_truth.boxes[truth_rows], crowd=False)
    candidates = np.argwhere(iou >= iou_threshold)
    candidates = candidates[np.argsort(-iou[candidates[:, 0], candidates[:, 1]], kind="stable")]
    paired_detections, paired_truths, pairs = set(), set(), []
    for detection, truth in candidates.tolist():
        if detection not in paired_detections and truth not in paired_truths:
            paired_detections.add(detection)
            paired_truths.add(truth)
            pairs.append((int(ground_truth.category_ids[truth_rows[truth]]),
                          int(detections.category_ids[detection_rows[detection]])))
    pairs += [(int(ground_truth.category_ids[row]), None)
              for index, row in enumerate(truth_rows) if index not in paired_truths]
    unpaired = np.array([index not in paired_detections for index in range(len(detection_rows))], dtype=bool)
    in_crowd = (coco_iou(detections.boxes[detection_rows], ground_truth.boxes[region_rows], crowd=True) > 0.5).any(1)
    pairs += [(None, int(category)) for category in detections.category_ids[detection_rows[unpaired & ~in_crowd]]]
    return pairs
