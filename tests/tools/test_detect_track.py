"""``detect.py video|webcam --track``: ids, MOT text, JSON lines and the web view's live ids, on the tiny model.

The tiny model (tests/tools/test_detect.py) is not trained, so its boxes are noise that ByteTrack follows as well as
it can; what is checked here is the plumbing: the command's tracks are exactly what ``Predictor`` + ``Tracker`` give
in-process on the same frames, in the formats evaluation tools read. Tracking quality itself is tested on known paths
in tests/runtime/test_tracking.py (and measured with tools/eval_mot.py). The command's ``main`` runs in the test's
process (tests/commands_in_process.py), as detect.py calls it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ssdlite_runtime import jobs, stream
from ssdlite_runtime.counting import Counter, CountLine, CountZone
from ssdlite_runtime.predictor import Predictor
from ssdlite_runtime.tracking import SECOND_ASSOCIATION_MIN_SCORE, Tracker
from tests.tools.test_detect import (
    CATEGORY_IDS,
    CLASS_NAMES,
    draw_scene,
    http_get,
    read_video,
    run_detect,
    save_lightning_checkpoint,
    tiny_detector,
    write_video,
)

pytest.importorskip("supervision", reason="the tracking extra: pip install 'ssdlite-runtime[tracking]'")

FRAMES = 10


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A checkpoint of the tiny model, a 40-frame clip, and the tracks Predictor + Tracker give on its frames."""
    root = tmp_path_factory.mktemp("detect_track")
    checkpoint = save_lightning_checkpoint(tiny_detector(), root / "model.ckpt")
    video = write_video(root / "clip.mp4", [draw_scene(step) for step in range(40)])
    frames = read_video(video)
    predictor = Predictor(checkpoint, score_threshold=SECOND_ASSOCIATION_MIN_SCORE)
    predictions = [predictor.predict(frame)[0] for frame in frames[:FRAMES]]
    tracker, each_class = Tracker(), Tracker(per_class=True)
    tracks = [tracker.update(prediction) for prediction in predictions]
    each_class_tracks = [each_class.update(prediction) for prediction in predictions]
    return {
        "root": root, "checkpoint": checkpoint, "video": video, "frames": frames, "tracks": tracks,
        "each_class_tracks": each_class_tracks,
    }


def parse_mot(text: str) -> list[tuple[int, int, list[float], float]]:
    """(frame, id, [x, y, w, h], score) per line, checking the MOT Challenge layout of each."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split(",")
        assert len(fields) == 10, f"line {number}: {line!r}"
        assert fields[7:] == ["-1", "-1", "-1"], f"line {number}: {line!r}"
        frame, track_id = int(fields[0]), int(fields[1])
        assert frame >= 1 and track_id >= 1, f"line {number}: {line!r}"
        rows.append((frame, track_id, [float(value) for value in fields[2:6]], float(fields[6])))
    return rows


def assert_same_tracks(rows, expected_tracks) -> None:
    """MOT rows (or JSON tracks turned into rows) against Tracker results per 0-based frame."""
    expected = [
        (index + 1, track_id, [x1, y1, x2 - x1, y2 - y1], score)
        for index, tracks in enumerate(expected_tracks)
        for track_id, (x1, y1, x2, y2), score in zip(
            tracks["track_ids"].tolist(), tracks["boxes"].tolist(), tracks["scores"].tolist()
        )
    ]
    assert [row[:2] for row in rows] == [row[:2] for row in expected]
    np.testing.assert_allclose([row[2] for row in rows], [row[2] for row in expected], atol=0.02)
    np.testing.assert_allclose([row[3] for row in rows], [row[3] for row in expected], atol=1e-3)


def test_video_track_writes_mot_and_json_lines_with_the_trackers_ids(workspace, capfd, monkeypatch):
    root = workspace["root"]
    mot, lines, saved = root / "out" / "tracks.txt", root / "out" / "tracks.jsonl", root / "out" / "tracked.mp4"
    result = run_detect(
        "video", workspace["video"], "--model", workspace["checkpoint"], "--track", "--max-frames", FRAMES,
        "--mot", mot, "--json", lines, "--save", saved, "--no-show", cwd=root, capfd=capfd,
        monkeypatch=monkeypatch,
    )
    assert result.returncode == 0, result.stderr
    assert "score > 0.1" in result.stdout  # --track's default threshold: ByteTrack's second association floor
    assert "tracking: ByteTrack (supervision 0.30" in result.stdout
    assert "one for all classes (class-agnostic NMS IoU 0.5, class by score vote)" in result.stdout  # the default

    rows = parse_mot(mot.read_text())
    assert {row[0] for row in rows} == set(range(1, FRAMES + 1))
    assert_same_tracks(rows, workspace["tracks"])
    ids_per_frame = [[row[1] for row in rows if row[0] == frame] for frame in range(1, FRAMES + 1)]
    assert all(len(ids) == len(set(ids)) for ids in ids_per_frame)  # an id is one object in a frame
    assert set(ids_per_frame[0]) & set(ids_per_frame[-1])  # and some live through all the frames

    frames = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [frame["frame"] for frame in frames] == list(range(FRAMES))
    assert [frame["time_s"] for frame in frames] == pytest.approx([index / 25.0 for index in range(FRAMES)])
    assert all(frame["timestamp"] > 1.6e9 for frame in frames)
    json_rows = [
        (frame["frame"] + 1, track["track_id"], track["bbox"], track["score"])
        for frame in frames
        for track in frame["tracks"]
    ]
    assert_same_tracks(json_rows, workspace["tracks"])
    names = {track["category_name"]: track["category_id"] for frame in frames for track in frame["tracks"]}
    assert set(names.items()) <= set(zip(CLASS_NAMES, CATEGORY_IDS))
    assert len(read_video(saved)) == FRAMES


def test_track_classes_each_runs_a_tracker_per_class(workspace, capfd, monkeypatch):
    mot, lines = workspace["root"] / "each" / "tracks.txt", workspace["root"] / "each" / "tracks.jsonl"
    result = run_detect(
        "video", workspace["video"], "--model", workspace["checkpoint"], "--track", "--track-classes", "each",
        "--max-frames", FRAMES, "--mot", mot, "--json", lines, "--no-show", cwd=workspace["root"], capfd=capfd,
        monkeypatch=monkeypatch,
    )
    assert result.returncode == 0, result.stderr
    assert "tracking: ByteTrack (supervision 0.30" in result.stdout and ", per class:" in result.stdout
    expected = workspace["each_class_tracks"]
    assert_same_tracks(parse_mot(mot.read_text()), expected)
    frames = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [[track["category_name"] for track in frame["tracks"]] for frame in frames] == [
        [CLASS_NAMES[label - 1] for label in t["labels"].tolist()] for t in expected  # labels count from 1
    ]
    # The untrained model puts boxes of both classes on the same spots: per class they make more tracks than
    # the default class-agnostic tracker, which keeps one box per object.
    assert sum(len(t["track_ids"]) for t in workspace["tracks"]) < sum(len(t["track_ids"]) for t in expected)


def test_json_on_a_stream_keeps_the_record_list_and_adds_track_ids(workspace, tmp_path):
    path = tmp_path / "tracks.json"
    options = jobs.DetectOptions(model=workspace["checkpoint"], json_path=path, show=False, track=True)
    jobs.detect_video(workspace["video"], options, max_frames=4)
    records = json.loads(path.read_text())  # one JSON document: the COCO-style records, as without --track
    expected = [
        (index, track_id)
        for index, tracks in enumerate(workspace["tracks"][:4])
        for track_id in tracks["track_ids"].tolist()
    ]
    assert [(record["image_id"], record["track_id"]) for record in records] == expected


def test_json_lines_without_tracking_hold_the_detections(workspace, tmp_path):
    path = tmp_path / "detections.jsonl"
    options = jobs.DetectOptions(model=workspace["checkpoint"], json_path=path, show=False, score_threshold=0.6)
    jobs.detect_camera(workspace["video"], options, max_frames=3)  # a file standing in for a camera
    predictor = Predictor(workspace["checkpoint"], score_threshold=0.6)
    for index, line in enumerate(path.read_text().splitlines()):
        frame = json.loads(line)
        assert frame["frame"] == index and "tracks" not in frame
        expected = predictor.to_records(predictor.predict(workspace["frames"][index])[0], image_id=index)
        assert len(frame["detections"]) == len(expected) > 0
        np.testing.assert_allclose(
            [record["bbox"] for record in frame["detections"]], [record["bbox"] for record in expected], atol=0.02
        )
        assert all("track_id" not in record and "image_id" not in record for record in frame["detections"])
    assert index == 2


def test_the_web_view_lists_the_live_track_ids(workspace):
    predictor = Predictor(workspace["checkpoint"], score_threshold=SECOND_ASSOCIATION_MIN_SCORE)
    with stream.VideoFileSource(workspace["video"]) as source, stream.StreamServer(port=0) as server:
        summary = stream.run_stream(predictor, source, max_frames=3, server=server, tracker=Tracker())
        status, _, body = http_get(server.url + "stats.json")
        _, _, page = http_get(server.url)
    assert status == 200 and summary.frames == 3
    listed = [record["track_id"] for record in json.loads(body)["detections"]]
    assert listed == workspace["tracks"][2]["track_ids"].tolist()
    assert b'"#" + d.track_id' in page  # the page shows "#ID class score"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["image", "scene.png", "--track"], "error: tracking needs a video or a camera"),
        (["dir", ".", "--track"], "error: tracking needs a video or a camera"),
        (["video", "{video}", "--mot", "tracks.txt"], "error: --mot tracks.txt writes tracks: add --track"),
        (["video", "{video}", "--track", "--track-buffer", "-3"], "argument --track-buffer: must be 0 or more"),
        (["video", "{video}", "--track", "--track-match", "1.5"], "argument --track-match: must be between 0 and 1"),
        (["video", "{video}", "--track", "--track-bufer", "5"], "unrecognized arguments: --track-bufer 5"),
        (["video", "{video}", "--track", "--track-classes", "all"], "argument --track-classes: invalid choice: 'all'"),
        (["image", "scene.png", "--track-buffer", "5"], "unrecognized arguments: --track-buffer 5"),
        (["video", "{video}", "--track", "--count-line", "1,2,3"],
         "argument --count-line: give 4 numbers x1,y1,x2,y2 (the line's ends, in pixels), e.g. 0,240,640,240"),
        (["video", "{video}", "--count-line", "0,120,320,120"], "error: --count-line counts tracked objects: add --track"),
        (["video", "{video}", "--count-zone", "0,0,9,0,9,9"], "error: --count-zone counts tracked objects: add --track"),
        (["video", "{video}", "--track", "--count-zone", "0,0,50,50"],
         "argument --count-zone: a counting zone needs at least 3 corners (a polygon)"),
    ],
)
def test_bad_tracking_input_is_a_one_line_error(args, message, workspace, capfd, monkeypatch):
    result = run_detect(*[arg.format(video=workspace["video"]) for arg in args], "--no-show", cwd=workspace["root"],
                        capfd=capfd, monkeypatch=monkeypatch)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1



def test_each_tracker_option_reaches_its_byte_track_setting(monkeypatch):
    """Every --track-* setting option lands in DetectOptions.tracker_settings under supervision's parameter name
    (which Tracker passes to ByteTrack), and the options left out are not passed (the library's defaults apply)."""
    from ssdlite_runtime import detect
    from ssdlite_runtime.tracking import BYTE_TRACK_SETTINGS

    given = {"--track-activation": "0.35", "--track-buffer": "7", "--track-match": "0.6", "--track-fps": "15",
             "--track-min-frames": "2"}
    captured = {}
    monkeypatch.setattr(jobs, "detect_video", lambda video, options, **_: captured.update(options=options))
    args = ["video", "clip.mp4", "--model", "model.onnx", "--track", *[part for item in given.items() for part in item]]
    detect.run(detect.build_parser().parse_args(args))
    settings = captured["options"].tracker_settings
    assert settings == {"track_activation_threshold": 0.35, "lost_track_buffer": 7, "minimum_matching_threshold": 0.6,
                        "frame_rate": 15.0, "minimum_consecutive_frames": 2}
    assert set(settings) == set(BYTE_TRACK_SETTINGS)

    detect.run(detect.build_parser().parse_args(["video", "clip.mp4", "--model", "model.onnx", "--track"]))
    assert captured["options"].tracker_settings == {}


COUNT_LINE, COUNT_ZONE = "0,120,320,120", "20,20,300,20,300,220,20,220"
"""Across the middle of the clip's 320 x 240 frames, and most of the frame."""


def test_count_line_and_zone_write_each_frames_counts_log_the_totals_and_draw_the_line(workspace, capfd, monkeypatch):
    """The counts of every JSON line are those a Counter gives for Predictor + Tracker's tracks in-process."""
    root = workspace["root"]
    lines, saved = root / "count" / "counts.jsonl", root / "count" / "counted.avi"
    result = run_detect(
        "video", workspace["video"], "--model", workspace["checkpoint"], "--track", "--max-frames", FRAMES,
        "--count-line", COUNT_LINE, "--count-zone", COUNT_ZONE, "--json", lines, "--save", saved, "--no-show",
        cwd=root, capfd=capfd, monkeypatch=monkeypatch,
    )
    assert result.returncode == 0, result.stderr
    counter = Counter([CountLine.parse(COUNT_LINE)], [CountZone.parse(COUNT_ZONE)], class_names=CLASS_NAMES,
                      forget_after=Tracker().lost_track_frames)
    expected = [counter.update(tracks) for tracks in workspace["tracks"]]
    frames = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [frame["counts"] for frame in frames] == expected
    assert sum(len(zone["this_frame"]["inside"]) for frame in expected for zone in frame["zones"]) > 0
    assert "counting: line 1 (0,120 -> 320,120), zone 1 (20,20 300,20 300,220 20,220)" in result.stdout
    for described in (f"counted line 1 (0,120 -> 320,120): in {_total(counter, 'in')}",
                      f"counted zone 1 (20,20 300,20 300,220 20,220): entered {_total(counter, 'entered')}"):
        assert described in result.stdout
    for frame in read_video(saved):  # the line drawn in white (but where its labels and the boxes are)
        assert (frame[119:122].min(axis=-1) > 180).any(axis=0).mean() > 0.6
    assert not (workspace["frames"][0][110:130].min(axis=-1) > 180).any()  # the clip itself has no white


def _total(counter: Counter, what: str) -> str:
    """``3 (disc 2, square 1)`` for the counter's first line (in, out) or zone (entered, exited)."""
    [entry] = counter.totals()["lines" if what in ("in", "out") else "zones"]
    total = sum(entry[what].values())
    return f"{total} (" + ", ".join(f"{name} {count}" for name, count in entry[what].items()) + ")" if total else "0"
