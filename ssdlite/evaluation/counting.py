"""The true counts of a video's objects crossing lines and inside zones, from its MOT ground truth: what
``ssdlite-detect --track --count-line / --count-zone`` (:class:`ssdlite_runtime.counting.Counter`) should count.

The rules are the counter's (the module docstring of :mod:`ssdlite_runtime.counting`), computed here from the
ground-truth boxes directly (numpy geometry, not supervision's zones), so that the two can be compared:

* a line: in a frame a track is on one side when all four corners of its box are strictly left of the line's
  direction as drawn (the cross product of the direction with corner - start is negative: the *in* side) or none
  is, and all four lie within the line's span (their projections on the line fall between its ends, those
  included); the first side seen is where the track starts, and every later change of side is a crossing, in
  (arriving on the left) or out, counted under the track's class;
* a zone: a track is inside when the bottom centre of its box, rounded to the pixel (``np.rint``), is a pixel
  OpenCV's ``fillPoly`` fills for the polygon; its first frame sets where it is, a change from outside to inside
  is an entry, from inside to outside an exit.

The ground truth keeps an object's id while it is hidden, so a track's side is kept across any gap here: the
counter does the same for ``forget_after`` frames (feed it the ground truth with ``forget_after`` at least the
sequence's length to get exactly these counts). A corner exactly on a perpendicular through a line's end is
decided by exact arithmetic here and by supervision's rounded unit vectors in the counter: only a diagonal line can
tell them apart.

Ground truth: a MOT Challenge ``gt.txt`` with the class in column 8 (``frame,id,x,y,w,h,consider,class,...``, as
:mod:`ssdlite.data.synthetic_video` writes it); every line counts, don't-care ones too (they are the visible part of
an object, as a detector sees it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ssdlite_runtime.counting import CountLine, CountZone

__all__ = ["read_ground_truth_boxes", "true_counts"]


def read_ground_truth_boxes(path: str | Path) -> dict[str, np.ndarray]:
    """The boxes of a MOT ground-truth file with classes: ``frames`` int64 [N] (from 1), ``track_ids`` int64 [N],
    ``boxes`` float64 [N, 4] xyxy pixels, ``labels`` int64 [N] (column 8), in the file's order.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line with fewer than 8 columns (no class), or one that is not numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground truth file not found: {path}")
    try:
        table = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError as error:
        raise ValueError(f"{path} is not MOT ground truth (comma-separated numbers): {error}") from None
    if table.size == 0:
        table = np.zeros((0, 8))
    if table.shape[1] < 8:
        raise ValueError(f"{path}: counting needs the class in column 8 (frame,id,x,y,w,h,consider,class), "
                         f"found {table.shape[1]} columns")
    x, y, w, h = table[:, 2:6].T
    return {
        "frames": table[:, 0].astype(np.int64),
        "track_ids": table[:, 1].astype(np.int64),
        "boxes": np.stack([x, y, x + w, y + h], axis=1),
        "labels": table[:, 7].astype(np.int64),
    }


def true_counts(
    ground_truth: str | Path | dict[str, np.ndarray],
    *,
    lines: Sequence[CountLine] = (),
    zones: Sequence[CountZone] = (),
    class_names: Sequence[str] = (),
    num_frames: int | None = None,
) -> dict[str, Any]:
    """The counts the ground truth's tracks make (see the module docstring), in the layout of
    :meth:`ssdlite_runtime.counting.Counter.totals`.

    Args:
        ground_truth: a ``gt.txt`` path, or :func:`read_ground_truth_boxes`' result.
        lines, zones: what to count, as given to the counter.
        class_names: names of labels 1..K (an unnamed label is ``class N``).
        num_frames: the sequence's length (a zone's ``inside`` is of its last frame); None: the last frame with a
            box.

    Returns:
        ``{"frames", "lines": [{"name", "points", "in", "out"}], "zones": [{"name", "corners", "inside",
        "entered", "exited"}]}``, counts per class name in label order, classes without a count left out.
    """
    boxes = read_ground_truth_boxes(ground_truth) if isinstance(ground_truth, (str, Path)) else ground_truth
    order = np.lexsort((boxes["frames"], boxes["track_ids"]))  # by track, then frame
    frames, ids = boxes["frames"][order], boxes["track_ids"][order]
    xyxy, labels = np.asarray(boxes["boxes"], np.float64)[order], boxes["labels"][order]
    last_frame = int(frames.max(initial=0)) if num_frames is None else int(num_frames)

    def named(per_label: dict[int, int]) -> dict[str, int]:
        return {(class_names[label - 1] if 1 <= label <= len(class_names) else f"class {label}"): count
                for label, count in sorted(per_label.items()) if count}

    result: dict[str, Any] = {"frames": last_frame, "lines": [], "zones": []}
    for index, line in enumerate(lines, 1):
        sides = _line_sides(line, xyxy)
        crossed_in, crossed_out = _changes(ids, sides, labels)
        result["lines"].append({"name": f"line {index}", "points": line.points, "in": named(crossed_in),
                                "out": named(crossed_out)})
    for index, zone in enumerate(zones, 1):
        inside = _zone_inside(zone, xyxy)
        entered, exited = _changes(ids, inside.astype(np.int8), labels)
        inside_at_end: dict[int, int] = {}
        for label in labels[(frames == last_frame) & inside].tolist():
            inside_at_end[label] = inside_at_end.get(label, 0) + 1
        result["zones"].append({"name": f"zone {index}", "corners": [list(corner) for corner in zone.corners],
                                "inside": named(inside_at_end), "entered": named(entered), "exited": named(exited)})
    return result


def _line_sides(line: CountLine, xyxy: np.ndarray) -> np.ndarray:
    """int8 [N]: 1 every corner on the left of the line (the in side), 0 every corner on the right, -1 neither
    (straddling) or a corner beyond the line's span."""
    dx, dy = line.x2 - line.x1, line.y2 - line.y1
    corners_x = xyxy[:, [0, 2, 0, 2]]
    corners_y = xyxy[:, [1, 1, 3, 3]]
    cross = dx * (corners_y - line.y1) - dy * (corners_x - line.x1)
    along = dx * (corners_x - line.x1) + dy * (corners_y - line.y1)
    within = ((along >= 0) & (along <= dx * dx + dy * dy)).all(axis=1)
    left = cross < 0
    sides = np.full(len(xyxy), -1, np.int8)
    sides[within & left.all(axis=1)] = 1
    sides[within & ~left.any(axis=1)] = 0
    return sides


def _zone_inside(zone: CountZone, xyxy: np.ndarray) -> np.ndarray:
    """bool [N]: the bottom centre of each box, rounded, is a pixel the polygon fills."""
    corners = np.array(zone.corners, np.int32)
    width, height = corners.max(axis=0) + 1
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [corners.reshape(-1, 1, 2)], 1)
    x = np.rint((xyxy[:, 0] + xyxy[:, 2]) / 2.0).astype(np.int64)
    y = np.rint(xyxy[:, 3]).astype(np.int64)
    in_bounds = (x >= 0) & (y >= 0) & (x < width) & (y < height)
    inside = np.zeros(len(xyxy), bool)
    inside[in_bounds] = mask[y[in_bounds], x[in_bounds]] == 1
    return inside


def _changes(ids: np.ndarray, states: np.ndarray, labels: np.ndarray) -> tuple[dict[int, int], dict[int, int]]:
    """Per label, how often a track's state (rows sorted by track, then frame; -1: unknown that frame) changed to
    1 and to 0, the first known state of each track being its start."""
    to_one: dict[int, int] = {}
    to_zero: dict[int, int] = {}
    previous_id, previous_state = None, -1
    for track_id, state, label in zip(ids.tolist(), states.tolist(), labels.tolist()):
        if track_id != previous_id:
            previous_id, previous_state = track_id, -1
        if state == -1:
            continue
        if previous_state != -1 and state != previous_state:
            target = to_one if state == 1 else to_zero
            target[label] = target.get(label, 0) + 1
        previous_state = state
    return to_one, to_zero
