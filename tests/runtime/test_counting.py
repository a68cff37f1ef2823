"""ssdlite_runtime.counting: line crossings and zone counts (supervision's LineZone and PolygonZone) on tracks whose
counts are known: made up box by box, the ground truth of a generated video (against the counts
ssdlite.evaluation.counting computes from its gt.txt), and the stream loop with a stand-in detector.
``tests/tools/test_detect_track.py`` runs the counter behind a real model in ``detect.py``.
"""

from __future__ import annotations

import contextlib
import json
import threading

import cv2
import numpy as np
import pytest

from ssdlite_runtime.counting import (
    DEFAULT_FORGET_AFTER,
    LINE_COLOR,
    Counter,
    CountLine,
    CountZone,
    describe_totals,
)
from ssdlite_runtime.stream import StreamServer, VideoFileSource, run_stream
from ssdlite_runtime.tracking import Tracker
from tests.browser import chromium, needs_chromium

pytest.importorskip("supervision", reason="the tracking extra: pip install 'ssdlite-runtime[tracking]'")

NAMES = ["disc", "square"]
DISC, SQUARE = 1, 2
LINE = CountLine.parse("0,100,200,100")  # drawn left to right: in is upwards (to smaller y)


def tracks(*objects: tuple[int, int, list[float]]) -> dict[str, np.ndarray]:
    """A Tracker result from (track id, label, xyxy box) triples."""
    return {
        "boxes": np.array([box for _, _, box in objects], np.float32).reshape(-1, 4),
        "scores": np.full(len(objects), 0.9, np.float32),
        "labels": np.array([label for _, label, _ in objects], np.int64),
        "track_ids": np.array([track_id for track_id, _, _ in objects], np.int64),
    }


def box(x: float, top: float, size: float = 20.0) -> list[float]:
    return [x, top, x + size, top + size]


# Box tops per frame for one track each; the line is y = 100, the boxes 20 px tall: a box whose top is at 100 or more
# is wholly below the line (a corner on the line counts as below), one whose top is under 80 wholly above, one
# between straddles it.
PATHS = {
    # track id: (label, x, tops per frame; None: not seen that frame)
    1: (DISC, 10, [130, 110, 95, 85, 70, 50, 50, 50]),  # crosses in (upwards), once
    2: (SQUARE, 40, [40, 60, 75, 90, 105, 120, 120, 120]),  # crosses out (downwards)
    3: (DISC, 70, [130, 110, 95, 90, 95, 110, 130, 130]),  # touches the line and goes back: no crossing
    4: (SQUARE, 100, [130, 105, 70, 60, 90, 110, 120, 120]),  # in, then out again
    5: (DISC, 230, [130, 110, 90, 70, 50, 40, 30, 20]),  # crosses the line's extension past its end: nothing
}
"""Frame by frame: track 1 is above at frame 4 (0-based), track 2 below at frame 4, track 4 above at 2, below at 5."""


def frame_tracks(frame: int) -> dict[str, np.ndarray]:
    return tracks(*[(track_id, label, box(x, tops[frame])) for track_id, (label, x, tops) in PATHS.items()
                    if tops[frame] is not None])


def test_line_counts_in_and_out_per_class_and_the_track_ids_of_each_frame():
    counter = Counter([LINE], class_names=NAMES)
    frames = [counter.update(frame_tracks(frame)) for frame in range(8)]
    events = [(index, line["this_frame"]) for index, frame in enumerate(frames) for line in frame["lines"]
              if line["this_frame"]["in"] or line["this_frame"]["out"]]
    assert events == [
        (2, {"in": [4], "out": []}),
        (4, {"in": [1], "out": [2]}),
        (5, {"in": [], "out": [4]}),
    ]
    assert frames[3]["lines"][0]["in"] == {"square": 1} and frames[3]["lines"][0]["out"] == {}  # so far
    totals = counter.totals()
    assert totals["frames"] == 8
    assert totals["lines"] == [{"name": "line 1", "points": [0.0, 100.0, 200.0, 100.0],
                                "in": {"disc": 1, "square": 1}, "out": {"square": 2}}]
    assert describe_totals(totals) == ["line 1 (0,100 -> 200,100): in 2 (disc 1, square 1), out 2 (square 2)"]


def test_swapping_a_lines_ends_swaps_in_and_out():
    counter = Counter([CountLine.parse("200,100,0,100")], class_names=NAMES)
    for frame in range(8):
        counter.update(frame_tracks(frame))
    [line] = counter.totals()["lines"]
    assert line["in"] == {"square": 2} and line["out"] == {"disc": 1, "square": 1}


ZONE = CountZone.parse("50,50,150,50,150,150,50,150")  # its bottom-centre anchor decides: x, y2 in [50, 150]


def test_zone_counts_the_tracks_inside_and_those_that_entered_and_left():
    paths = {  # track id: (label, [xyxy per frame or None])
        1: (DISC, [[0, 0, 20, 20], [40, 40, 60, 60], [60, 60, 80, 80], [90, 90, 110, 110], [140, 150, 160, 170],
                   [150, 160, 170, 180]]),  # enters at frame 1 (bottom centre 50, 60), leaves at frame 4 (150, 170)
        2: (SQUARE, [None, [80, 80, 100, 100], [85, 85, 105, 105], None, None, None]),  # appears inside, vanishes
        3: (SQUARE, [[200, 0, 220, 20]] * 6),  # never inside
    }
    counter = Counter(zones=[ZONE], class_names=NAMES)
    zones = []
    for frame in range(6):
        objects = [(track_id, label, boxes[frame]) for track_id, (label, boxes) in paths.items() if boxes[frame]]
        [zone] = counter.update(tracks(*objects))["zones"]
        zones.append(zone)
    assert [zone["this_frame"] for zone in zones] == [
        {"inside": [], "entered": [], "exited": []},
        {"inside": [1, 2], "entered": [1], "exited": []},  # 2 appeared inside: not an entry
        {"inside": [1, 2], "entered": [], "exited": []},
        {"inside": [1], "entered": [], "exited": []},  # 2 is gone: not an exit
        {"inside": [], "entered": [], "exited": [1]},
        {"inside": [], "entered": [], "exited": []},
    ]
    assert [zone["inside"] for zone in zones[:4]] == [{}, {"disc": 1, "square": 1}, {"disc": 1, "square": 1},
                                                      {"disc": 1}]
    assert zones[-1]["entered"] == {"disc": 1} and zones[-1]["exited"] == {"disc": 1}
    [total] = counter.totals()["zones"]
    assert total == {"name": "zone 1", "corners": [[50, 50], [150, 50], [150, 150], [50, 150]], "inside": {},
                     "entered": {"disc": 1}, "exited": {"disc": 1}}


@pytest.mark.parametrize("unseen", [3, 4])
def test_a_track_keeps_its_side_for_forget_after_unseen_frames(unseen):
    """Seen below the line and outside the zone, unseen for ``unseen`` frames, then above and inside: a crossing and
    an entry with forget_after = 3; after 4 frames unseen it starts afresh (supervision's LineZone alone forgets a
    track after 2 missing frames)."""
    counter = Counter([LINE], [CountZone.parse("0,0,200,0,200,60,0,60")], forget_after=3, class_names=NAMES)
    counter.update(tracks((1, DISC, box(10, 130))))
    for _ in range(unseen):
        counter.update(tracks())
    frame = counter.update(tracks((1, DISC, box(10, 30))))
    [line], [zone] = frame["lines"], frame["zones"]
    counted = unseen <= 3
    assert line["this_frame"]["in"] == ([1] if counted else [])
    assert zone["this_frame"]["entered"] == ([1] if counted else []) and zone["inside"] == {"disc": 1}


def test_the_default_memory_is_the_trackers():
    """A lost track comes back with its id after ``lost_track_frames`` unseen frames, not one more; the counter's
    default remembers exactly as long as the tracker with supervision's defaults."""
    assert Tracker().lost_track_frames == DEFAULT_FORGET_AFTER
    assert Tracker(lost_track_buffer=7).lost_track_frames == 8 and Tracker(frame_rate=60).lost_track_frames == 61
    seen = {"boxes": np.array([[10, 10, 50, 50]], np.float32), "scores": np.array([0.9], np.float32),
            "labels": np.array([1])}
    empty = {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32), "labels": np.zeros(0, int)}
    for unseen, back_with_its_id in ((8, True), (9, False)):
        tracker = Tracker(lost_track_buffer=7)
        for _ in range(3):
            tracker.update(seen)
        for _ in range(unseen):
            tracker.update(empty)
        assert (tracker.update(seen)["track_ids"].tolist() == [1]) is back_with_its_id, unseen


def test_the_ground_truth_of_a_generated_video_gives_the_counts_computed_from_its_gt_file(tmp_path):
    """The counter fed the ground-truth tracks of a generated sequence counts exactly what
    ssdlite.evaluation.counting finds in its gt.txt (numpy geometry, not supervision) for two lines and a zone."""
    from ssdlite.data.synthetic import SHAPE_CLASSES
    from ssdlite.data.synthetic_video import format_gt_line, render_shapes_sequence
    from ssdlite.evaluation.counting import true_counts

    size, length = 160, 300
    lines = [CountLine(0, size / 2, size, size / 2), CountLine(size / 2, 0, size / 2, size)]
    zones = [CountZone(((40, 40), (120, 40), (120, 120), (40, 120)))]
    counter = Counter(lines, zones, class_names=SHAPE_CLASSES, forget_after=length)  # the ground truth keeps ids
    gt_lines = []
    for frame, (_, objects, _) in enumerate(render_shapes_sequence(0, 0, num_frames=length, size=size), start=1):
        counter.update({"boxes": np.array([obj.box for obj in objects], np.float64).reshape(-1, 4),
                        "labels": np.array([obj.label for obj in objects], np.int64),
                        "track_ids": np.array([obj.track_id for obj in objects], np.int64)})
        gt_lines.extend(format_gt_line(frame, obj) for obj in objects)
    gt = tmp_path / "gt.txt"
    gt.write_text("".join(line + "\n" for line in gt_lines))
    truth = true_counts(gt, lines=lines, zones=zones, class_names=SHAPE_CLASSES, num_frames=length)
    assert counter.totals() == truth
    crossings = [sum(line[direction].values()) for line in truth["lines"] for direction in ("in", "out")]
    assert min(crossings) >= 1 and sum(crossings) >= 6  # the sequence has crossings both ways over both lines
    assert sum(truth["zones"][0]["entered"].values()) >= 2 and sum(truth["zones"][0]["exited"].values()) >= 2


def test_draw_puts_the_lines_zones_and_counts_on_the_frame():
    counter = Counter([CountLine.parse("0,100,320,100")], [CountZone.parse("200,140,300,140,300,220,200,220")],
                      class_names=NAMES)
    counter.update(tracks((1, DISC, box(10, 130))))
    counter.update(tracks((1, DISC, box(10, 60))))
    image = counter.draw(np.zeros((240, 320, 3), np.uint8))
    white = (np.abs(image.astype(int) - LINE_COLOR) < 40).all(axis=-1)  # the lines are anti-aliased
    assert white[99:102, 100:150].any(axis=0).all() and white[99:102, 250:300].any(axis=0).all()  # the line
    assert white[180, 299:302].any() and white[219:222, 260].any()  # the zone's right and bottom edges
    assert white[88:113, 159:162].any(axis=1).all()  # the arrow across the line at its middle ...
    assert white[88:96, 150:157].any() and not white[104:113, 150:157].any()  # ... its head up, on the in side
    labels = (image == 24).all(axis=-1)  # the labels' background
    assert labels[60:84, 150:170].any() and labels[117:140, 150:170].any()  # the in count above, the out below


def test_bad_lines_and_zones_say_what_to_give():
    assert CountLine.parse(" 0, 240,640,240") == CountLine(0, 240, 640, 240)
    assert CountZone.parse("10,10,20.4,10,20,30").corners == ((10, 10), (20, 10), (20, 30))
    for text, message in [
        ("1,2,3", "give 4 numbers x1,y1,x2,y2"), ("a,b,c,d", "as comma-separated numbers"),
        ("5,5,5,5", "two different ends"), ("0,0,1e9,0", "at most 10000"), ("0,0,nan,1", "must be finite"),
    ]:
        with pytest.raises(ValueError, match=message):
            CountLine.parse(text)
    for text, message in [
        ("0,0,10,10", "at least 3 corners"), ("0,0,10,10,20", "x,y pairs"), ("0,0,10,10,20,20", "no area"),
        ("-5,0,10,0,10,10", "0 or more"),
    ]:
        with pytest.raises(ValueError, match=message):
            CountZone.parse(text)
    with pytest.raises(ValueError, match="forget_after must be a whole number of frames >= 1"):
        Counter([LINE], forget_after=0)


# ------------------------------------------------------------------------------------------- in the stream loop


class RisingBox:
    """A stand-in detector: one disc whose box rises 4 px a frame, the frame's number read from its brightness."""

    class_names = NAMES

    def predict(self, image):
        index = round(float(image.mean()) / 10)
        top = 70.0 - 4.0 * index
        return [{"boxes": np.array([[50, top, 70, top + 20]], np.float32), "scores": np.array([0.9], np.float32),
                 "labels": np.array([DISC])}]

    def to_records(self, detections, *, image_id, file_name=None):
        return [{"image_id": image_id, "category_name": NAMES[int(label) - 1], "score": float(score)}
                for label, score in zip(detections["labels"], detections["scores"])]


@pytest.fixture(scope="module")
def rising_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("counting") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (128, 96))
    for index in range(16):
        writer.write(np.full((96, 128, 3), index * 10, np.uint8))
    writer.release()
    return path


def test_run_stream_counts_draws_serves_and_sums_up(rising_clip, tmp_path):
    counter = Counter([CountLine.parse("0,40,128,40")], class_names=NAMES)
    with VideoFileSource(rising_clip) as source, StreamServer(port=0) as server:
        summary = run_stream(RisingBox(), source, server=server, tracker=Tracker(), counter=counter,
                             save_path=tmp_path / "counted.avi")
        stats = json.loads(_get(server.url + "stats.json"))
    assert summary.frames == 16
    # the box's top reaches 40 - 20 = 20 at frame 13 (70 - 4 * 12.5): wholly above the line from frame 13 on
    assert summary.counts["lines"][0]["in"] == {"disc": 1} and summary.counts["lines"][0]["out"] == {}
    assert stats["counts"]["lines"][0]["in"] == {"disc": 1}
    assert stats["counts"] == counter.latest
    capture = cv2.VideoCapture(str(tmp_path / "counted.avi"))
    _, last = capture.read()
    capture.release()
    assert (last[40, 90:128] > 200).all()  # the white line, right of its label


def _get(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


@contextlib.contextmanager
def kept_live(server: StreamServer):
    """Publishes the server's last frame and stats again every 50 ms, as a live camera would: Chromium's virtual
    time does not run while the MJPEG response stalls, as it does once a finished stream sends no more frames."""
    stats = json.loads(_get(server.url + "stats.json"))
    frame = cv2.cvtColor(cv2.imdecode(np.frombuffer(server.latest_jpeg(), np.uint8), cv2.IMREAD_COLOR),
                         cv2.COLOR_BGR2RGB)
    done = threading.Event()

    def publish() -> None:
        while not done.wait(0.05):
            server.publish(frame, stats)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@pytest.mark.slow  # starts Chromium
@needs_chromium
def test_the_web_view_shows_the_counts(rising_clip, tmp_path):
    counter = Counter([CountLine.parse("0,40,128,40")], [CountZone.parse("0,0,127,0,127,95,0,95")],
                      class_names=NAMES)
    with VideoFileSource(rising_clip) as source, StreamServer(port=0) as server:
        run_stream(RisingBox(), source, server=server, tracker=Tracker(), counter=counter)
        with kept_live(server):
            dom = chromium("--dump-dom", "--virtual-time-budget=2000", server.url, user_data_dir=tmp_path / "profile")
    assert "<li>line 1: in 1 (disc 1), out 0</li>" in dom.stdout, dom.stdout[-2000:]
    assert "<li>zone 1: inside 1 (disc 1), entered 0, exited 0</li>" in dom.stdout
