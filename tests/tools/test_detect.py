"""detect.py end to end on generated images and videos: its ``main`` runs in the test's process
(tests/commands_in_process.py), as the script calls it; the web view runs as a process of the script, which the test
stops with Ctrl+C (SIGINT).

The model is a tiny SSDLite (width 0.35, 160 px) whose BatchNorm statistics are estimated on the test scenes, so
it gives image-dependent, well-spread scores (an untrained model in eval mode scores every box exactly 1/(K+1)).
A video file written here stands in for the camera.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ssdlite.models import build_model
from ssdlite_runtime.image_io import read_image
from ssdlite_runtime.predictor import Predictor
from ssdlite_runtime.visualize import class_color
from tests.browser import chromium, needs_chromium
from tests.commands_in_process import Completed, run_main

pytestmark = pytest.mark.xdist_group("detect_cli")  # one worker builds the model and the media once

REPO_ROOT = Path(__file__).resolve().parents[2]
DETECT = REPO_ROOT / "detect.py"
CLASS_NAMES = ["square", "disc"]
CATEGORY_IDS = [3, 7]
FRAME_SIZE = (240, 320)  # (h, w)
VIDEO_FRAMES, VIDEO_FPS = 40, 25.0
PAGE_BACKGROUND = (0x16, 0x18, 0x1D)
AS_FROM_A_TERMINAL = [
    sys.executable, "-c",
    "import os, signal, sys; signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
    "signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.executable, [sys.executable, *sys.argv[1:]])",
]
"""Runs a Python script the way a shell in a terminal starts it, with SIGINT unblocked and at its default: an
xdist worker that ran other tests (the TFLite converter's threads among them) may pass on a blocked or ignored
SIGINT to its children, and then the test's Ctrl+C would never arrive."""


def draw_scene(step: int) -> np.ndarray:
    """uint8 RGB (240, 320, 3): a red square and an orange disc moving over a grey gradient."""
    height, width = FRAME_SIZE
    image = np.empty((height, width, 3), np.uint8)
    image[:] = np.linspace(40, 120, width, dtype=np.uint8)[None, :, None]
    x = 20 + (7 * step) % 160
    cv2.rectangle(image, (x, 30), (x + 70, 100), (220, 40, 40), cv2.FILLED)
    cv2.circle(image, (250 - (5 * step) % 110, 165), 40, (235, 140, 20), cv2.FILLED)
    return image


def tiny_detector() -> torch.nn.Module:
    """A width-0.35, 160 px SSDLite with BatchNorm statistics estimated on the scenes (no training)."""
    torch.manual_seed(0)
    model = build_model("ssdlite_mobilenet_v2", num_classes=len(CLASS_NAMES), width_mult=0.35, image_size=160)
    scenes = np.stack([cv2.resize(draw_scene(step), (160, 160)) for step in range(0, VIDEO_FRAMES, 4)])
    batch = torch.from_numpy(scenes).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batch
    with torch.no_grad():
        model.train()(batch)
    return model.eval()


def save_lightning_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": {f"model.{key}": value for key, value in model.state_dict().items()},
            "hyper_parameters": {
                "model_config": model.config,
                "class_names": CLASS_NAMES,
                "category_ids": CATEGORY_IDS,
            },
        },
        path,
    )
    return path


def write_video(path: Path, frames: list[np.ndarray], fps: float = VIDEO_FPS) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def read_video(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A run folder with runs/exp/best.ckpt, images, a broken image, a video and the score threshold to use."""
    root = tmp_path_factory.mktemp("detect")
    model = tiny_detector()
    checkpoint = save_lightning_checkpoint(model, root / "runs" / "exp" / "checkpoints" / "best.ckpt")
    images = root / "images"
    images.mkdir()
    for step, suffix in zip((0, 9, 18), (".jpg", ".png", ".jpg")):
        cv2.imwrite(str(images / f"scene{step:02d}{suffix}"), cv2.cvtColor(draw_scene(step), cv2.COLOR_RGB2BGR))
    video = write_video(root / "clip.mp4", [draw_scene(step) for step in range(VIDEO_FRAMES)])
    # A threshold every frame of the clip clears at least once, so each frame has boxes, but not hundreds.
    predictor = Predictor.from_model(model, class_names=CLASS_NAMES, score_threshold=0.0)
    top_scores = [detections["scores"][0] for detections in predictor.predict(read_video(video))]
    threshold = round(float(min(top_scores)) - 0.02, 2)
    assert threshold > 0.4
    return {"root": root, "checkpoint": checkpoint, "images": images, "video": video, "threshold": threshold}


def run_detect(*args: object, cwd: Path, capfd: pytest.CaptureFixture,
               monkeypatch: pytest.MonkeyPatch) -> Completed:
    """detect.py's ``main`` run with ``args`` in folder ``cwd``: its exit status, stdout and stderr."""
    return run_main("detect.py", [str(arg) for arg in args], cwd=cwd, capfd=capfd, monkeypatch=monkeypatch)


def assert_ok(result: Completed) -> None:
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr


def expected_records(predictor: Predictor, images: list[np.ndarray], file_names=None) -> list[dict]:
    records = []
    for image_id, detections in enumerate(predictor.predict(images)):
        name = None if file_names is None else file_names[image_id]
        records += predictor.to_records(detections, image_id=image_id, file_name=name)
    return records


def assert_same_records(actual: list[dict], expected: list[dict]) -> None:
    assert len(actual) == len(expected) > 0
    for got, want in zip(actual, expected):
        assert {k: v for k, v in got.items() if k not in ("bbox", "score")} == {
            k: v for k, v in want.items() if k not in ("bbox", "score")
        }
        np.testing.assert_allclose(got["bbox"], want["bbox"], atol=0.05)
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)


def class_colour_pixels(image: np.ndarray, tolerance: int = 40) -> int:
    """How many pixels are within ``tolerance`` (per channel) of a class colour."""
    count = 0
    for label in range(1, len(CLASS_NAMES) + 1):
        difference = np.abs(image.astype(np.int16) - np.array(class_color(label), np.int16))
        count += int((difference.max(axis=-1) <= tolerance).sum())
    return count


# ---------------------------------------------------------------------------------------------------- images


def test_image_uses_newest_checkpoint_and_writes_json_and_annotated_images(workspace, capfd, monkeypatch):
    paths = sorted(workspace["images"].iterdir())
    out = workspace["root"] / "out_image"
    result = run_detect(
        "image", *paths, "--score-threshold", workspace["threshold"], "--json", out / "detections.json",
        "--save", out / "annotated", "--no-show", cwd=workspace["root"], capfd=capfd, monkeypatch=monkeypatch,
    )
    assert_ok(result)
    assert f"using the newest checkpoint under runs/: {Path('runs/exp/checkpoints/best.ckpt')}" in result.stdout
    predictor = Predictor(workspace["checkpoint"], score_threshold=workspace["threshold"])
    images = [read_image(path) for path in paths]
    records = json.loads((out / "detections.json").read_text())
    assert_same_records(records, expected_records(predictor, images, [str(path) for path in paths]))
    assert {record["category_name"] for record in records} <= set(CLASS_NAMES)
    assert {record["category_id"] for record in records} <= set(CATEGORY_IDS)
    for path, image in zip(paths, images):
        annotated = read_image(out / "annotated" / path.name)
        assert annotated.shape == image.shape
        assert class_colour_pixels(annotated) > class_colour_pixels(image) + 100


def test_dir_skips_an_unreadable_image_with_a_warning(workspace, capfd, monkeypatch):
    folder = workspace["root"] / "mixed"
    shutil.copytree(workspace["images"], folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    json_path = workspace["root"] / "mixed.json"
    result = run_detect(
        "dir", folder, "--model", workspace["checkpoint"], "--score-threshold", workspace["threshold"],
        "--json", json_path, "--classes", "disc", "--no-show", cwd=workspace["root"], capfd=capfd,
        monkeypatch=monkeypatch,
    )
    assert_ok(result)
    assert f"warning: skipping {folder / 'broken.jpg'}" in result.stderr
    good = sorted(path for path in folder.iterdir() if path.name != "broken.jpg")
    predictor = Predictor(workspace["checkpoint"], score_threshold=workspace["threshold"], classes=["disc"])
    records = json.loads(json_path.read_text())
    expected = expected_records(predictor, [read_image(path) for path in good], [str(path) for path in good])
    # image ids count the inputs, the skipped one included: compare without them.
    for record in records + expected:
        record.pop("image_id")
    assert_same_records(records, expected)
    assert {record["category_name"] for record in records} == {"disc"}


# ---------------------------------------------------------------------------------------------------- video


def test_video_writes_json_for_each_frame(workspace, capfd, monkeypatch):
    json_path = workspace["root"] / "video.json"
    result = run_detect(
        "video", workspace["video"], "--model", workspace["checkpoint"], "--score-threshold",
        workspace["threshold"], "--max-frames", 6, "--json", json_path, "--no-show", cwd=workspace["root"],
        capfd=capfd, monkeypatch=monkeypatch,
    )
    assert_ok(result)
    assert "stopped (max frames): 6 frames" in result.stdout
    predictor = Predictor(workspace["checkpoint"], score_threshold=workspace["threshold"])
    records = json.loads(json_path.read_text())
    assert_same_records(records, expected_records(predictor, read_video(workspace["video"])[:6]))
    assert {record["image_id"] for record in records} == set(range(6))


def test_webcam_with_a_file_camera_saves_exactly_max_frames_with_boxes(workspace, capfd, monkeypatch):
    saved = workspace["root"] / "webcam.mp4"
    result = run_detect(
        "webcam", "--camera", workspace["video"], "--model", workspace["checkpoint"], "--score-threshold",
        workspace["threshold"], "--max-frames", 30, "--save", saved, "--no-show", cwd=workspace["root"],
        capfd=capfd, monkeypatch=monkeypatch,
    )
    assert_ok(result)
    assert "stopped (max frames): 30 frames" in result.stdout
    annotated, raw = read_video(saved), read_video(workspace["video"])
    assert len(annotated) == 30
    for frame, original in zip(annotated, raw):
        assert frame.shape == original.shape
        assert class_colour_pixels(frame) > class_colour_pixels(original) + 100  # boxes in class colours


# -------------------------------------------------------------------------------------------------- web view


def read_mjpeg_frame(host: str, port: int, timeout: float = 30.0) -> np.ndarray:
    """Open /stream.mjpg and decode the first complete JPEG part."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    connection.request("GET", "/stream.mjpg")
    response = connection.getresponse()
    assert response.status == 200
    content_type = response.getheader("Content-Type")
    assert content_type.startswith("multipart/x-mixed-replace")
    boundary = b"--" + content_type.split("boundary=")[1].encode()
    buffer = b""
    deadline = time.monotonic() + timeout
    while buffer.count(boundary) < 2 and time.monotonic() < deadline:
        buffer += response.read1(65536)
    connection.close()
    part = buffer.split(boundary)[1]
    jpeg = part.split(b"\r\n\r\n", 1)[1].rstrip(b"\r\n")
    frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert frame is not None, "the MJPEG part is not a decodable JPEG"
    return frame


def http_get(url: str, timeout: float = 10.0) -> tuple[int, str, bytes]:
    match = re.match(r"http://([^:/]+):(\d+)(/.*)", url)
    connection = http.client.HTTPConnection(match[1], int(match[2]), timeout=timeout)
    connection.request("GET", match[3])
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, response.getheader("Content-Type"), body


@pytest.fixture
def web_view(workspace):
    """``detect.py webcam --serve 0`` on the looping file camera; yields its URL, stops it with Ctrl+C."""
    process = subprocess.Popen(
        [*AS_FROM_A_TERMINAL, str(DETECT), "webcam", "--camera", str(workspace["video"]), "--loop", "--serve", "0",
         "--no-show", "--model", str(workspace["checkpoint"]), "--score-threshold", str(workspace["threshold"])],
        cwd=workspace["root"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    found = threading.Event()

    def collect() -> None:
        for line in process.stdout:
            lines.append(line)
            if "web view: http://" in line:
                found.set()

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    try:
        assert found.wait(timeout=90), f"no web view line; output: {''.join(lines)}"
        url = re.search(r"web view: (http://\S+)", "".join(lines))[1]
        yield {"url": url, "process": process, "lines": lines}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=5)


@pytest.mark.slow  # starts a command's process
def test_web_view_serves_page_stats_and_mjpeg_and_stops_on_ctrl_c(web_view):
    url = web_view["url"]
    host, port = re.match(r"http://([^:/]+):(\d+)/", url).groups()
    assert host == "127.0.0.1"
    status, content_type, page = http_get(url)
    assert status == 200 and content_type.startswith("text/html")
    assert b"/stream.mjpg" in page and b"/stats.json" in page
    frame = read_mjpeg_frame(host, int(port))
    assert frame.shape == (*FRAME_SIZE, 3)
    status, content_type, body = http_get(url + "stats.json")
    stats = json.loads(body)
    assert status == 200 and content_type == "application/json"
    assert stats["fps"] > 0 and stats["frame"] >= 1
    assert all(record["category_name"] in CLASS_NAMES for record in stats["detections"])
    assert http_get(url + "nothing-here")[0] == 404

    process = web_view["process"]
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=90) == 130  # Ctrl+C: 128 + SIGINT; generous: shutting down can be slow on 2 cores
    stderr = process.stderr.read()
    assert "Traceback" not in stderr
    time.sleep(0.2)  # let the reader thread take the last lines
    assert "stopped (Ctrl+C)" in "".join(web_view["lines"])
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=2).close()  # the server is gone


@pytest.mark.slow  # starts a command's process
@needs_chromium
def test_web_view_in_headless_chromium(web_view, tmp_path):
    screenshot = tmp_path / "page.png"
    shot = chromium(f"--screenshot={screenshot}", "--virtual-time-budget=3000", web_view["url"],
                    user_data_dir=tmp_path / "profile-shot")
    assert screenshot.is_file(), f"no screenshot: {shot.stderr[-2000:]}"
    page = cv2.cvtColor(cv2.imread(str(screenshot)), cv2.COLOR_BGR2RGB)
    # The stream image: the scene's red square shows up, and the region is not page background.
    red = np.abs(page.astype(np.int16) - np.array((220, 40, 40), np.int16)).max(axis=-1) <= 40
    assert red.sum() > 500, "no stream frame visible in the screenshot"
    rows, cols = np.nonzero(red)
    region = page[max(rows.min() - 20, 0) : rows.max() + 20, max(cols.min() - 20, 0) : cols.max() + 20]
    assert (np.abs(region.astype(np.int16) - np.array(PAGE_BACKGROUND)).max(axis=-1) > 10).mean() > 0.9

    dom = chromium("--dump-dom", "--virtual-time-budget=3000", web_view["url"],
                   user_data_dir=tmp_path / "profile-dom")
    assert f'data-natural-width="{FRAME_SIZE[1]}"' in dom.stdout, dom.stdout[-2000:]
    assert "FPS" in dom.stdout


# ------------------------------------------------------------------------------------------------ bad input


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


BAD_INPUTS = {
    "camera index": (["webcam", "--camera", "57"], "camera 57 does not open"),
    "camera URL refused": (["webcam", "--camera", "http://127.0.0.1:{port}/video"], "does not answer"),
    "camera URL silent": (
        ["webcam", "--camera", "http://127.0.0.1:{silent_port}/video", "--timeout", "1"],
        "stream URL http://127.0.0.1:{silent_port}/video does not answer",
    ),
    "missing video": (["video", "{root}/missing.mp4"], "video file not found: {root}/missing.mp4"),
    "undecodable video": (["video", "{root}/garbage.mp4"], "cannot decode video file {root}/garbage.mp4"),
    "empty folder": (["dir", "{root}/empty"], "no images"),
    "missing folder": (["dir", "{root}/nowhere"], "{root}/nowhere"),
    "only an unreadable image": (["image", "{root}/garbage.jpg", "--model", "{checkpoint}"], "none of the 1 images could be read"),
    "not our checkpoint": (["image", "{image}", "--model", "{root}/other.ckpt"], "cannot load {root}/other.ckpt: "),
    "missing checkpoint": (["image", "{image}", "--model", "{root}/nope.ckpt"], "model file not found: {root}/nope.ckpt"),
    "onnx model": (["image", "{image}", "--model", "{root}/model.onnx"], "{root}/model.onnx is not a valid ONNX model"),
    "no model anywhere": (["image", "{image}", "--runs-dir", "{root}/no_runs"], "make demo"),
    "unknown class": (["image", "{image}", "--model", "{checkpoint}", "--classes", "cat"], "unknown class name(s) 'cat'"),
    "stream saved as image": (["video", "{video}", "--model", "{checkpoint}", "--save", "{root}/x.jpg"], ".mp4 or .avi"),
}
OPENED_BY_OPENCV = ["camera index", "camera URL refused", "camera URL silent", "undecodable video"]
"""The cases whose input OpenCV / FFmpeg open, and would print their own messages about: detect.py keeps them quiet by
setting OPENCV_LOG_LEVEL and OPENCV_FFMPEG_LOGLEVEL before cv2 loads, which only a process of its own shows (in the
test's process cv2 was loaded, and FFmpeg set up, by the fixtures first). These cases run as processes."""


@pytest.fixture(scope="module")
def silent_port():
    """A port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


@pytest.fixture(scope="module")
def bad_files(workspace):
    root = workspace["root"] / "bad"
    root.mkdir()
    (root / "empty").mkdir()
    (root / "garbage.mp4").write_bytes(os.urandom(2048))
    (root / "garbage.jpg").write_bytes(b"not an image at all")
    (root / "model.onnx").write_bytes(b"\x08\x07")
    torch.save({"weights": torch.zeros(3), "epoch": 1}, root / "other.ckpt")
    return root


def bad_input_values(workspace, bad_files: Path, silent_port: int) -> dict:
    """What the placeholders of BAD_INPUTS stand for."""
    return {
        "root": bad_files, "port": _closed_port(), "silent_port": silent_port,
        "image": next(workspace["images"].iterdir()),
        "checkpoint": workspace["checkpoint"], "video": workspace["video"],
    }


@pytest.mark.timeout(120)  # as its process's timeout did
@pytest.mark.parametrize("case", [case for case in BAD_INPUTS if case not in OPENED_BY_OPENCV])
def test_bad_input_gives_one_line_error_naming_it(case, workspace, bad_files, silent_port, capfd, monkeypatch):
    args, message = BAD_INPUTS[case]
    values = bad_input_values(workspace, bad_files, silent_port)
    result = run_detect(*(arg.format(**values) for arg in args), "--no-show", cwd=bad_files, capfd=capfd,
                        monkeypatch=monkeypatch)
    assert_one_line_error_naming(result, message.format(**values))


@pytest.mark.slow  # starts a command's process
@pytest.mark.parametrize("case", OPENED_BY_OPENCV)
def test_bad_input_opened_by_opencv_gives_one_line_error_naming_it(case, workspace, bad_files, silent_port):
    """As the other cases, in a process of detect.py started without the OpenCV variables this process got when it
    imported ssdlite_runtime.detect: the script must set them itself (see OPENED_BY_OPENCV)."""
    args, message = BAD_INPUTS[case]
    values = bad_input_values(workspace, bad_files, silent_port)
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("OPENCV_LOG_LEVEL", "OPENCV_FFMPEG_LOGLEVEL")}
    result = subprocess.run(
        [sys.executable, str(DETECT), *(arg.format(**values) for arg in args), "--no-show"], cwd=bad_files,
        capture_output=True, text=True, timeout=120, env=environment,
    )
    assert_one_line_error_naming(result, message.format(**values))


def assert_one_line_error_naming(result: Completed | subprocess.CompletedProcess, message: str) -> None:
    """Exit status 2, no traceback, one error line holding ``message``, and no other line but warnings."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    [error] = [line for line in lines if line.startswith("detect.py: error: ")]
    assert all(line.startswith("warning: ") for line in lines if line != error), result.stderr  # no library noise
    assert message in error
