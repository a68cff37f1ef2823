"""ssdlite_runtime.tracking: ByteTrack (supervision), per class or class-agnostic, on detections made up frame by frame.

The detections are boxes on known paths (the Predictor's dict format), so each test knows which id every box must
keep; ``tests/tools/test_detect_track.py`` runs the tracker behind a real model in ``detect.py``.
"""

from __future__ import annotations

import inspect
import sys

import numpy as np
import pytest

from ssdlite_runtime.plugins import MissingPackageError
from ssdlite_runtime.tracking import (
    BYTE_TRACK_SETTINGS,
    SECOND_ASSOCIATION_MIN_SCORE,
    Tracker,
    mot_lines,
)
from ssdlite_runtime.visualize import class_color, draw_detections, draw_tracks

sv = pytest.importorskip("supervision", reason="the tracking extra: pip install 'ssdlite-runtime[tracking]'")


def detections(*objects: tuple[list[float], float, int]) -> dict[str, np.ndarray]:
    """The Predictor's output for one frame from (xyxy box, score, label) triples."""
    return {
        "boxes": np.array([box for box, _, _ in objects], np.float32).reshape(-1, 4),
        "scores": np.array([score for _, score, _ in objects], np.float32),
        "labels": np.array([label for _, _, label in objects], np.int64),
    }


def box_at(x: float, y: float, size: float = 40.0) -> list[float]:
    return [x, y, x + size, y + size]


def ids_by_label_and_x(tracks: dict[str, np.ndarray]) -> dict[tuple[int, int], int]:
    return {
        (int(label), round(float(box[0]))): int(track_id)
        for label, box, track_id in zip(tracks["labels"], tracks["boxes"], tracks["track_ids"])
    }


def test_settings_left_out_are_not_passed_so_the_librarys_defaults_apply():
    signature = inspect.signature(sv.ByteTrack)  # the deprecation proxy forwards the class's signature
    library = {name: parameter.default for name, parameter in signature.parameters.items()}
    assert set(library) == set(BYTE_TRACK_SETTINGS)  # every setting sv.ByteTrack takes can be given
    tracker = Tracker(lost_track_buffer=7)
    assert tracker.settings == {"lost_track_buffer": 7}
    tracker.update(detections((box_at(10, 10), 0.9, 1)))
    [byte_track] = tracker._trackers.values()
    assert byte_track.max_time_lost == 7  # lost_track_buffer at the default frame rate, 30
    assert byte_track.track_activation_threshold == library["track_activation_threshold"]
    assert byte_track.minimum_matching_threshold == library["minimum_matching_threshold"]
    described = tracker.describe()
    assert "lost_track_buffer=7" in described
    assert f"minimum_matching_threshold={library['minimum_matching_threshold']:g}" in described


def test_the_second_association_floor_is_supervisions_constant():
    source = inspect.getsource(inspect.unwrap(sv.ByteTrack.__wrapped__.update_with_tensors))
    assert f"scores > {SECOND_ASSOCIATION_MIN_SCORE}" in source


def test_two_objects_moving_apart_keep_their_ids_through_a_five_frame_occlusion():
    tracker = Tracker(trail_length=10)
    occluded = range(10, 15)  # the right-hand object's detection is missing for 5 frames
    first_ids = None
    for step in range(25):
        left = (box_at(200 - 6 * step, 100), 0.9, 1)
        right = (box_at(240 + 6 * step, 100), 0.85, 1)
        tracks = tracker.update(detections(left) if step in occluded else detections(left, right))
        by_x = ids_by_label_and_x(tracks)
        if step == 0:
            first_ids = {"left": by_x[(1, 200)], "right": by_x[(1, 240)]}
            assert first_ids["left"] != first_ids["right"]
            assert min(first_ids.values()) >= 1
        expected = {(1, 200 - 6 * step): first_ids["left"]}
        if step not in occluded:
            expected[(1, 240 + 6 * step)] = first_ids["right"]
        assert by_x == expected, f"frame {step}"
    # The trail follows the centre of the box, newest last, bounded by trail_length.
    trail = list(tracker.trails[first_ids["left"]])
    assert len(trail) == 10
    assert trail[0] == (200 - 6 * 15 + 20, 120)
    assert trail[-1] == (200 - 6 * 24 + 20, 120)


def test_without_the_buffer_an_occluded_object_comes_back_with_a_new_id():
    """The control of the test above: lost_track_buffer=2 forgets the object before it reappears."""
    tracker = Tracker(lost_track_buffer=2)
    ids = []
    for step in range(20):
        objects = [(box_at(240 + 6 * step, 100), 0.85, 1)] if step not in range(8, 13) else []
        tracks = tracker.update(detections(*objects))
        ids += tracks["track_ids"].tolist()
    assert sorted(set(ids)) == [1, 2]


def test_classes_are_tracked_apart_with_ids_unique_across_classes():
    tracker = Tracker(per_class=True)
    seen: dict[int, set[int]] = {1: set(), 2: set()}
    for step in range(12):
        # A square and a disc on top of each other (same box): per class, neither takes the other's id.
        square = (box_at(100 + 4 * step, 50), 0.9, 1)
        disc = (box_at(100 + 4 * step, 50), 0.8, 2)
        tracks = tracker.update(detections(square, disc))
        assert sorted(tracks["labels"].tolist()) == [1, 2]
        for label, track_id in zip(tracks["labels"].tolist(), tracks["track_ids"].tolist()):
            seen[label].add(track_id)
    assert len(seen[1]) == len(seen[2]) == 1  # one id each, all along
    assert seen[1] != seen[2]  # each class's ByteTrack numbers from 1: the Tracker makes them unique

    # A disc where a square was a frame ago (same box) is a new track, not the square's: a class-agnostic tracker
    # would hand it the square's id.
    tracker = Tracker(per_class=True)
    for step in range(6):
        square_ids = tracker.update(detections((box_at(100 + 4 * step, 50), 0.9, 1)))["track_ids"].tolist()
    disc = tracker.update(detections((box_at(120, 50), 0.9, 2)))
    assert disc["labels"].tolist() == [2]
    assert disc["track_ids"].tolist() == [square_ids[0] + 1]


def flipping_object(flipped: range, frames: int = 14) -> list[dict[str, np.ndarray]]:
    """One object moving right, a square (label 1) except for the frames in ``flipped``, where the detector calls it
    a disc (label 2); the same score throughout."""
    return [detections((box_at(100 + 4 * step, 50), 0.9, 2 if step in flipped else 1)) for step in range(frames)]


def test_class_agnostic_a_three_frame_class_flip_keeps_the_id_and_the_voted_class():
    tracker = Tracker(per_class=False)
    tracks = [tracker.update(frame) for frame in flipping_object(flipped=range(6, 9))]
    assert [t["track_ids"].tolist() for t in tracks] == [[1]] * 14
    assert [t["labels"].tolist() for t in tracks] == [[1]] * 14  # 6 x 0.9 for squares outvotes 3 x 0.9 for discs
    assert "one for all classes (class-agnostic NMS IoU 0.5, class by score vote)" in tracker.describe()

    # The control: per class, the disc is a new track for the three frames, and the square's comes back after.
    tracker = Tracker(per_class=True)
    tracks = [tracker.update(frame) for frame in flipping_object(flipped=range(6, 9))]
    assert [t["track_ids"].tolist() for t in tracks] == [[1]] * 6 + [[2]] * 3 + [[1]] * 5
    assert [t["labels"].tolist() for t in tracks] == [[1]] * 6 + [[2]] * 3 + [[1]] * 5
    assert ", per class:" in tracker.describe()


def test_class_agnostic_the_vote_follows_the_summed_scores():
    """Squares at 0.9 for 5 frames (4.5), then discs at 0.8: the track turns into a disc on the 6th disc frame
    (4.8 > 4.5), not before; the id never changes."""
    tracker = Tracker(per_class=False)
    frames = [detections((box_at(100 + 4 * step, 50), 0.9 if step < 5 else 0.8, 1 if step < 5 else 2))
              for step in range(13)]
    tracks = [tracker.update(frame) for frame in frames]
    assert {i for t in tracks for i in t["track_ids"].tolist()} == {1}
    assert [t["labels"].tolist() for t in tracks] == [[1]] * 10 + [[2]] * 3
    assert tracks[7]["scores"].tolist() == pytest.approx([0.8])  # the matched detection's own score


def test_class_agnostic_two_classes_on_one_object_make_one_track():
    tracker = Tracker(per_class=False)
    for step in range(12):
        # The detector puts a square (0.9) and a disc (0.8, shifted 4 px: IoU 0.82) on the same object.
        square = (box_at(100 + 4 * step, 50), 0.9, 1)
        disc = (box_at(104 + 4 * step, 50), 0.8, 2)
        tracks = tracker.update(detections(disc, square))
        assert tracks["track_ids"].tolist() == [1], f"frame {step}"
        assert tracks["labels"].tolist() == [1]
        assert tracks["boxes"].tolist() == [box_at(100 + 4 * step, 50)]  # the higher-scoring box is kept

    # Two objects side by side (IoU 1/3) stay two tracks at the default IoU 0.5; at class_nms_iou=0.3 the weaker
    # one is taken for a duplicate and dropped.
    side_by_side = detections((box_at(100, 50), 0.9, 1), (box_at(120, 50), 0.8, 2))
    assert len(Tracker(per_class=False).update(side_by_side)["track_ids"]) == 2
    assert Tracker(per_class=False, class_nms_iou=0.3).update(side_by_side)["labels"].tolist() == [1]


def test_a_weak_detection_extends_a_track_but_does_not_start_one():
    """ByteTrack's second association: scores between 0.1 and track_activation_threshold only extend tracks."""
    tracker = Tracker()  # track_activation_threshold 0.25: new tracks need 0.35
    first = tracker.update(detections((box_at(100, 100), 0.9, 1)))
    weak = tracker.update(detections((box_at(104, 100), 0.15, 1), (box_at(400, 300), 0.15, 1)))
    assert weak["track_ids"].tolist() == first["track_ids"].tolist()
    assert weak["boxes"][0].tolist() == box_at(104, 100)
    assert weak["scores"].tolist() == pytest.approx([0.15])


def test_min_frames_holds_the_id_back_until_an_object_is_seen_long_enough():
    tracker = Tracker(minimum_consecutive_frames=3)
    counts = [len(tracker.update(detections((box_at(100 + 5 * step, 100), 0.9, 1)))["track_ids"]) for step in range(5)]
    assert counts == [0, 0, 1, 1, 1]


def test_an_empty_frame_and_reset():
    tracker = Tracker()
    tracks = tracker.update(detections())
    assert {key: value.shape for key, value in tracks.items()} == {
        "boxes": (0, 4), "scores": (0,), "labels": (0,), "track_ids": (0,)
    }
    tracker.update(detections((box_at(10, 10), 0.9, 1)))
    tracker.reset()
    assert tracker.update(detections((box_at(300, 300), 0.9, 1)))["track_ids"].tolist() == [1]


def test_forgotten_tracks_leave_no_trail_behind():
    tracker = Tracker(lost_track_buffer=3)
    tracker.update(detections((box_at(10, 10), 0.9, 1)))
    assert list(tracker.trails) == [1]
    for _ in range(10):
        tracker.update(detections())
    assert tracker.trails == {}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"track_activation_threshold": 1.5}, "between 0 and 1"),
        ({"lost_track_buffer": -1}, "whole number of frames"),
        ({"minimum_consecutive_frames": 0}, "whole number of frames >= 1"),
        ({"frame_rate": 0}, "frame_rate must be > 0"),
        ({"class_nms_iou": 1.5}, "class_nms_iou must be between 0 and 1"),
    ],
)
def test_bad_settings_are_one_line_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        Tracker(**settings)


def test_missing_supervision_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "supervision", None)  # what importing an uninstalled package finds
    with pytest.raises(MissingPackageError, match=r"needs supervision.*pip install 'ssdlite-runtime\[tracking\]'"):
        Tracker()


def test_mot_lines():
    tracks = {
        "boxes": np.array([[10, 20, 50, 80], [0.5, 1.25, 3.5, 4.25]], np.float32),
        "scores": np.array([0.91, 0.5], np.float32),
        "labels": np.array([1, 2]),
        "track_ids": np.array([3, 7]),
    }
    assert mot_lines(1, tracks) == [
        "1,3,10.00,20.00,40.00,60.00,0.9100,-1,-1,-1",
        "1,7,0.50,1.25,3.00,3.00,0.5000,-1,-1,-1",
    ]
    with pytest.raises(ValueError, match="start at 1"):
        mot_lines(0, tracks)


def test_draw_tracks_draws_the_trail_and_labels_boxes_with_their_id():
    tracker = Tracker()
    for step in range(10):
        tracks = tracker.update(detections((box_at(40 + 12 * step, 100), 0.9, 2)))
    image = np.full((240, 320, 3), 30, np.uint8)

    def in_class_color(drawn: np.ndarray) -> np.ndarray:
        return np.abs(drawn.astype(int) - np.array(class_color(2))).max(axis=-1) <= 40

    with_trail = in_class_color(draw_tracks(image, tracks, ["square", "disc"], tracker.trails))
    without_trail = in_class_color(draw_tracks(image, tracks, ["square", "disc"], {}))
    # The trail runs through the box centres (y = 120) from the oldest (x = 60) to the box (left edge x = 148).
    assert with_trail[117:124, 61:145].any(axis=0).all()
    assert not without_trail[117:124, 60:145].any()
    assert with_trail[100, 150:186].all() and without_trail[100, 150:186].all()  # the box's top edge
    # The label above the box reads "#1 disc 0.90", wider than the plain "disc 0.90" of draw_detections.
    plain = in_class_color(draw_detections(image, {k: v for k, v in tracks.items() if k != "track_ids"}, ["square", "disc"]))
    assert without_trail[:99].any(axis=0).sum() > plain[:99].any(axis=0).sum() + 10


def test_skipping_absent_classes_changes_nothing():
    """Tracker skips a class's ByteTrack once nothing of the class was detected for longer than it keeps lost
    tracks; the tracks must be those of one sv.ByteTrack per class called on every frame."""
    present = {1: range(0, 80), 2: [*range(0, 10), *range(45, 80)], 3: [*range(20, 26), *range(28, 41)]}
    frames = [
        [(box_at(30 + 40 * label + 2 * step, 20 + 60 * label), 0.9 - 0.1 * label, label)
         for label, steps in present.items() if step in steps]
        for step in range(80)
    ]
    tracker, reference = Tracker(per_class=True), {}
    ours_to_reference: dict[int, tuple[int, int]] = {}
    for objects in frames:
        tracks = tracker.update(detections(*objects))
        for _, _, label in objects:
            reference.setdefault(label, sv.ByteTrack())
        expected = {}
        for label, byte_track in reference.items():
            mine = [(box, score) for box, score, other in objects if other == label]
            result = byte_track.update_with_detections(sv.Detections(
                xyxy=np.array([box for box, _ in mine], np.float32).reshape(-1, 4),
                confidence=np.array([score for _, score in mine], np.float32),
            ))
            expected.update({round(float(box[0])): (label, int(i)) for box, i in zip(result.xyxy, result.tracker_id)})
        got = {round(float(box[0])): int(i) for box, i in zip(tracks["boxes"], tracks["track_ids"])}
        assert set(got) == set(expected), (len(ours_to_reference), objects, got, expected)
        for x, track_id in got.items():
            assert ours_to_reference.setdefault(track_id, expected[x]) == expected[x]
    assert len(set(ours_to_reference.values())) == len(ours_to_reference) == 4  # class 2 comes back as a new track


def test_tracking_runs_where_torch_cannot_be_imported(tmp_path):
    """supervision and the Tracker need no torch: the runtime's promise holds with tracking."""
    from tests.runtime.test_without_torch import run_without_torch

    script = (
        "import numpy as np; from ssdlite_runtime.tracking import Tracker; t = Tracker(); "
        "d = {'boxes': np.array([[0, 0, 10, 10]], np.float32), 'scores': np.array([0.9], np.float32), "
        "'labels': np.array([1])}; print([t.update(d)['track_ids'].tolist() for _ in range(3)])"
    )
    result = run_without_torch(["-c", script], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[[1], [1], [1]]"
