"""Where a detector fails: TIDE's error breakdown (Bolya et al., "TIDE: A General Toolbox for Identifying Object
Detection Errors", ECCV 2020) and the outcome of every detection, which the error gallery draws.

Matching, per image, as TIDE matches boxes: the detections (at most 100 per image, by score) take, greedily by
score, the unmatched ground truth of their class with the highest IoU >= 0.5; a detection left over that covers a
crowd region of its class by more than 0.5 (intersection over its own area) is ignored. Every other detection left
over is one error, the first of these that fits (TIDE's order):

* ``Loc`` (localisation): 0.1 <= IoU <= 0.5 with a ground truth of its class;
* ``Cls`` (classification): IoU >= 0.5 with a ground truth of another class;
* ``Dupe`` (duplicate): IoU >= 0.5 with a ground truth of its class that a higher-scored detection took;
* ``Bkg`` (background): IoU <= 0.1 with every ground truth;
* ``Both``: anything else (the wrong class and a poor box).

A ground truth that no detection took and that no ``Cls`` or ``Loc`` error points at is ``Miss`` (missed).

The dAP of a type is the AP at IoU 0.5 gained when its errors alone are fixed: a ``Cls`` or ``Loc`` error becomes a
true positive (of the ground truth's class for ``Cls``) when it is the highest-scored such error of a ground truth
no detection took, and is dropped otherwise; ``Dupe``, ``Bkg`` and ``Both`` are dropped; a missed ground truth is
taken out of the count. AP here is TIDE's: per class, 101 recall points, mean over the classes that have ground
truth or detections (a class with detections and no ground truth counts as 0), so it can differ from COCO's AP50 in
the last digit. ``tests/evaluation/test_errors.py`` checks the numbers against the ``tidecv`` package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ssdlite.evaluation.voc import BoxTable, coco_iou, precision_recall_curve, rows_by_image

ERROR_TYPES = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")
"""TIDE's six main error types, in its order."""
ERROR_NAMES = {
    "Cls": "classification",
    "Loc": "localisation",
    "Both": "class and box",
    "Dupe": "duplicate",
    "Bkg": "background",
    "Miss": "missed",
}
TRUE_POSITIVE = "TP"
COLOURS = {
    TRUE_POSITIVE: "#2ca02c",
    "Cls": "#ff7f0e",
    "Loc": "#d62728",
    "Both": "#9467bd",
    "Dupe": "#e377c2",
    "Bkg": "#8c564b",
    "Miss": "#1f77b4",
}
"""One colour per outcome, shared by the error plot and the error gallery."""
POSITIVE_IOU = 0.5
BACKGROUND_IOU = 0.1
MAX_DETECTIONS_PER_IMAGE = 100
RECALL_POINTS = np.arange(101) / 100
_FIXABLE = ("Cls", "Loc")


@dataclass
class Outcomes:
    """What became of every evaluated detection and ground truth.

    Attributes:
        detection_rows: rows of the detection table that were evaluated (at most 100 per image), image by image in
            the order of ``image_ids``, by score within an image.
        outcome: per evaluated detection, ``"TP"`` or its error type.
        ground_truth_rows: per evaluated detection, the ground truth it took (``TP``) or its error points at
            (``Cls``, ``Loc``, ``Dupe``); -1 otherwise.
        ignored: per evaluated detection, a left-over detection on a crowd region of its class (counted in no AP).
        fixes: per evaluated detection, a ``Cls``/``Loc`` error that becomes a true positive when fixed.
        missed_rows: the ground-truth rows of the ``Miss`` errors.
        num_ground_truth: non-crowd ground truth per category id.
    """

    detection_rows: np.ndarray
    outcome: np.ndarray
    ground_truth_rows: np.ndarray
    ignored: np.ndarray
    fixes: np.ndarray
    missed_rows: np.ndarray
    num_ground_truth: dict[int, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Errors of each type, ``ERROR_TYPES`` order."""
        counts = {name: int(np.sum(self.outcome == name)) for name in ERROR_TYPES}
        counts["Miss"] = len(self.missed_rows)
        return counts


@dataclass(frozen=True)
class ErrorBreakdown:
    """TIDE's summary of one evaluation.

    Attributes:
        ap50: AP at IoU 0.5, TIDE's way (0 to 1).
        delta_ap: error type -> the AP gained by fixing its errors (0 to 1; never negative).
        counts: error type -> how many errors.
        false_positive_ap, false_negative_ap: the AP gained with every false positive scored below every true
            positive, and with every missed ground truth found (TIDE's "special" errors).
    """

    ap50: float
    delta_ap: dict[str, float]
    counts: dict[str, int]
    false_positive_ap: float
    false_negative_ap: float

    def as_dict(self) -> dict[str, object]:
        """For metrics.json."""
        return {"AP50": self.ap50, "dAP": dict(self.delta_ap), "counts": dict(self.counts),
                "dAP_false_positives": self.false_positive_ap, "dAP_false_negatives": self.false_negative_ap}

    def table(self) -> str:
        """The report's lines: one row per type with its dAP and its count (every detection counted, as TIDE
        counts them, down to the evaluation's score threshold)."""
        lines = [f" Errors (TIDE, AP50 {self.ap50:0.3f}): the AP50 gained if each type were fixed",
                 f"   {'type':<15} {'dAP':>5}  {'errors':>6}"]
        lines += [f"   {ERROR_NAMES[name]:<15} {_three_digits(self.delta_ap[name])}  {self.counts[name]:>6d}"
                  for name in ERROR_TYPES]
        lines.append(f"   all false positives {_three_digits(self.false_positive_ap)}, all false negatives "
                     f"{_three_digits(self.false_negative_ap)}")
        return "\n".join(lines)


def _three_digits(value: float) -> str:
    """0.123; a rounding error's -0.000 as 0.000."""
    return f"{round(value, 3) + 0.0:0.3f}"


def analyse_detections(
    ground_truth: BoxTable,
    detections: BoxTable,
    image_ids: Sequence[int],
    *,
    max_detections: int = MAX_DETECTIONS_PER_IMAGE,
) -> Outcomes:
    """Match and classify the detections of ``image_ids`` (see the module docstring); other images are left out."""
    truths_of, detections_of = rows_by_image(ground_truth.image_ids), rows_by_image(detections.image_ids)
    empty = np.zeros(0, dtype=np.int64)
    parts: list[Outcomes] = []
    for image_id in image_ids:
        truth_rows = truths_of.get(int(image_id), empty)
        detection_rows = detections_of.get(int(image_id), empty)
        by_score = np.argsort(-detections.scores[detection_rows], kind="stable")[:max_detections]
        parts.append(_analyse_image(ground_truth, detections, truth_rows, detection_rows[by_score]))
    non_crowd = ~ground_truth.is_crowd & np.isin(ground_truth.image_ids, np.asarray(image_ids, dtype=np.int64))
    return Outcomes(
        detection_rows=_joined([part.detection_rows for part in parts], np.int64),
        outcome=_joined([part.outcome for part in parts], "<U4"),
        ground_truth_rows=_joined([part.ground_truth_rows for part in parts], np.int64),
        ignored=_joined([part.ignored for part in parts], bool),
        fixes=_joined([part.fixes for part in parts], bool),
        missed_rows=_joined([part.missed_rows for part in parts], np.int64),
        num_ground_truth=_category_counts(ground_truth.category_ids[non_crowd]),
    )


def error_breakdown(ground_truth: BoxTable, detections: BoxTable, image_ids: Sequence[int]) -> ErrorBreakdown:
    """TIDE's dAP of each error type, and of all false positives and false negatives."""
    outcomes = analyse_detections(ground_truth, detections, image_ids)
    scores = detections.scores[outcomes.detection_rows]
    counted = ~outcomes.ignored
    is_true = outcomes.outcome == TRUE_POSITIVE
    base = _mean_ap(detections.category_ids[outcomes.detection_rows][counted], scores[counted], is_true[counted],
                    outcomes.num_ground_truth)
    delta_ap = {}
    for name in ERROR_TYPES:
        categories, rows, fixed_true, num_ground_truth = _fixed_points(outcomes, name, ground_truth, detections)
        delta_ap[name] = max(_mean_ap(categories, scores[rows], fixed_true, num_ground_truth) - base, 0.0)
    categories, rows, as_is, num_ground_truth = _fixed_points(outcomes, None, ground_truth, detections)
    false_positive_ap = _mean_ap(categories, as_is.astype(np.float64), as_is, num_ground_truth) - base
    all_found = {category: count - _not_taken(outcomes, ground_truth).get(category, 0)
                 for category, count in num_ground_truth.items()}
    false_negative_ap = _mean_ap(categories, scores[rows], as_is, all_found) - base
    return ErrorBreakdown(ap50=base, delta_ap=delta_ap, counts=outcomes.counts(),
                          false_positive_ap=false_positive_ap, false_negative_ap=false_negative_ap)


def _analyse_image(
    ground_truth: BoxTable, detections: BoxTable, truth_rows: np.ndarray, detection_rows: np.ndarray
) -> Outcomes:
    crowd = ground_truth.is_crowd[truth_rows]
    regions, truth_rows = truth_rows[crowd], truth_rows[~crowd]
    count, truth_count = len(detection_rows), len(truth_rows)
    outcome = np.full(count, "Bkg", dtype="<U4")
    pointed = np.full(count, -1, dtype=np.int64)
    ignored, fixes = np.zeros(count, dtype=bool), np.zeros(count, dtype=bool)
    if count == 0:
        return Outcomes(detection_rows, outcome, pointed, ignored, fixes, truth_rows)
    taken = np.zeros(truth_count, dtype=bool)
    if truth_count:
        iou = coco_iou(detections.boxes[detection_rows], ground_truth.boxes[truth_rows], crowd=False)
        same_class = detections.category_ids[detection_rows][:, None] == ground_truth.category_ids[truth_rows][None]
        matched = _greedy_match(iou * same_class)
        taken[matched[matched >= 0]] = True
        outcome[matched >= 0] = TRUE_POSITIVE
        pointed[matched >= 0] = matched[matched >= 0]
    ignored = (outcome != TRUE_POSITIVE) & _on_crowd_region(ground_truth, detections, regions, detection_rows)
    if truth_count:
        _classify_errors(outcome, pointed, iou, same_class, taken)
        fixes = _best_fixes(outcome, pointed, taken)
    usable = np.zeros(truth_count, dtype=bool)
    fixable = np.isin(outcome, _FIXABLE) & (pointed >= 0)
    usable[pointed[fixable]] = True
    usable &= ~taken
    pointed_rows = np.where(pointed >= 0, truth_rows[np.maximum(pointed, 0)] if truth_count else -1, -1)
    return Outcomes(detection_rows, outcome, pointed_rows, ignored, fixes, truth_rows[~taken & ~usable])


def _greedy_match(class_iou: np.ndarray) -> np.ndarray:
    """Per detection (score order), the index of the unmatched ground truth of highest class IoU >= 0.5, or -1."""
    buffer = class_iou.copy()
    matched = np.full(len(buffer), -1, dtype=np.int64)
    for index, row in enumerate(buffer):
        best = int(row.argmax())
        if row[best] >= POSITIVE_IOU:
            matched[index] = best
            buffer[:, best] = 0.0
    return matched


def _classify_errors(
    outcome: np.ndarray, pointed: np.ndarray, iou: np.ndarray, same_class: np.ndarray, taken: np.ndarray
) -> None:
    """Fills ``outcome`` and ``pointed`` of the left-over detections, in TIDE's order of tests."""
    class_iou, other_iou = iou * same_class, iou * ~same_class
    taken_iou = class_iou * taken[None]
    tests = (
        ("Loc", class_iou, (class_iou.max(1) >= BACKGROUND_IOU) & (class_iou.max(1) <= POSITIVE_IOU)),
        ("Cls", other_iou, other_iou.max(1) >= POSITIVE_IOU),
        ("Dupe", taken_iou, taken_iou.max(1) >= POSITIVE_IOU),
        ("Bkg", None, iou.max(1) <= BACKGROUND_IOU),
    )
    open_rows = outcome != TRUE_POSITIVE
    outcome[open_rows] = "Both"
    for name, table, passes in tests:
        hit = open_rows & passes
        outcome[hit] = name
        if table is not None:
            pointed[hit] = table[hit].argmax(1)
        open_rows &= ~hit


def _best_fixes(outcome: np.ndarray, pointed: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """The ``Cls``/``Loc`` errors that a fix turns into true positives: per ground truth no detection took, the
    first (highest-scored) error that points at it."""
    fixes = np.zeros(len(outcome), dtype=bool)
    candidates = np.flatnonzero(np.isin(outcome, _FIXABLE))
    candidates = candidates[~taken[pointed[candidates]]]
    _, first = np.unique(pointed[candidates], return_index=True)
    fixes[candidates[first]] = True
    return fixes


def _on_crowd_region(
    ground_truth: BoxTable, detections: BoxTable, regions: np.ndarray, detection_rows: np.ndarray
) -> np.ndarray:
    if not len(regions):
        return np.zeros(len(detection_rows), dtype=bool)
    cover = coco_iou(detections.boxes[detection_rows], ground_truth.boxes[regions], crowd=True)
    same_class = detections.category_ids[detection_rows][:, None] == ground_truth.category_ids[regions][None]
    return ((cover > POSITIVE_IOU) & same_class).any(1)


def _fixed_points(
    outcomes: Outcomes, name: str | None, ground_truth: BoxTable, detections: BoxTable
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, int]]:
    """The AP data with the errors of type ``name`` fixed (None: none), in TIDE's order, the errors first and then
    the true positives: the category of each point, its row among the evaluated detections, whether it is true,
    and the ground-truth count per category."""
    is_error = outcomes.outcome != TRUE_POSITIVE
    fixed = is_error & (outcomes.outcome == name)
    made_true = fixed & outcomes.fixes
    error_rows = np.flatnonzero((is_error & ~fixed & ~outcomes.ignored) | made_true)
    true_rows = np.flatnonzero(~is_error & ~outcomes.ignored)
    rows = np.concatenate([error_rows, true_rows])
    categories = detections.category_ids[outcomes.detection_rows[rows]]
    moved = made_true[rows] & (outcomes.outcome[rows] == "Cls")
    categories[moved] = ground_truth.category_ids[outcomes.ground_truth_rows[rows][moved]]
    is_true = np.concatenate([made_true[error_rows], np.ones(len(true_rows), dtype=bool)])
    num_ground_truth = dict(outcomes.num_ground_truth)
    if name == "Miss":
        for category, count in _category_counts(ground_truth.category_ids[outcomes.missed_rows]).items():
            num_ground_truth[category] -= count
    return categories, rows, is_true, num_ground_truth


def _not_taken(outcomes: Outcomes, ground_truth: BoxTable) -> dict[int, int]:
    """Non-crowd ground truth per category that no detection took (TIDE's false negatives)."""
    taken = _category_counts(ground_truth.category_ids[outcomes.ground_truth_rows[outcomes.outcome == TRUE_POSITIVE]])
    return {category: count - taken.get(category, 0) for category, count in outcomes.num_ground_truth.items()}


def _category_counts(category_ids: np.ndarray) -> dict[int, int]:
    categories, counts = np.unique(category_ids, return_counts=True)
    return dict(zip(categories.tolist(), counts.tolist()))


def _mean_ap(
    categories: np.ndarray, scores: np.ndarray, is_true: np.ndarray, num_ground_truth: Mapping[int, int]
) -> float:
    """TIDE's mAP at one IoU: per class, precision at 101 recall points of the score-sorted points (ties in the
    given order), over the classes with points or ground truth."""
    taking_part = {c for c, n in num_ground_truth.items() if n > 0} | set(np.unique(categories).tolist())
    aps = []
    for category in sorted(taking_part):
        count = num_ground_truth.get(category, 0)
        in_class = categories == category
        if count <= 0:
            aps.append(0.0)
            continue
        order = np.argsort(-scores[in_class], kind="stable")
        recall, precision = precision_recall_curve(is_true[in_class][order], count)
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        at = np.searchsorted(recall, RECALL_POINTS, side="left")
        aps.append(float(np.where(at < len(precision), precision[np.minimum(at, len(precision) - 1)], 0.0).mean()
                         if len(precision) else 0.0))
    return float(np.mean(aps)) if aps else 0.0


def _joined(parts: list[np.ndarray], dtype: object) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)
