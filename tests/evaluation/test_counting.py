"""ssdlite.evaluation.counting: the true line crossings and zone entries of a MOT ground-truth file written by hand,
whose counts are known. (tests/runtime/test_counting.py checks that the counter, fed a generated video's ground
truth, counts exactly what this module finds in its gt.txt.)"""

from __future__ import annotations

import pytest

from ssdlite.evaluation.counting import read_ground_truth_boxes, true_counts
from ssdlite_runtime.counting import CountLine, CountZone

NAMES = ["circle", "square"]


def gt_line(frame: int, track_id: int, x: int, y: int, label: int, size: int = 20) -> str:
    return f"{frame},{track_id},{x},{y},{size},{size},1,{label},1.000"


def test_true_counts_of_hand_made_tracks(tmp_path):
    line = CountLine.parse("0,100,200,100")  # in: upwards
    zone = CountZone.parse("0,0,300,0,300,60,0,60")  # the bottom centre decides: y2 <= 60
    tops = {
        1: (1, [130, 90, None, None, 40]),  # below, straddling, hidden two frames, above: crosses in, enters the zone
        2: (2, [40, 70, 85, 105, 130]),  # above, above, straddling, below, below: crosses out, leaves the zone
        3: (1, [130, 95, 130, 95, 130]),  # touches the line twice: nothing
        4: (2, [130, 110, 60, 40, 20]),  # past the line's end (x = 210): no crossing, but enters the zone
    }
    x = {1: 10, 2: 50, 3: 90, 4: 210}
    lines = [gt_line(frame, track_id, x[track_id], top, label)
             for track_id, (label, frames) in tops.items() for frame, top in enumerate(frames, 1) if top is not None]
    path = tmp_path / "gt.txt"
    path.write_text("\n".join(sorted(lines, key=lambda text: int(text.split(",")[0]))) + "\n")

    counts = true_counts(path, lines=[line], zones=[zone], class_names=NAMES)
    assert counts["frames"] == 5
    assert counts["lines"] == [{"name": "line 1", "points": [0.0, 100.0, 200.0, 100.0], "in": {"circle": 1},
                                "out": {"square": 1}}]
    [zone_counts] = counts["zones"]
    assert zone_counts["entered"] == {"circle": 1, "square": 1} and zone_counts["exited"] == {"square": 1}
    assert zone_counts["inside"] == {"circle": 1, "square": 1}  # tracks 1 and 4 at frame 5
    assert true_counts(path, zones=[zone], class_names=NAMES, num_frames=6)["zones"][0]["inside"] == {}


def test_ground_truth_without_classes_is_refused(tmp_path):
    path = tmp_path / "gt.txt"
    path.write_text("1,1,10,10,20,20,1\n")
    with pytest.raises(ValueError, match="counting needs the class in column 8"):
        read_ground_truth_boxes(path)
    with pytest.raises(FileNotFoundError, match="ground truth file not found"):
        read_ground_truth_boxes(tmp_path / "missing.txt")
