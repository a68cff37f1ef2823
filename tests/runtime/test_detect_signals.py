"""How ``detect.py video|webcam`` ends on a signal: real SIGTERM and SIGINT sent to a real subprocess running an
ONNX model (the torch-free path) once it has processed some frames.

SIGTERM (a job scheduler stopping the run) must not read as success: the stream stops as cleanly as on Ctrl+C
(the saved video and the JSON lines hold every processed frame) but the command exits 143 and its last line names
SIGTERM; Ctrl+C exits 130 and says Ctrl+C, as the shell reports a command either signal ended.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ssdlite.deploy.export import export_model
from ssdlite_runtime import detect, jobs
from tests.tools.test_detect import (
    AS_FROM_A_TERMINAL,
    CATEGORY_IDS,
    CLASS_NAMES,
    draw_scene,
    read_video,
    tiny_detector,
    write_video,
)

pytestmark = pytest.mark.slow  # exports a model, and most tests start a process

REPO_ROOT = Path(__file__).resolve().parents[2]
DETECT = REPO_ROOT / "detect.py"
VIDEO_FRAMES = 300  # far more than are processed before the signal (it is sent after the third frame)
SIGNAL_AFTER_FRAMES = 3


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detect_signals")
    model = export_model(tiny_detector(), folder / "model.onnx", class_names=CLASS_NAMES, category_ids=CATEGORY_IDS,
                         with_nms=True)
    video = write_video(folder / "clip.mp4", [draw_scene(step) for step in range(VIDEO_FRAMES)])
    return {"model": model, "video": video}


def json_lines(path: Path) -> list[dict]:
    """The complete lines of a JSON-lines file being written (a line still being written is left out)."""
    if not path.is_file():
        return []
    text = path.read_text()
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]


def signal_after_some_frames(args: list[str], signum: int, tmp_path: Path) -> tuple[int, str, str, Path, Path]:
    """Runs ``detect.py ARGS --json frames.jsonl --save out.mp4``, sends ``signum`` once three frames are written,
    and returns (exit status, stdout, stderr, the JSON lines file, the saved video)."""
    frames, saved = tmp_path / "frames.jsonl", tmp_path / "out.mp4"
    process = subprocess.Popen(
        [*AS_FROM_A_TERMINAL, str(DETECT), *args, "--json", str(frames), "--save", str(saved), "--no-show"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        give_up = time.monotonic() + 120  # model loading on a loaded 2-core machine
        while len(json_lines(frames)) < SIGNAL_AFTER_FRAMES:
            assert process.poll() is None, f"detect.py ended before the signal: {process.communicate()}"
            assert time.monotonic() < give_up, "detect.py processed no frames in 120 s"
            time.sleep(0.02)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, stdout, stderr, frames, saved


@pytest.mark.parametrize(
    ("job", "signum", "status", "reason"),
    [
        ("video", signal.SIGTERM, 143, "SIGTERM"),
        ("webcam", signal.SIGTERM, 143, "SIGTERM"),
        ("video", signal.SIGINT, 130, "Ctrl+C"),
    ],
)
@pytest.mark.slow  # starts a command's process
def test_a_signal_stops_the_stream_cleanly_with_the_shells_status_for_it(job, signum, status, reason, media, tmp_path):
    source = ["video", str(media["video"])] if job == "video" else ["webcam", "--camera", str(media["video"]), "--loop"]
    returncode, stdout, stderr, frames, saved = signal_after_some_frames(
        [*source, "--model", str(media["model"])], signum, tmp_path
    )
    assert returncode == status, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    assert "Traceback" not in stderr and "error" not in stderr, stderr
    [stopped] = [line for line in stdout.splitlines() if line.startswith("stopped (")]
    assert stopped.startswith(f"stopped ({reason}): "), stopped
    processed = int(stopped.split(": ")[1].split()[0])
    assert SIGNAL_AFTER_FRAMES <= processed < VIDEO_FRAMES
    written = json_lines(frames)  # one complete line per processed frame, none lost or cut
    assert [line["frame"] for line in written] == list(range(processed))
    assert len(read_video(saved)) == processed  # the saved video was finished, not cut off


@pytest.mark.slow  # starts a command's process
def test_sigterm_mid_stream_finishes_the_labelled_dataset(media, tmp_path):
    """--save-labels coco: a real SIGTERM while frames are labelled leaves a complete annotations.json naming every
    frame processed, each image on disk (the README's "finished also after Ctrl+C or SIGTERM")."""
    labels = tmp_path / "labels"
    returncode, stdout, stderr, _, _ = signal_after_some_frames(
        ["video", str(media["video"]), "--model", str(media["model"]), "--save-labels", "coco", str(labels)],
        signal.SIGTERM, tmp_path,
    )
    assert returncode == 143, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    [stopped] = [line for line in stdout.splitlines() if line.startswith("stopped (")]
    processed = int(stopped.split(": ")[1].split()[0])
    dataset = json.loads((labels / "annotations.json").read_text())
    assert [image["file_name"] for image in dataset["images"]] == [f"clip_{index:06d}.jpg" for index in range(processed)]
    assert all((labels / "images" / image["file_name"]).is_file() for image in dataset["images"])


def test_sigterm_before_the_stream_starts_exits_143_at_once_and_puts_the_handler_back(media, monkeypatch, capsys):
    """A real SIGTERM to this process while the model loads (the job's loop has not started, so there is nothing
    to finish): one line naming the signal, status 143; the SIGTERM handler in place before ``main`` is restored."""
    received = []

    def loading_when_terminated(options):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler's exception ends this sleep
        raise AssertionError("SIGTERM did not stop detect")

    before = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))  # not main's: test's own
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    try:
        monkeypatch.setattr(jobs, "load_predictor", loading_when_terminated)
        status = detect.main(["video", str(media["video"]), "--model", str(media["model"]), "--no-show"])
        restored = signal.getsignal(signal.SIGTERM)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        test_handler = signal.signal(signal.SIGTERM, before)
    assert status == 143
    assert capsys.readouterr().err.splitlines()[-1] == f"{detect.PROG}: terminated (SIGTERM)"
    assert received == [] and restored is test_handler  # main's handler got it, then the test's came back


def test_numeric_options_out_of_range_are_usage_errors_naming_the_option(capsys):
    """inf, nan, 0, negative and too-large values are refused by argparse (exit 2, one error line naming the option)
    before anything runs; --track-fps inf used to reach ByteTrack and end in an OverflowError (exit 1)."""
    cases = {
        ("--track-fps", "inf"): "must be a finite number, got inf",
        ("--track-fps", "nan"): "must be a finite number, got nan",
        ("--track-fps", "0"): "must be a frame rate above 0 and at most 1000, got 0",
        ("--track-fps", "-30"): "must be a frame rate above 0 and at most 1000, got -30",
        ("--track-fps", "1e308"): "must be a frame rate above 0 and at most 1000, got 1e308",
        ("--track-fps", "fast"): "not a number: 'fast'",
        ("--track-buffer", "1" + "0" * 400): "must be at most 1000000 frames",
        ("--track-buffer", "1e3"): "not a whole number: '1e3'",
        ("--trail", "1" + "0" * 30): "must be at most 10000 points",
        ("--track-activation", "nan"): "must be a finite number, got nan",
        ("--track-match", "inf"): "must be a finite number, got inf",
        ("--score-threshold", "nan"): "must be a finite number, got nan",
        ("--score-threshold", "inf"): "must be a finite number, got inf",
        ("--score-threshold", "-0.5"): "must be between 0 and 1, got -0.5",
        ("--max-frames", "1e9"): "not a whole number: '1e9'",
        ("--serve", "8e3"): "not a whole number: '8e3'",
        ("--timeout", "inf"): "must be a finite number, got inf",
        ("--timeout", "nan"): "must be a finite number, got nan",
        ("--timeout", "0"): "must be a number of seconds above 0 and at most 3600, got 0",
        ("--timeout", "-5"): "must be a number of seconds above 0 and at most 3600, got -5",
        ("--timeout", "1e9"): "must be a number of seconds above 0 and at most 3600, got 1e9",
        ("--slice", "1e3"): "not a whole number: '1e3'",
        ("--slice", "31"): "must be at least 32 pixels, got 31",
        ("--slice-overlap", "nan"): "must be a finite number, got nan",
        ("--slice-overlap", "1"): "must be at least 0 and below 1, got 1",
    }
    for (option, value), message in cases.items():
        args = ["webcam", "--camera", "clip.mp4"] if option == "--timeout" else ["video", "clip.mp4", "--track"]
        with pytest.raises(SystemExit) as exited:
            detect.build_parser().parse_args([*args, f"{option}={value}"])
        errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
        assert exited.value.code == 2 and len(errors) == 1, (option, value, errors)
        assert f"argument {option}: {message}" in errors[0], (option, value, errors[0])


def test_the_largest_accepted_tracking_values_build_a_tracker():
    """The upper limits are values ByteTrack takes (--track-fps 1000 with the longest buffer; the longest trail)."""
    pytest.importorskip("supervision", reason="the tracking extra: pip install 'ssdlite-runtime[tracking]'")
    import numpy as np

    from ssdlite_runtime.tracking import Tracker

    args = detect.build_parser().parse_args(
        ["video", "clip.mp4", "--track", "--track-fps", "1000", "--track-buffer", str(detect.MAX_TRACK_BUFFER),
         "--trail", str(detect.MAX_TRAIL)]
    )
    tracker = Tracker(frame_rate=args.track_fps, lost_track_buffer=args.track_buffer, trail_length=args.trail)
    detections = {"boxes": np.array([[10, 10, 50, 50]], np.float32), "scores": np.array([0.9], np.float32),
                  "labels": np.array([1])}
    for _ in range(3):
        tracks = tracker.update(detections)
    assert len(tracks["track_ids"]) == 1 and len(tracker.trails) == 1

