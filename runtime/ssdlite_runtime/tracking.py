"""Object tracking across video frames: ByteTrack (Zhang et al., 2022) from Roboflow's ``supervision`` (MIT).

:class:`Tracker` takes each frame's detections (the Predictor's dict: ``boxes`` xyxy pixels, ``scores``,
``labels``) and returns the tracked objects with a persistent ``track_ids`` array, and keeps a short trail of
recent box centres per id for drawing. Ids are unique across classes (1, 2, ... in order of appearance), and every
track has one class. Two modes (``per_class``; ``ssdlite-detect --track-classes each|any``):

* per class (``per_class=True``, ``each``): one ``sv.ByteTrack`` per class label, so a disc never takes over a
  square's identity; a track's class is its detections' class.
* class-agnostic (``per_class=False``, ``any``, the default): the frame's detections first go through a
  class-agnostic NMS (:data:`DEFAULT_CLASS_NMS_IOU`, the highest-scoring box kept), then one ``sv.ByteTrack`` for
  all classes; each track's class is the class with the highest summed score over the detections it matched, a
  vote. A small detector confuses similar classes on some frames (a square called a disc, or both boxes on one
  object); per class, each confusion makes a duplicate track or a new id, while the vote keeps one track and its
  class. Two objects of different classes that truly overlap by more than the NMS IoU lose the weaker box in this
  mode; ``per_class=True`` keeps both.

The ``tracking`` extra pins ``supervision>=0.30,<0.31``: the one series that has ``sv.ByteTrack`` (removed in 0.31,
moved to Roboflow's ``trackers``) and does not require ``opencv-python``, which would replace the runtime's
``opencv-python-headless`` (both install ``cv2``). Its deprecation notice (a FutureWarning) is silenced where the
tracker is built; a supervision without ``ByteTrack`` is a one-line error saying which version to install.

The tracker's settings are ``sv.ByteTrack``'s keyword arguments (:data:`BYTE_TRACK_SETTINGS`); one left at None
is not passed, so the library's own default applies. ByteTrack's second association matches the remaining tracks
to detections scoring between :data:`SECOND_ASSOCIATION_MIN_SCORE` and ``track_activation_threshold``: for it to
see them, run the Predictor with a score threshold that low (``ssdlite-detect --track`` does unless
``--score-threshold`` is given).
"""

from __future__ import annotations

import inspect
import warnings
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from ssdlite_runtime.plugins import MissingPackageError, require
from ssdlite_runtime.postprocess import class_wise_nms

__all__ = [
    "BYTE_TRACK_SETTINGS",
    "DEFAULT_CLASS_NMS_IOU",
    "DEFAULT_PER_CLASS",
    "DEFAULT_TRAIL_LENGTH",
    "SECOND_ASSOCIATION_MIN_SCORE",
    "Tracker",
    "mot_lines",
]

INSTALL_HINT = "pip install 'ssdlite-runtime[tracking]' (supervision>=0.30,<0.31)"
BYTE_TRACK_SETTINGS = (
    "track_activation_threshold",
    "lost_track_buffer",
    "minimum_matching_threshold",
    "frame_rate",
    "minimum_consecutive_frames",
)
"""``sv.ByteTrack``'s keyword arguments that :class:`Tracker` passes through."""
SECOND_ASSOCIATION_MIN_SCORE = 0.1
"""ByteTrack's low-score floor: ``sv.ByteTrack.update_with_tensors`` offers detections scoring above 0.1 (a constant
in supervision, not an argument) to the tracks left unmatched by the first association."""
DEFAULT_TRAIL_LENGTH = 30
"""Box centres kept per track for drawing its trail."""
DEFAULT_PER_CLASS = False
"""Whether :class:`Tracker` runs one ByteTrack per class by default (see the module docstring)."""
DEFAULT_CLASS_NMS_IOU = 0.5
"""Class-agnostic mode (``per_class=False``): of two detections of any classes overlapping with an IoU above this,
only the higher-scoring one reaches the tracker."""
_ALL_CLASSES = -1
"""The one tracker group of class-agnostic mode (real labels are >= 0)."""
_FRAMES_AFTER_REMOVAL = 2
"""sv.ByteTrack marks a lost track removed once it has been lost for more than ``max_time_lost`` frames, but drops
it from its lost list one call later, and the call after that can still match it: a lost track can come back
until ``max_time_lost + 2`` frames after it was last seen."""


def _byte_track_class() -> type:
    """``sv.ByteTrack``, or a one-line error saying what to install."""
    require(["supervision"], needed_by="tracking (--track)", install=INSTALL_HINT)
    import supervision

    byte_track = getattr(supervision, "ByteTrack", None)
    if byte_track is None:
        raise MissingPackageError(
            f"tracking (--track) needs supervision's ByteTrack, which supervision {supervision.__version__} no "
            f"longer has (removed in 0.31): {INSTALL_HINT}"
        )
    return byte_track


class Tracker:
    """ByteTrack over a sequence of frames: one per class (``per_class=True``) or one for all classes; ids unique.

    Args:
        track_activation_threshold, lost_track_buffer, minimum_matching_threshold, frame_rate,
            minimum_consecutive_frames: ``sv.ByteTrack``'s settings (see the module docstring); None: the
            library's default.
        trail_length: box centres kept per track (for :attr:`trails`).
        per_class: True: one ``sv.ByteTrack`` per class label (a track only ever matches detections of its
            class); False: class-agnostic, one ``sv.ByteTrack`` for all classes after a class-agnostic NMS, each
            track's class voted by score (see the module docstring).
        class_nms_iou: with ``per_class=False``, the IoU above which the lower-scoring of two overlapping
            detections (of any classes) is dropped before tracking.

    Raises:
        MissingPackageError: supervision (with ByteTrack) is not installed.
        ValueError: a setting out of range.

    Example::

        tracker = Tracker()
        for frame in frames:
            [detections] = predictor.predict(frame)
            tracks = tracker.update(detections)  # + "track_ids"
            for track_id in tracks["track_ids"]:
                tracker.trails[int(track_id)]  # [(x, y), ...] oldest first
    """

    def __init__(
        self,
        *,
        track_activation_threshold: float | None = None,
        lost_track_buffer: int | None = None,
        minimum_matching_threshold: float | None = None,
        frame_rate: float | None = None,
        minimum_consecutive_frames: int | None = None,
        trail_length: int = DEFAULT_TRAIL_LENGTH,
        per_class: bool = DEFAULT_PER_CLASS,
        class_nms_iou: float = DEFAULT_CLASS_NMS_IOU,
    ) -> None:
        given = {
            "track_activation_threshold": track_activation_threshold,
            "lost_track_buffer": lost_track_buffer,
            "minimum_matching_threshold": minimum_matching_threshold,
            "frame_rate": frame_rate,
            "minimum_consecutive_frames": minimum_consecutive_frames,
        }
        self.settings = {name: value for name, value in given.items() if value is not None}
        _check_settings(self.settings, trail_length)
        if not 0.0 <= class_nms_iou <= 1.0:
            raise ValueError(f"class_nms_iou must be between 0 and 1, got {class_nms_iou}")
        self._byte_track = _byte_track_class()
        self.trail_length = trail_length
        self.per_class = bool(per_class)
        self.class_nms_iou = float(class_nms_iou)
        self.frames = 0
        self._trackers: dict[int, Any] = {}  # group (class label, or _ALL_CLASSES) -> its sv.ByteTrack
        self._last_detected: dict[int, int] = {}  # group -> last frame with a detection in it
        self._ids: dict[tuple[int, int], int] = {}  # (group, ByteTrack's id) -> our id
        self._last_seen: dict[int, int] = {}  # our id -> frame it was last output
        self._votes: dict[int, dict[int, float]] = {}  # class-agnostic: our id -> {label: summed score}
        self._next_id = 1
        self._max_time_lost: int | None = None
        self.trails: dict[int, deque[tuple[float, float]]] = {}
        """Recent box centres (x, y) per track id, oldest first, at most ``trail_length``."""

    def _tracker_for(self, group: int) -> Any:
        tracker = self._trackers.get(group)
        if tracker is None:
            with warnings.catch_warnings():  # "ByteTrack was deprecated since v0.28.0": see the module docstring
                warnings.simplefilter("ignore", FutureWarning)
                tracker = self._trackers[group] = self._byte_track(**self.settings)
        return tracker

    def update(self, detections: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Track one frame's detections.

        Args:
            detections: ``boxes`` float [D, 4] xyxy pixels, ``scores`` [D], ``labels`` int [D] (the Predictor's
                output for the frame; pass an empty one for a frame without objects so lost tracks age).

        Returns:
            The tracked objects of this frame: ``boxes`` [T, 4] (the matched detections' boxes), ``scores`` [T],
            ``labels`` [T] (class-agnostic: the track's voted class), ``track_ids`` int64 [T] (>= 1), ordered by
            id. Detections that start no track (too low a score, or not yet ``minimum_consecutive_frames`` old),
            and in class-agnostic mode those suppressed by a better overlapping one, are left out.
        """
        import supervision

        boxes = np.asarray(detections["boxes"], dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(detections["scores"], dtype=np.float32).reshape(-1)
        labels = np.asarray(detections["labels"], dtype=np.int64).reshape(-1)
        if self.per_class:
            groups = labels
        else:  # one box per object: the best of those overlapping, whatever their classes
            keep = class_wise_nms(
                boxes, scores, np.zeros(len(scores), np.int64), iou_threshold=self.class_nms_iou,
                max_detections=len(scores),
            )
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            groups = np.full(len(labels), _ALL_CLASSES, dtype=np.int64)
        self.frames += 1
        out_boxes, out_scores, out_labels, out_ids = [], [], [], []
        present = set(groups.tolist())
        for group in present:
            self._last_detected[group] = self.frames
        for group in sorted(set(self._trackers) | present):
            if group not in present and not self._may_hold_tracks(group):
                continue  # nothing left to age: skip the call (with 80 classes, most are absent most of the time)
            mine = groups == group
            tracked = self._tracker_for(group).update_with_detections(
                supervision.Detections(
                    xyxy=boxes[mine].reshape(-1, 4), confidence=scores[mine], class_id=labels[mine].astype(int)
                )
            )
            if not len(tracked):
                continue
            ids = np.array([self._global_id(group, int(i)) for i in tracked.tracker_id], dtype=np.int64)
            matched_labels = np.asarray(tracked.class_id, dtype=np.int64).reshape(-1)
            matched_scores = np.asarray(tracked.confidence, dtype=np.float32).reshape(-1)
            out_boxes.append(np.asarray(tracked.xyxy, dtype=np.float32).reshape(-1, 4))
            out_scores.append(matched_scores)
            out_labels.append(matched_labels if self.per_class else self._vote(ids, matched_labels, matched_scores))
            out_ids.append(ids)
        if out_ids:
            ids = np.concatenate(out_ids)
            order = np.argsort(ids, kind="stable")
            result = {
                "boxes": np.concatenate(out_boxes)[order],
                "scores": np.concatenate(out_scores)[order],
                "labels": np.concatenate(out_labels)[order],
                "track_ids": ids[order],
            }
        else:
            result = {
                "boxes": np.zeros((0, 4), np.float32),
                "scores": np.zeros(0, np.float32),
                "labels": np.zeros(0, np.int64),
                "track_ids": np.zeros(0, np.int64),
            }
        self._remember(result)
        return result

    def _vote(self, ids: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Add each matched detection's score to its track's tally for the detection's class; int64 [T]: each
        track's class with the highest tally so far (on a tie, the one that reached it first)."""
        voted = []
        for track_id, label, score in zip(ids.tolist(), labels.tolist(), scores.tolist()):
            tally = self._votes.setdefault(track_id, {})
            tally[label] = tally.get(label, 0.0) + score
            voted.append(max(tally, key=tally.__getitem__))
        return np.array(voted, dtype=np.int64)

    def _may_hold_tracks(self, group: int) -> bool:
        """Whether group ``group``'s tracker may still hold (lost) tracks: it sees every frame, empty ones too, so
        its lost tracks age, until no detection of the group came for longer than it keeps a lost track."""
        keep_for = getattr(self._trackers[group], "max_time_lost", None)
        return keep_for is None or self.frames - self._last_detected[group] <= keep_for + _FRAMES_AFTER_REMOVAL

    def _global_id(self, group: int, byte_track_id: int) -> int:
        key = (group, byte_track_id)
        track_id = self._ids.get(key)
        if track_id is None:
            track_id = self._ids[key] = self._next_id
            self._next_id += 1
        return track_id

    def _remember(self, result: Mapping[str, np.ndarray]) -> None:
        for track_id, (x1, y1, x2, y2) in zip(result["track_ids"].tolist(), result["boxes"].tolist()):
            trail = self.trails.get(track_id)
            if trail is None:
                trail = self.trails[track_id] = deque(maxlen=self.trail_length)
            trail.append(((x1 + x2) / 2.0, (y1 + y2) / 2.0))
            self._last_seen[track_id] = self.frames
        # Forget ids ByteTrack has dropped (lost for longer than it keeps lost tracks), so a long stream's memory
        # stays bounded; their trails and class votes go with them.
        keep_for = _FRAMES_AFTER_REMOVAL + max(
            (getattr(t, "max_time_lost", 0) for t in self._trackers.values()), default=0
        )
        stale = [i for i, seen in self._last_seen.items() if self.frames - seen > keep_for]
        if stale:
            stale_set = set(stale)
            for track_id in stale:
                del self._last_seen[track_id]
                self.trails.pop(track_id, None)
                self._votes.pop(track_id, None)
            self._ids = {key: value for key, value in self._ids.items() if value not in stale_set}

    def reset(self) -> None:
        """Forget every track (e.g. between videos); ids start again at 1."""
        self._trackers.clear()
        self._last_detected.clear()
        self._ids.clear()
        self._last_seen.clear()
        self._votes.clear()
        self.trails.clear()
        self._next_id = 1
        self.frames = 0

    @property
    def lost_track_frames(self) -> int:
        """The most frames in a row a track can go unseen and still come back with its id: ByteTrack's
        ``max_time_lost`` (``lost_track_buffer`` scaled by ``frame_rate`` / 30) + 1 (see
        :data:`_FRAMES_AFTER_REMOVAL`). An id unseen for longer is never used again."""
        if self._max_time_lost is None:
            with warnings.catch_warnings():  # see _tracker_for
                warnings.simplefilter("ignore", FutureWarning)
                self._max_time_lost = int(self._byte_track(**self.settings).max_time_lost)
        return self._max_time_lost + _FRAMES_AFTER_REMOVAL - 1

    def describe(self) -> str:
        """``ByteTrack (supervision 0.30.9), per class: lost_track_buffer=30, ...`` with the settings in use
        (``one for all classes (class-agnostic NMS IoU 0.5, class by score vote)`` instead of ``per class``)."""
        import supervision

        settings = {**_library_defaults(self._byte_track), **self.settings}
        shown = ", ".join(f"{name}={settings[name]:g}" for name in BYTE_TRACK_SETTINGS if name in settings)
        mode = (
            "per class" if self.per_class
            else f"one for all classes (class-agnostic NMS IoU {self.class_nms_iou:g}, class by score vote)"
        )
        return f"ByteTrack (supervision {supervision.__version__}), {mode}: {shown}"


def _library_defaults(byte_track: type) -> dict[str, Any]:
    """``sv.ByteTrack``'s keyword defaults, from its signature (for :meth:`Tracker.describe`)."""
    parameters = inspect.signature(byte_track).parameters.values()
    return {parameter.name: parameter.default for parameter in parameters
            if parameter.default is not inspect.Parameter.empty}


def _check_settings(settings: Mapping[str, Any], trail_length: int) -> None:
    for name in ("track_activation_threshold", "minimum_matching_threshold"):
        if name in settings and not 0.0 <= settings[name] <= 1.0:
            raise ValueError(f"tracker setting {name} must be between 0 and 1, got {settings[name]}")
    for name, lowest in (("lost_track_buffer", 0), ("minimum_consecutive_frames", 1)):
        if name in settings and (int(settings[name]) != settings[name] or settings[name] < lowest):
            raise ValueError(f"tracker setting {name} must be a whole number of frames >= {lowest}, got {settings[name]}")
    if "frame_rate" in settings and not settings["frame_rate"] > 0:
        raise ValueError(f"tracker setting frame_rate must be > 0, got {settings['frame_rate']}")
    if int(trail_length) != trail_length or trail_length < 1:
        raise ValueError(f"trail_length must be a positive number of points, got {trail_length}")


def mot_lines(frame_number: int, tracks: Mapping[str, np.ndarray]) -> list[str]:
    """One frame's tracks in the MOT Challenge text format that TrackEval and py-motmetrics read.

    Args:
        frame_number: 1-based frame number (MOT counts frames from 1).
        tracks: a :meth:`Tracker.update` result (``boxes`` xyxy pixels, ``scores``, ``track_ids``).

    Returns:
        ``frame,id,x,y,w,h,score,-1,-1,-1`` lines (box left, top, width, height in pixels), without newlines.
        Coordinates have 2 decimals; a width or height below 0.005 px gets as many as it takes not to read as 0
        (``0.004``), and a negative one (x2 < x1) is written as 0: ``ssdlite-eval-mot`` reads a zero size as an
        empty box (a false positive) but refuses a negative one.
    """
    if frame_number < 1:
        raise ValueError(f"MOT frame numbers start at 1, got {frame_number}")

    def size(value: float) -> str:
        text = f"{max(value, 0.0):.2f}"
        return f"{value:.3g}" if value > 0 and float(text) == 0 else text

    lines = []
    for track_id, (x1, y1, x2, y2), score in zip(
        np.asarray(tracks["track_ids"]).tolist(),
        np.asarray(tracks["boxes"], dtype=np.float64).reshape(-1, 4).tolist(),
        np.asarray(tracks["scores"], dtype=np.float64).tolist(),
    ):
        box = f"{x1:.2f},{y1:.2f},{size(x2 - x1)},{size(y2 - y1)}"
        lines.append(f"{frame_number},{track_id},{box},{score:.4f},-1,-1,-1")
    return lines
