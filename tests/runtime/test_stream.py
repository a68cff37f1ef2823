"""Frame sources, the MJPEG web view and its page, and the stream loop (ssdlite_runtime.stream), in process, with a
stand-in predictor (no model)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time

import cv2
import numpy as np
import pytest

from ssdlite_runtime.stream import (
    LiveCameraSource,
    StopSignal,
    StreamServer,
    VideoFileSource,
    open_camera,
    opencv_gui_available,
    parse_camera,
    run_stream,
)
from ssdlite_runtime.stream.webview import render_page
from ssdlite_runtime.visualize import class_color

FPS = 50.0


def numbered_frame(index: int, size=(96, 128)) -> np.ndarray:
    """uint8 RGB whose brightness encodes ``index`` (survives video compression)."""
    return np.full((*size, 3), (index * 9) % 250, np.uint8)


def frame_number(image: np.ndarray) -> int:
    return round(float(image.mean()) / 9)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (128, 96))
    for index in range(12):
        writer.write(numbered_frame(index))
    writer.release()
    return path


def test_video_file_source_reads_every_frame_in_order_and_loops(clip):
    with VideoFileSource(clip) as source:
        frames = []
        while (frame := source.read()) is not None:
            frames.append(frame)
    assert [frame.index for frame in frames] == list(range(12))
    assert [frame_number(frame.image) for frame in frames] == list(range(12))
    assert frames[0].image.shape == (96, 128, 3) and frames[0].image.dtype == np.uint8
    with VideoFileSource(clip, loop=True) as source:
        looped = [source.read() for _ in range(30)]
    assert [frame_number(frame.image) for frame in looped] == [index % 12 for index in range(30)]


def test_a_file_camera_runs_at_the_files_frame_rate_without_dropping(clip):
    source = open_camera(str(clip))
    assert isinstance(source, VideoFileSource)
    started = time.perf_counter()
    with source:
        frames = [source.read() for _ in range(12)]
    assert time.perf_counter() - started >= 11 / FPS * 0.95
    assert [frame.index for frame in frames] == list(range(12)) and source.dropped_frames == 0


def test_parse_camera():
    assert parse_camera("0") == 0 and parse_camera(2) == 2
    assert parse_camera("rtsp://10.0.0.5/stream") == "rtsp://10.0.0.5/stream"
    assert str(parse_camera("clips/a.mp4")) == "clips/a.mp4"


def test_bad_video_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="video file not found: .*nothing.mp4"):
        VideoFileSource(tmp_path / "nothing.mp4")
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="cannot decode video file .*noise.mp4"):
        VideoFileSource(tmp_path / "noise.mp4")


def http_get(server: StreamServer, path: str) -> tuple[int, str, bytes]:
    host, port = server._httpd.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    result = response.status, response.getheader("Content-Type"), response.read()
    connection.close()
    return result


def test_server_is_local_serves_page_stats_frames_and_a_taken_port_is_an_error():
    with StreamServer(port=0) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert http_get(server, "/frame.jpg")[0] == 503  # nothing published yet
        image = np.zeros((60, 80, 3), np.uint8)
        image[:, :40] = (255, 0, 0)
        server.publish(image, {"fps": 9.5, "latency_ms": 12.0, "frame": 3, "detections": []})
        status, content_type, page = http_get(server, "/")
        assert status == 200 and content_type.startswith("text/html") and b"/stream.mjpg" in page
        status, content_type, body = http_get(server, "/stats.json")
        assert content_type == "application/json" and json.loads(body)["fps"] == 9.5
        status, content_type, jpeg = http_get(server, "/frame.jpg")
        decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert np.abs(decoded.astype(int) - image).mean() < 8  # RGB in, RGB out (no channel swap)
        port = server._httpd.server_address[1]
        with pytest.raises(ValueError, match=f"cannot serve on 127.0.0.1:{port}"):
            StreamServer(port=port)


def test_the_page_is_the_package_file_with_its_title_escaped_and_served_as_rendered():
    page = render_page('cam <1> & "door"')
    assert page.count("cam &lt;1&gt; &amp; &quot;door&quot;") == 2  # <title> and the heading
    assert "$" not in page and "{{" not in page and "}}" not in page
    assert 'fetch("/stats.json", {cache: "no-store"})' in page  # the script's braces as written
    with StreamServer(port=0, title="door") as server:
        assert http_get(server, "/")[2] == render_page("door").encode()


def wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def read_until_closed(connection: socket.socket, timeout_s: float) -> bytes:
    """What the server sends before it closes the connection (fails if it is still open after ``timeout_s``)."""
    connection.settimeout(timeout_s)
    received = b""
    while chunk := connection.recv(4096):
        received += chunk
    return received


def mjpeg_frames(server: StreamServer, count: int) -> list[np.ndarray]:
    host, port = server._httpd.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.request("GET", "/stream.mjpg")
    response = connection.getresponse()
    assert response.status == 200
    frames = []
    while len(frames) < count:
        line = response.fp.readline()
        if line.lower().startswith(b"content-length:"):
            response.fp.readline()  # the blank line after the part's headers
            jpeg = response.fp.read(int(line.split(b":")[1]))
            frames.append(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))
    connection.close()
    return frames


def test_idle_and_stalled_clients_are_bounded_and_dropped_while_others_are_served():
    """50 sockets that send nothing hold at most max_clients threads; the rest get 503; all go after the timeout."""
    stop = threading.Event()
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)  # big JPEGs fill buffers fast
    with StreamServer(port=0, max_clients=4, client_timeout_s=0.5) as server:

        def publish() -> None:
            while not stop.is_set():
                server.publish(noise, {"fps": 1.0, "latency_ms": 1.0, "frame": 0, "detections": []})
                time.sleep(0.02)

        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        address = server._httpd.server_address[:2]
        before = threading.active_count()
        try:
            stalled = socket.socket()  # asks for the stream, then never reads it
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.connect(address)
            stalled.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
            idle = [socket.create_connection(address) for _ in range(50)]
            time.sleep(0.1)
            assert threading.active_count() <= before + 4  # not one thread per socket
            assert http_get(server, "/")[0] == 503  # every slot is taken

            replies = [read_until_closed(connection, timeout_s=5.0) for connection in idle]  # all are closed
            assert all(reply == b"" or reply.startswith(b"HTTP/1.0 503") for reply in replies)
            assert sum(reply.startswith(b"HTTP/1.0 503") for reply in replies) >= 50 - 4
            assert wait_until(lambda: threading.active_count() <= before, 5.0)  # the stalled viewer was dropped too

            status, content_type, page = http_get(server, "/")
            assert status == 200 and b"/stream.mjpg" in page
            frames = mjpeg_frames(server, count=2)
            assert all(frame.shape == noise.shape for frame in frames)
        finally:
            stop.set()
            publisher.join()
            for connection in [stalled, *idle]:
                connection.close()


def test_live_source_keeps_only_the_newest_frame():
    """Our own MJPEG stream, read as a live URL camera by a consumer slower than the stream."""
    stop = threading.Event()
    with StreamServer(port=0) as server:

        def publish() -> None:
            index = 0
            while not stop.is_set():
                server.publish(numbered_frame(index % 27), {})
                index += 1
                time.sleep(0.01)

        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        try:
            source = LiveCameraSource(server.url + "stream.mjpg", open_timeout_s=10)
            with source:
                indices = []
                for _ in range(4):
                    frame = source.read()
                    indices.append(frame.index)
                    time.sleep(0.15)  # a slow model: the capture thread keeps overwriting the slot
                assert source.dropped_frames > 0
                assert all(later - earlier > 1 for earlier, later in zip(indices, indices[1:]))
                fresh = source.read()
                assert time.perf_counter() - fresh.captured_at < 0.2  # the newest frame, not a queued one
        finally:
            stop.set()
            publisher.join()


class StandInPredictor:
    """One detection per frame, in the middle, class 1; records like the Predictor's."""

    class_names = ["thing"]

    def predict(self, image):
        height, width = image.shape[:2]
        box = np.array([[width * 0.25, height * 0.25, width * 0.75, height * 0.75]], np.float32)
        return [{"boxes": box, "scores": np.array([0.9], np.float32), "labels": np.array([1])}]

    def to_records(self, detections, *, image_id, file_name=None):
        return [{"image_id": image_id, "category_name": "thing"}] * len(detections["scores"])


def test_run_stream_saves_exactly_max_frames_with_boxes_and_records(clip, tmp_path):
    saved = tmp_path / "out.mp4"
    with VideoFileSource(clip) as source, StreamServer(port=0) as server:
        summary = run_stream(
            StandInPredictor(), source, max_frames=7, server=server, save_path=saved, collect_records=True,
        )
        stats = json.loads(http_get(server, "/stats.json")[2])
    assert summary.frames == 7 and summary.stop_reason == "max frames"
    assert [record["image_id"] for record in summary.records] == list(range(7))
    assert stats["frame"] == 6 and stats["detections"] == [{"image_id": 6, "category_name": "thing"}]
    capture = cv2.VideoCapture(str(saved))
    frames = []
    while (frame := capture.read()[1]) is not None:
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    assert len(frames) == 7
    red, _, blue = class_color(1)  # a blue: the grey frames have blue == red
    for frame in frames:
        right_edge = frame[30:66, 96].astype(int)  # the drawn box's right edge (1 px, blurred by the codec)
        assert (right_edge[:, 2] - right_edge[:, 0]).mean() > (blue - red) / 3


def test_run_stream_stops_at_the_end_and_on_a_stop_event(clip):
    with VideoFileSource(clip) as source:
        summary = run_stream(StandInPredictor(), source)
    assert summary.frames == 12 and summary.stop_reason == "end of stream"
    stop = threading.Event()
    stop.set()
    with VideoFileSource(clip) as source:
        summary = run_stream(StandInPredictor(), source, stop_event=stop)
    assert summary.frames == 0 and summary.stop_reason == "stop requested"


def test_no_gui_without_a_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert opencv_gui_available() is False


def reply_until_closed(connection: socket.socket, timeout_s: float = 5.0) -> bytes:
    """``read_until_closed``, where a reset (the client's bytes arriving after the server closed) is a close too."""
    try:
        return read_until_closed(connection, timeout_s)
    except ConnectionResetError:
        return b""


def test_slow_header_senders_are_dropped_at_the_header_deadline_and_a_normal_get_is_then_served():
    """Slowloris: more connections than slots, each sending its request one header byte at a time (well within the
    socket timeout, which restarts with every byte), hold every slot; the whole-request header deadline closes them
    while they are still sending, so a normal GET / is answered again."""
    max_clients, deadline_s = 4, 2.0
    stop = threading.Event()
    request = b"GET / HTTP/1.0\r\nX-Slow: " + b"a" * 10_000  # never ends its headers
    with StreamServer(port=0, max_clients=max_clients, client_timeout_s=5.0, header_timeout_s=deadline_s) as server:
        address = server._httpd.server_address[:2]
        slow = [socket.create_connection(address, timeout=5) for _ in range(max_clients + 3)]
        closed_by_server: set[int] = set()

        def dribble() -> None:
            for position in range(len(request)):
                for index, connection in enumerate(slow):
                    if index not in closed_by_server:
                        try:
                            connection.send(request[position : position + 1])
                        except OSError:  # the server closed it (reset when bytes arrive after its close)
                            closed_by_server.add(index)
                if stop.wait(0.1):
                    return

        dribbler = threading.Thread(target=dribble, daemon=True)
        dribbler.start()
        try:
            assert http_get(server, "/")[0] == 503  # every slot is held by a slow sender
            statuses = []
            give_up = time.monotonic() + deadline_s + 15.0  # generous on a loaded machine; 1-2 s is typical
            while time.monotonic() < give_up:
                statuses.append(http_get(server, "/")[0])
                if statuses[-1] == 200:
                    break
                time.sleep(0.1)
            assert statuses[-1] == 200, f"{len(statuses)} GET / after the header deadline, the last: {statuses[-3:]}"
            assert dribbler.is_alive()  # the slow senders were still sending: the deadline, not silence, cut them
            held = slow[:max_clients]  # accepted first, so they got the slots
            assert [reply_until_closed(connection) for connection in held] == [b""] * max_clients  # no answer
        finally:
            stop.set()
            dribbler.join()
            for connection in slow:
                connection.close()


def test_the_header_deadline_must_be_a_positive_finite_number():
    for bad in (0, -1.0, float("inf"), float("nan"), "10"):
        with pytest.raises(ValueError, match="header_timeout_s must be a finite number of seconds > 0"):
            StreamServer(port=0, header_timeout_s=bad)


class InterruptedSource(VideoFileSource):
    """The clip, with ``interrupt`` raised on the read after ``after`` frames (as a signal's handler raises it)."""

    def __init__(self, path, interrupt: BaseException, after: int) -> None:
        super().__init__(path)
        self.interrupt, self.after = interrupt, after

    def read(self):
        if self._next_index == self.after:
            raise self.interrupt
        return super().read()


def test_run_stream_names_the_signal_that_stopped_it_and_its_exit_status(clip):
    cases = [
        (KeyboardInterrupt(), "Ctrl+C", signal.SIGINT, 130),
        (StopSignal(signal.SIGTERM), "SIGTERM", signal.SIGTERM, 143),
    ]
    for interrupt, reason, signum, status in cases:
        with InterruptedSource(clip, interrupt, after=4) as source:
            summary = run_stream(StandInPredictor(), source)
        assert (summary.frames, summary.stop_reason, summary.stop_signal, summary.exit_status) == (
            4, reason, signum, status
        )
    with VideoFileSource(clip) as source:
        summary = run_stream(StandInPredictor(), source)
    assert (summary.stop_reason, summary.stop_signal, summary.exit_status) == ("end of stream", None, 0)


def test_a_signal_while_a_frames_outputs_are_written_stops_the_stream_after_that_frame(clip):
    """A real SIGTERM to this process in the middle of a frame's outputs (inside ``on_frame``): the frame's outputs
    are finished and it is counted, then the stream stops, naming SIGTERM; the handler in place before is back."""
    written = []

    def on_frame(frame, detections, records) -> None:
        if frame.index == 2:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)  # the signal arrives in here; a handler raising at once would cut this frame short
        written.append(frame.index)

    def stop(signum, frame):
        raise StopSignal(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    try:
        with VideoFileSource(clip) as source:
            summary = run_stream(StandInPredictor(), source, on_frame=on_frame)
        after = signal.getsignal(signal.SIGTERM)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGTERM, previous)
    assert written == [0, 1, 2]
    assert (summary.frames, summary.stop_reason, summary.exit_status) == (3, "SIGTERM", 143)
    assert after is stop
