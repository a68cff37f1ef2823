"""Counting tracked objects: crossings of lines (in and out) and the tracks inside polygon zones (entered, left),
per class, with supervision's ``LineZone`` and ``PolygonZone`` (Roboflow, MIT; the ``tracking`` extra).

:class:`Counter` takes each frame's tracks (a :class:`ssdlite_runtime.tracking.Tracker` result: ``boxes``,
``labels``, ``track_ids``), returns that frame's counts as a JSON-ready dict (what ``ssdlite-detect --json x.jsonl``
writes as each frame's ``counts``), draws the lines, zones and counts on the frame, and keeps the totals.

The rules (the anchors are supervision's defaults, which ``ssdlite-detect`` does not change):

* **A line** ``x1,y1,x2,y2`` (``--count-line``; ``sv.LineZone``, anchors: the box's four corners). In a frame a
  track is on one side of the line when all four corners of its box are on that side and within the line's span
  (between the perpendiculars through its two ends, those included); a frame where the box straddles the line or
  reaches past an end says nothing. The first side a track is seen on is where it starts; each time it is then seen
  on the other side, it has crossed: *in* when it arrives on the left of the direction (x1, y1) -> (x2, y2) as
  drawn on the image (y pointing down), *out* when it arrives on the right; a corner exactly on the line counts as
  on the right. For ``0,240,640,240`` (drawn left to right) in is upwards; swap the ends to swap in and out. The
  crossing is counted under the track's class in that frame. A box must pass the line whole to count, so a box
  jittering on the line counts nothing.
* **A zone** ``x1,y1,x2,y2,x3,y3,...`` (``--count-zone``; ``sv.PolygonZone``, anchor: the bottom centre of the box,
  rounded to the pixel). A track is inside in a frame when that pixel is one OpenCV fills for the polygon (its edges
  included). Each frame has the tracks inside, per class; a track seen outside and then inside has *entered*, seen
  inside and then outside has *exited*. The first frame a track is seen only sets where it is: a track that
  appears inside has not entered, and one that disappears inside has not exited.
* **Memory**: a track unseen for up to ``forget_after`` frames keeps the side of each line and the inside or outside
  of each zone it was last seen on, so a track that ByteTrack loses for a few frames while it crosses is counted
  when it comes back with its id (``ssdlite-detect`` passes the tracker's own memory,
  :attr:`ssdlite_runtime.tracking.Tracker.lost_track_frames`). ``sv.LineZone`` itself forgets a track after two
  frames without it; the counter shows it each missing track's last box for the frames between, which cannot make
  a crossing (the same box is on the same side).

Classes are the track's labels 1..K, named by ``class_names`` (``class_names[label - 1]``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ssdlite_runtime.plugins import require
from ssdlite_runtime.visualize import draw_label, label_size

__all__ = [
    "DEFAULT_FORGET_AFTER",
    "MAX_COORDINATE",
    "CountLine",
    "CountZone",
    "Counter",
    "describe_totals",
    "per_class_text",
]

INSTALL_HINT = "pip install 'ssdlite-runtime[tracking]' (supervision>=0.30,<0.31)"
DEFAULT_FORGET_AFTER = 31
"""Frames a track may go unseen and keep its sides (see the module docstring): what a ``Tracker`` with
supervision's default settings keeps a lost track for (``Tracker().lost_track_frames``)."""
MAX_COORDINATE = 10_000
"""Largest pixel coordinate of a line's end or a zone's corner (a zone's mask is as large as its corners reach)."""
LINE_COLOR = (255, 255, 255)
"""RGB of the lines and zones drawn on the frame (with a black outline, so they show on any background)."""
_OUTLINE = (0, 0, 0)
_LABEL_BACKGROUND = (24, 24, 24)


def _numbers(text: str, what: str, example: str) -> list[float]:
    try:
        values = [float(part) for part in text.replace(" ", "").split(",")]
    except ValueError:
        raise ValueError(f"give {what} as comma-separated numbers, e.g. {example}; got {text!r}") from None
    for value in values:
        if not math.isfinite(value) or abs(value) > MAX_COORDINATE:
            raise ValueError(f"pixel coordinates must be finite and at most {MAX_COORDINATE} in size; got {text!r}")
    return values


@dataclass(frozen=True)
class CountLine:
    """A counting line from (x1, y1) to (x2, y2), image pixels; in is to the left of that direction (see the
    module docstring)."""

    x1: float
    y1: float
    x2: float
    y2: float

    def __post_init__(self) -> None:
        if (self.x1, self.y1) == (self.x2, self.y2):
            raise ValueError(f"a counting line needs two different ends; got {self.x1:g},{self.y1:g} twice")

    @classmethod
    def parse(cls, text: str) -> CountLine:
        """``"x1,y1,x2,y2"`` -> CountLine.

        Raises:
            ValueError: not 4 numbers, a coordinate beyond :data:`MAX_COORDINATE`, or the two ends the same.
        """
        values = _numbers(text, "the line's ends x1,y1,x2,y2", "0,240,640,240")
        if len(values) != 4:
            raise ValueError(f"give 4 numbers x1,y1,x2,y2 (the line's ends, in pixels), e.g. 0,240,640,240; "
                             f"got {len(values)} in {text!r}")
        return cls(*values)

    @property
    def points(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2]

    def describe(self) -> str:
        """``0,240 -> 640,240``"""
        return f"{self.x1:g},{self.y1:g} -> {self.x2:g},{self.y2:g}"


@dataclass(frozen=True)
class CountZone:
    """A counting zone: a polygon of at least 3 corners (x, y), whole pixels >= 0."""

    corners: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if len(self.corners) < 3:
            raise ValueError(f"a counting zone needs at least 3 corners (a polygon), e.g. 100,100,300,100,300,300; "
                             f"got {len(self.corners)}")
        if any(x < 0 or y < 0 for x, y in self.corners):
            raise ValueError(f"a zone's corners are pixels of the frame, 0 or more; got {self.describe()}")
        xs, ys = np.array(self.corners, np.float64).T
        if abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))) == 0:  # shoelace: twice the area
            raise ValueError(f"the zone {self.describe()} has no area (its corners are on one line)")

    @classmethod
    def parse(cls, text: str) -> CountZone:
        """``"x1,y1,x2,y2,x3,y3,..."`` -> CountZone (coordinates rounded to whole pixels).

        Raises:
            ValueError: an odd count of numbers, fewer than 3 corners, a negative coordinate or one beyond
                :data:`MAX_COORDINATE`, or corners on one line.
        """
        values = _numbers(text, "the zone's corners x1,y1,x2,y2,x3,y3,...", "100,100,300,100,300,300")
        if len(values) % 2:
            raise ValueError(f"give the zone's corners as x,y pairs, e.g. 100,100,300,100,300,300; got "
                             f"{len(values)} numbers in {text!r}")
        corners = tuple((round(x), round(y)) for x, y in zip(values[0::2], values[1::2]))
        return cls(corners)

    def describe(self) -> str:
        """``100,100 300,100 300,300``"""
        return " ".join(f"{x},{y}" for x, y in self.corners)


class Counter:
    """Counts tracks crossing lines and inside zones, per class (see the module docstring for the rules).

    Args:
        lines: the counting lines, named ``line 1``, ``line 2``, ... in this order.
        zones: the counting zones, named ``zone 1``, ...
        class_names: names of labels 1..K (an unnamed label is ``class N``).
        forget_after: frames (>= 1) a track may go unseen and keep its sides; the tracker's memory (track ids are
            not used again, so a longer memory changes no count, it only holds more boxes).

    Raises:
        MissingPackageError: supervision is not installed.
        ValueError: ``forget_after`` < 1.

    Example::

        counter = Counter([CountLine.parse("0,240,640,240")], class_names=predictor.class_names)
        for frame in frames:
            tracks = tracker.update(predictor.predict(frame)[0])
            counts = counter.update(tracks)  # {"lines": [{"name": "line 1", "in": {"person": 2}, ...}], "zones": []}
            counter.draw(frame)
        counter.totals()
    """

    def __init__(
        self,
        lines: Sequence[CountLine] = (),
        zones: Sequence[CountZone] = (),
        *,
        class_names: Sequence[str] = (),
        forget_after: int = DEFAULT_FORGET_AFTER,
    ) -> None:
        if int(forget_after) != forget_after or forget_after < 1:
            raise ValueError(f"forget_after must be a whole number of frames >= 1, got {forget_after}")
        require(["supervision"], needed_by="counting (--count-line, --count-zone)", install=INSTALL_HINT)
        import supervision as sv

        self.lines, self.zones = list(lines), list(zones)
        self.class_names = list(class_names)
        self.forget_after = int(forget_after)
        self._line_zones = [sv.LineZone(start=sv.Point(line.x1, line.y1), end=sv.Point(line.x2, line.y2))
                            for line in self.lines]
        self._polygon_zones = [sv.PolygonZone(np.array(zone.corners, np.int64)) for zone in self.zones]
        self.frames = 0
        self._last_seen: dict[int, int] = {}  # track id -> frame it was last seen in
        self._last_box: dict[int, tuple[np.ndarray, int]] = {}  # track id -> (its last box, its label then)
        self._inside: list[dict[int, bool]] = [{} for _ in self.zones]  # per zone: track id -> inside when last seen
        self._entered: list[dict[int, int]] = [{} for _ in self.zones]  # per zone: label -> entries
        self._exited: list[dict[int, int]] = [{} for _ in self.zones]
        self.latest: dict[str, Any] | None = None
        """The counts of the last frame :meth:`update` took (None before the first)."""
        self._latest_inside: list[dict[int, int]] = [{} for _ in self.zones]

    def update(self, tracks: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Count one frame's tracks (call it for every frame, an empty one too, so that lost tracks age).

        Args:
            tracks: ``boxes`` float [T, 4] xyxy pixels, ``labels`` int [T], ``track_ids`` int [T] (a
                ``Tracker.update`` result).

        Returns:
            This frame's counts: ``{"lines": [...], "zones": [...]}``, one entry per line: ``{"name": "line 1",
            "in": {class name: count so far}, "out": {...}, "this_frame": {"in": [track ids that crossed in this
            frame], "out": [...]}}``, and per zone: ``{"name": "zone 1", "inside": {class name: tracks inside
            now}, "entered": {class name: count so far}, "exited": {...}, "this_frame": {"inside": [track ids],
            "entered": [...], "exited": [...]}}``. Classes with no count are left out.
        """
        import supervision as sv

        boxes = np.asarray(tracks["boxes"], dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(tracks["labels"], dtype=np.int64).reshape(-1)
        ids = np.asarray(tracks["track_ids"], dtype=np.int64).reshape(-1)
        self.frames += 1
        self._forget_unseen()
        present = sv.Detections(xyxy=boxes, class_id=labels, tracker_id=ids)
        frame = {"lines": [self._count_line(index, present) for index in range(len(self.lines))],
                 "zones": [self._count_zone(index, present) for index in range(len(self.zones))]}
        for track_id, box, label in zip(ids.tolist(), boxes, labels.tolist()):
            self._last_seen[track_id] = self.frames
            self._last_box[track_id] = (box.copy(), label)
        self.latest = frame
        return frame

    def _forget_unseen(self) -> None:
        """Drops the tracks unseen for more than ``forget_after`` frames before this one."""
        stale = [track_id for track_id, seen in self._last_seen.items() if self.frames - seen - 1 > self.forget_after]
        for track_id in stale:
            del self._last_seen[track_id], self._last_box[track_id]
            for inside in self._inside:
                inside.pop(track_id, None)

    def _with_missing_tracks(self, present: Any) -> Any:
        """``present`` and the last box of each remembered track missing from it, for ``sv.LineZone``, which keeps
        a track's side through one missing frame itself: shown for ``forget_after - 1`` frames, the boxes make
        it keep the side for ``forget_after``."""
        import supervision as sv

        here = set(present.tracker_id.tolist())
        missing = [track_id for track_id, seen in self._last_seen.items()
                   if track_id not in here and self.frames - seen < self.forget_after]
        if not missing:
            return present
        boxes = np.stack([self._last_box[track_id][0] for track_id in missing])
        labels = np.array([self._last_box[track_id][1] for track_id in missing], np.int64)
        shown = sv.Detections(xyxy=boxes, class_id=labels, tracker_id=np.array(missing, np.int64))
        return sv.Detections.merge([present, shown]) if len(present) else shown

    def _count_line(self, index: int, present: Any) -> dict[str, Any]:
        line_zone = self._line_zones[index]
        crossed_in, crossed_out = line_zone.trigger(self._with_missing_tracks(present))
        shown = len(present)  # a missing track's last box cannot cross (see _with_missing_tracks)
        return {
            "name": f"line {index + 1}",
            "in": self._named(line_zone.in_count_per_class),
            "out": self._named(line_zone.out_count_per_class),
            "this_frame": {"in": present.tracker_id[crossed_in[:shown]].tolist(),
                           "out": present.tracker_id[crossed_out[:shown]].tolist()},
        }

    def _count_zone(self, index: int, present: Any) -> dict[str, Any]:
        inside_now = self._polygon_zones[index].trigger(present) if len(present) else np.zeros(0, bool)
        was_inside, entered, exited = self._inside[index], self._entered[index], self._exited[index]
        inside_by_class: dict[int, int] = {}
        this_frame: dict[str, list[int]] = {"inside": [], "entered": [], "exited": []}
        for track_id, label, inside in zip(present.tracker_id.tolist(), present.class_id.tolist(),
                                           inside_now.tolist()):
            before = was_inside.get(track_id)
            if before is not None and before != inside:
                (entered if inside else exited)[label] = (entered if inside else exited).get(label, 0) + 1
                this_frame["entered" if inside else "exited"].append(track_id)
            was_inside[track_id] = inside
            if inside:
                inside_by_class[label] = inside_by_class.get(label, 0) + 1
                this_frame["inside"].append(track_id)
        self._latest_inside[index] = inside_by_class
        return {"name": f"zone {index + 1}", "inside": self._named(inside_by_class), "entered": self._named(entered),
                "exited": self._named(exited), "this_frame": this_frame}

    def _named(self, per_label: Mapping[Any, int]) -> dict[str, int]:
        """{label: count} -> {class name: count} in label order, without zeros."""
        return {self._class_name(int(label)): int(count)
                for label, count in sorted(per_label.items(), key=lambda item: int(item[0])) if count}

    def _class_name(self, label: int) -> str:
        return self.class_names[label - 1] if 1 <= label <= len(self.class_names) else f"class {label}"

    def totals(self) -> dict[str, Any]:
        """The counts so far: ``{"frames", "lines": [{"name", "points", "in", "out"}], "zones": [{"name",
        "corners", "inside" (at the last frame), "entered", "exited"}]}`` (per class, as in :meth:`update`)."""
        lines = [
            {"name": f"line {index + 1}", "points": line.points,
             "in": self._named(zone.in_count_per_class), "out": self._named(zone.out_count_per_class)}
            for index, (line, zone) in enumerate(zip(self.lines, self._line_zones))
        ]
        zones = [
            {"name": f"zone {index + 1}", "corners": [list(corner) for corner in zone.corners],
             "inside": self._named(self._latest_inside[index]), "entered": self._named(self._entered[index]),
             "exited": self._named(self._exited[index])}
            for index, zone in enumerate(self.zones)
        ]
        return {"frames": self.frames, "lines": lines, "zones": zones}

    def draw(self, image: np.ndarray) -> np.ndarray:
        """Draws every line (with an arrow pointing to its in side) and zone, and their counts so far, on the RGB
        ``image`` in place; returns it."""
        thickness = max(2, round(min(image.shape[:2]) / 320))
        font_scale = max(0.4, min(image.shape[:2]) / 900)
        text_thickness = max(1, thickness // 2)
        label = {"font_scale": font_scale, "thickness": text_thickness}
        for index, zone in enumerate(self.zones):
            corners = np.array(zone.corners, np.int32).reshape(-1, 1, 2)
            cv2.polylines(image, [corners], True, _OUTLINE, thickness + 2, cv2.LINE_AA)
            cv2.polylines(image, [corners], True, LINE_COLOR, thickness, cv2.LINE_AA)
            texts = [
                f"zone {index + 1} inside {per_class_text(self._named(self._latest_inside[index]))}",
                f"entered {per_class_text(self._named(self._entered[index]))}",
                f"exited {per_class_text(self._named(self._exited[index]))}",
            ]
            left, top = corners.reshape(-1, 2).min(axis=0)
            _draw_stacked(image, texts, (int(left), int(top)), **label)
        for index, (line, line_zone) in enumerate(zip(self.lines, self._line_zones)):
            start, end = (round(line.x1), round(line.y1)), (round(line.x2), round(line.y2))
            cv2.line(image, start, end, _OUTLINE, thickness + 2, cv2.LINE_AA)
            cv2.line(image, start, end, LINE_COLOR, thickness, cv2.LINE_AA)
            length = math.hypot(line.x2 - line.x1, line.y2 - line.y1)
            to_in = np.array([line.y2 - line.y1, line.x1 - line.x2]) / length  # the left of the direction, on screen
            middle = np.array([line.x1 + line.x2, line.y1 + line.y2]) / 2.0
            reach = 6 * thickness + 6
            tail, head = middle - to_in * reach, middle + to_in * reach
            cv2.arrowedLine(image, tuple(int(v) for v in np.round(tail)), tuple(int(v) for v in np.round(head)),
                            LINE_COLOR, thickness, cv2.LINE_AA, tipLength=0.4)
            for side, text in ((1, f"line {index + 1} in {per_class_text(self._named(line_zone.in_count_per_class))}"),
                               (-1, f"out {per_class_text(self._named(line_zone.out_count_per_class))}")):
                _draw_beside(image, text, middle + side * to_in * (reach + 4), side * to_in, **label)
        return image


def per_class_text(counts: Mapping[str, int]) -> str:
    """``3 (disc 2, square 1)``, or ``0``."""
    total = sum(counts.values())
    return f"{total} ({', '.join(f'{name} {count}' for name, count in counts.items())})" if total else "0"


def _draw_stacked(image: np.ndarray, texts: Sequence[str], top_left: tuple[int, int], *, font_scale: float,
                  thickness: int) -> None:
    """Labels one under the other from ``top_left`` down."""
    x, y = top_left
    for text in texts:
        _, height = label_size(text, font_scale=font_scale, thickness=thickness)
        y += height
        draw_label(image, text, (x, y), _LABEL_BACKGROUND, font_scale=font_scale, thickness=thickness)


def _draw_beside(image: np.ndarray, text: str, point: np.ndarray, direction: np.ndarray, *, font_scale: float,
                 thickness: int) -> None:
    """A label whose nearest edge to ``point`` is at ``point``, lying in ``direction`` (a unit vector) from it."""
    width, height = label_size(text, font_scale=font_scale, thickness=thickness)
    # the box's centre: far enough along the direction that the box does not reach back over the point
    reach = abs(direction[0]) * width / 2 + abs(direction[1]) * height / 2
    centre = point + direction * reach
    left, bottom = int(round(centre[0] - width / 2)), int(round(centre[1] + height / 2))
    draw_label(image, text, (left, bottom), _LABEL_BACKGROUND, font_scale=font_scale, thickness=thickness)


def describe_totals(totals: Mapping[str, Any]) -> list[str]:
    """One line per line and zone of :meth:`Counter.totals`: ``line 1 (0,240 -> 640,240): in 3 (disc 2, square 1),
    out 1 (square 1)``; ``zone 1 (100,100 300,100 300,300): entered 2 (...), exited 1 (...), inside at the end 1
    (...)``."""
    described = []
    for line in totals["lines"]:
        x1, y1, x2, y2 = line["points"]
        described.append(f"{line['name']} ({x1:g},{y1:g} -> {x2:g},{y2:g}): in {per_class_text(line['in'])}, "
                         f"out {per_class_text(line['out'])}")
    for zone in totals["zones"]:
        corners = " ".join(f"{x},{y}" for x, y in zone["corners"])
        described.append(f"{zone['name']} ({corners}): entered {per_class_text(zone['entered'])}, exited "
                         f"{per_class_text(zone['exited'])}, inside at the end {per_class_text(zone['inside'])}")
    return described
