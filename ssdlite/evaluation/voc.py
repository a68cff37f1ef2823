"""Pascal VOC style average precision at IoU 0.5, on the COCO matching.

The detections are matched to the ground truth exactly as COCOeval matches them at IoU 0.50 for the area range
"all" and at most 100 detections per image and category (greedy by score, each detection takes the unmatched
ground truth with the highest IoU >= 0.5, non-ignored ground truth first; a detection whose match is a crowd
region is ignored, neither true nor false positive, like a VOC "difficult" object). The PR curve of each class is
then integrated the two VOC ways:

* ``VOC07``: 11-point interpolated AP (VOC2007 devkit): mean over recall r in {0, 0.1, ..., 1} of the highest
  precision reached at a recall >= r.
* ``VOC12``: all-point AP (VOC2010+ devkit): area under the precision envelope at every recall step.

COCO's own AP50 integrates the same curve at 101 recall points, so ``VOC12_AP50`` differs from ``AP50`` only by
the interpolation. Differences from the VOC devkit itself: the devkit adds 1 pixel to widths (inclusive pixel
coordinates) and does not fall back to a detection's second-best ground truth when its best one is already taken.

Classes without (non-ignored) ground truth are left out of the mean, as in COCO; no class at all gives 0.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pycocotools import mask as coco_mask

# The range of the COCO area bucket "all"; ground truth or detections outside it are ignored, as in COCOeval.
AREA_RANGE_ALL = (0.0, 1e5**2)
MAX_DETECTIONS_PER_IMAGE = 100


@dataclass(frozen=True)
class BoxTable:
    """Boxes of a detection data set, one row each.

    Attributes:
        image_ids (ndarray[N] int64): image of each box.
        category_ids (ndarray[N] int64): dataset category of each box.
        boxes (ndarray[N, 4] float64): (x, y, width, height), absolute pixels.
        areas (ndarray[N] float64): the area used for the area range (COCO ``area`` field; width * height for
            detections).
        scores (ndarray[N] float64): detection confidence (ones for ground truth).
        is_crowd (ndarray[N] bool): crowd regions (ground truth only).
    """

    image_ids: np.ndarray
    category_ids: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray
    scores: np.ndarray
    is_crowd: np.ndarray

    def __len__(self) -> int:
        return len(self.image_ids)


@dataclass(frozen=True)
class DetectionMatches:
    """Per-detection outcome of matching at one IoU threshold.

    Attributes:
        category_ids (ndarray[D] int64): category of each evaluated detection.
        scores (ndarray[D] float64): its score.
        is_true_positive (ndarray[D] bool): matched to a non-ignored ground truth.
        is_ignored (ndarray[D] bool): matched to a crowd (ignored) region, or outside the area range unmatched.
        num_ground_truth (dict[int, int]): non-ignored ground truth per category id (every category that has
            ground truth or detections).
        order (ndarray[D] int64): index of each evaluated detection in the detections table. The rows are in
            COCOeval's accumulation order: category, image id, then score descending (ties in input order).
    """

    category_ids: np.ndarray
    scores: np.ndarray
    is_true_positive: np.ndarray
    is_ignored: np.ndarray
    num_ground_truth: dict[int, int]
    order: np.ndarray


def match_detections(
    ground_truth: BoxTable,
    detections: BoxTable,
    *,
    iou_threshold: float = 0.5,
    max_detections: int = MAX_DETECTIONS_PER_IMAGE,
) -> DetectionMatches:
    """Match detections to ground truth as COCOeval does at one IoU threshold (area "all").

    Args:
        ground_truth (BoxTable): ground-truth boxes (``is_crowd`` marks ignored regions).
        detections (BoxTable): detected boxes with scores.
        iou_threshold (float): a match needs IoU >= this value.
        max_detections (int): highest-scoring detections kept per image and category.

    Returns:
        DetectionMatches: one row per kept detection.
    """
    ground_truth_ignored = ground_truth.is_crowd | _outside_area_range(ground_truth.areas)
    ground_truth_groups = _group_ground_truth(ground_truth, ground_truth_ignored)
    order = _detections_in_evaluation_order(detections, max_detections)
    image_ids, category_ids = detections.image_ids[order], detections.category_ids[order]
    is_true_positive = np.zeros(len(order), dtype=bool)
    # Unmatched detections outside the area range are ignored; matched ones take their ground truth's flag.
    is_ignored = _outside_area_range(detections.areas[order])
    for start, stop in _group_bounds(image_ids, category_ids):
        group = ground_truth_groups.get((int(image_ids[start]), int(category_ids[start])))
        if group is None:
            continue
        matched_ground_truth = _greedy_match(ground_truth, group, detections.boxes[order[start:stop]], iou_threshold)
        has_match = matched_ground_truth >= 0
        matched_ignored = ground_truth_ignored[group][matched_ground_truth[has_match]]
        rows = np.arange(start, stop)[has_match]
        is_ignored[rows] = matched_ignored
        is_true_positive[rows] = ~matched_ignored
    return DetectionMatches(
        category_ids=detections.category_ids[order],
        scores=detections.scores[order],
        is_true_positive=is_true_positive,
        is_ignored=is_ignored,
        num_ground_truth=_count_ground_truth(ground_truth, ground_truth_ignored, detections),
        order=order,
    )


def precision_recall_curve(
    is_true_positive: np.ndarray, num_ground_truth: int
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each detection of a score-sorted list.

    Args:
        is_true_positive (ndarray[D] bool): detections sorted by score, descending; ignored ones removed.
        num_ground_truth (int): ground truth of the class (> 0).

    Returns:
        tuple[ndarray[D], ndarray[D]]: recall and precision.
    """
    true_positives = np.cumsum(is_true_positive, dtype=np.float64)
    ranks = np.arange(1, len(is_true_positive) + 1, dtype=np.float64)
    return true_positives / num_ground_truth, true_positives / ranks


def average_precision_11_point(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2007 11-point interpolated AP.

    Args:
        recall (ndarray[D]): non-decreasing recall after each detection.
        precision (ndarray[D]): precision after each detection.

    Returns:
        float: mean over r in {0, 0.1, ..., 1} of max(precision[recall >= r]) (0 where recall never reaches r).
    """
    total = 0.0
    for recall_level in np.arange(11) / 10:  # exact tenths, unlike np.arange(0, 1.1, 0.1)
        reached = recall >= recall_level
        total += float(precision[reached].max()) if reached.any() else 0.0
    return total / 11


def average_precision_all_points(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2010+ all-point AP: area under the monotone precision envelope.

    Args:
        recall (ndarray[D]): non-decreasing recall after each detection.
        precision (ndarray[D]): precision after each detection.

    Returns:
        float: sum over recall steps of (step width) * (highest precision at or beyond the step).
    """
    padded_recall = np.concatenate(([0.0], recall, [1.0]))
    envelope = np.concatenate(([0.0], precision, [0.0]))
    envelope = np.maximum.accumulate(envelope[::-1])[::-1]
    steps = np.flatnonzero(padded_recall[1:] != padded_recall[:-1])
    return float(np.sum((padded_recall[steps + 1] - padded_recall[steps]) * envelope[steps + 1]))


def voc_average_precision(matches: DetectionMatches) -> dict[int, tuple[float, float]]:
    """Per-class VOC AP from matched detections.

    Args:
        matches (DetectionMatches): output of :func:`match_detections`.

    Returns:
        dict[int, tuple[float, float]]: category id -> (11-point AP, all-point AP), for every category with
        ground truth.
    """
    kept = ~matches.is_ignored
    per_class = {}
    for category_id, num_ground_truth in sorted(matches.num_ground_truth.items()):
        if num_ground_truth == 0:
            continue
        in_class = kept & (matches.category_ids == category_id)
        by_score = np.argsort(-matches.scores[in_class], kind="mergesort")
        recall, precision = precision_recall_curve(matches.is_true_positive[in_class][by_score], num_ground_truth)
        per_class[category_id] = (average_precision_11_point(recall, precision),
                                  average_precision_all_points(recall, precision))
    return per_class


def voc_metrics(ground_truth: BoxTable, detections: BoxTable) -> dict[str, float]:
    """Mean VOC AP at IoU 0.5 over the classes with ground truth.

    Args:
        ground_truth (BoxTable): ground-truth boxes.
        detections (BoxTable): detected boxes with scores.

    Returns:
        dict[str, float]: ``VOC07_AP50`` (11-point) and ``VOC12_AP50`` (all-point); 0.0 without ground truth.
    """
    per_class = voc_average_precision(match_detections(ground_truth, detections))
    if not per_class:
        return {"VOC07_AP50": 0.0, "VOC12_AP50": 0.0}
    voc07, voc12 = np.mean(np.array(list(per_class.values())), axis=0)
    return {"VOC07_AP50": float(voc07), "VOC12_AP50": float(voc12)}


def _outside_area_range(areas: np.ndarray) -> np.ndarray:
    return (areas < AREA_RANGE_ALL[0]) | (areas > AREA_RANGE_ALL[1])


def _group_ground_truth(ground_truth: BoxTable, is_ignored: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    """(image id, category id) -> ground-truth rows, non-ignored first, else in input order (COCOeval's order)."""
    order = np.lexsort((np.arange(len(ground_truth)), is_ignored, ground_truth.category_ids, ground_truth.image_ids))
    keys = list(zip(ground_truth.image_ids[order].tolist(), ground_truth.category_ids[order].tolist()))
    groups: dict[tuple[int, int], list[int]] = {}
    for key, row in zip(keys, order.tolist()):
        groups.setdefault(key, []).append(row)
    return {key: np.array(rows, dtype=np.int64) for key, rows in groups.items()}


def _detections_in_evaluation_order(detections: BoxTable, max_detections: int) -> np.ndarray:
    """Rows sorted by (category, image, score desc, input order), top ``max_detections`` per image+category."""
    order = np.lexsort(
        (np.arange(len(detections)), -detections.scores, detections.image_ids, detections.category_ids)
    )
    bounds = np.array(_group_bounds(detections.image_ids[order], detections.category_ids[order]), dtype=np.int64)
    group_start = np.repeat(bounds[:, 0], bounds[:, 1] - bounds[:, 0]) if len(bounds) else np.zeros(0, np.int64)
    return order[np.arange(len(order)) - group_start < max_detections]


def coco_iou(boxes: np.ndarray, others: np.ndarray, *, crowd: bool = False) -> np.ndarray:
    """COCO IoU [D, G] of xywh boxes (pycocotools' ``maskUtils.iou``); with ``crowd`` the intersection over the
    area of each of ``boxes``, as COCOeval scores a detection against a crowd region."""
    if not len(boxes) or not len(others):
        return np.zeros((len(boxes), len(others)))
    return np.asarray(coco_mask.iou(np.asarray(boxes, np.float64).tolist(), np.asarray(others, np.float64).tolist(),
                                    [int(crowd)] * len(others)), dtype=np.float64).reshape(len(boxes), len(others))


def rows_by_image(image_ids: np.ndarray, kept: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """Image id -> the rows of a table with that image id (among ``kept`` rows, default all), in table order."""
    rows = np.arange(len(image_ids)) if kept is None else np.flatnonzero(kept)
    order = rows[np.argsort(image_ids[rows], kind="stable")]
    keys, starts = np.unique(image_ids[order], return_index=True)
    return {int(key): part for key, part in zip(keys.tolist(), np.split(order, starts[1:]))}


def _group_bounds(image_ids: np.ndarray, category_ids: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of equal (image id, category id) in sorted arrays."""
    if len(image_ids) == 0:
        return []
    changes = np.flatnonzero((image_ids[1:] != image_ids[:-1]) | (category_ids[1:] != category_ids[:-1])) + 1
    bounds = np.concatenate(([0], changes, [len(image_ids)])).tolist()
    return list(zip(bounds[:-1], bounds[1:]))


def _greedy_match(
    ground_truth: BoxTable, group: np.ndarray, detection_boxes: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """COCOeval.evaluateImg's matching loop for one image and category at one threshold.

    Args:
        ground_truth (BoxTable): all ground truth.
        group (ndarray[G] int64): rows of this image and category, non-ignored first.
        detection_boxes (ndarray[D, 4]): xywh, sorted by score descending.
        iou_threshold (float): minimum IoU.

    Returns:
        ndarray[D] int64: position in ``group`` of each detection's match, -1 if unmatched.
    """
    is_crowd = ground_truth.is_crowd[group].tolist()
    is_ignored = (ground_truth.is_crowd[group] | _outside_area_range(ground_truth.areas[group])).tolist()
    ious = np.asarray(coco_mask.iou(detection_boxes, ground_truth.boxes[group], is_crowd), dtype=np.float64)
    ious = ious.reshape(len(detection_boxes), len(group))
    threshold = min(iou_threshold, 1 - 1e-10)
    is_taken = [False] * len(group)
    matched = np.full(len(detection_boxes), -1, dtype=np.int64)
    for detection in np.flatnonzero((ious >= threshold).any(axis=1)).tolist():
        best_iou, best = threshold, -1
        for candidate, iou in enumerate(ious[detection].tolist()):
            if is_taken[candidate] and not is_crowd[candidate]:
                continue
            if best > -1 and not is_ignored[best] and is_ignored[candidate]:
                break  # a real match beats any ignored region
            if iou < best_iou:
                continue
            best_iou, best = iou, candidate
        if best > -1:
            is_taken[best] = True
            matched[detection] = best
    return matched


def _count_ground_truth(ground_truth: BoxTable, is_ignored: np.ndarray, detections: BoxTable) -> dict[int, int]:
    categories = np.union1d(ground_truth.category_ids, detections.category_ids).tolist()
    counted = ground_truth.category_ids[~is_ignored]
    return {category: int(np.count_nonzero(counted == category)) for category in categories}
