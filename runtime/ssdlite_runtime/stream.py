"""Live detection on video: frame sources, an OpenCV window, an MJPEG web view, and the loop that ties them.

Sources:
    * ``VideoFileSource`` reads a file frame by frame, synchronously: nothing is dropped, so ``max_frames`` means
      exactly that many frames of the file (also when a file stands in for a camera).
    * ``LiveCameraSource`` (a camera index or a stream URL) reads on a capture thread that keeps only the newest
      frame (double buffering): while the model works on one frame the thread overwrites the next slot, so
      latency never builds up; frames the model had no time for are counted as dropped.

Display: ``OpenCVWindow`` where the installed OpenCV has GUI support and a display, else ``StreamServer``, a
small page at http://127.0.0.1:PORT with the annotated stream (MJPEG, multipart/x-mixed-replace), the FPS and the
current detections (``/stats.json``, polled by the page; with tracking, the live track ids). The server gives each
connection a thread, so it bounds them: a client that sends nothing or stops reading is dropped after a socket
timeout, one that has not sent its whole request line and headers within a deadline from its connection is dropped
too (however slowly it keeps sending: a socket timeout alone restarts with every byte), and connections beyond a
cap are answered 503 from the accepting thread, without a thread of their own.

Stopping: ``run_stream`` ends cleanly on Ctrl+C (KeyboardInterrupt) and on :class:`StopSignal`, which a signal
handler raises for another signal (``ssdlite-detect`` does for SIGTERM); the summary names the signal and gives
the shell's exit status for it (130, 143).
"""

from __future__ import annotations

import abc
import io
import json
import logging
import math
import numbers
import os
import re
import select
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ssdlite_runtime.signals import signals_deferred
from ssdlite_runtime.visualize import draw_detections, draw_stream_overlay, draw_tracks

logger = logging.getLogger(__name__)

DEFAULT_OPEN_TIMEOUT_S = 10.0
DEFAULT_MAX_CLIENTS = 32
"""Connections the web view serves at once (a viewer's page holds one for the stream and one per stats poll)."""
DEFAULT_CLIENT_TIMEOUT_S = 10.0
"""Seconds a web view connection may send nothing (no request) or read nothing (a stalled viewer) before it is
dropped."""
DEFAULT_HEADER_TIMEOUT_S = 10.0
"""Seconds from a web view connection's start to the end of its request headers, however slowly it sends them; then
it is dropped (a slowloris client dribbling a byte at a time would otherwise hold a slot for ever)."""
VIDEO_WRITER_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


@dataclass
class Frame:
    """One frame from a source.

    Attributes:
        index: position in the source (for live sources it counts the dropped frames too).
        image: uint8 RGB (H, W, 3).
        captured_at: ``time.perf_counter()`` when the frame was read.
    """

    index: int
    image: np.ndarray
    captured_at: float


class FrameSource(abc.ABC):
    """A stream of RGB frames; ``read()`` returns None at the end. Use as a context manager to release it."""

    description: str = ""
    fps: float | None = None
    dropped_frames: int = 0

    @abc.abstractmethod
    def read(self) -> Frame | None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _capture_fps(capture: cv2.VideoCapture) -> float | None:
    fps = capture.get(cv2.CAP_PROP_FPS)
    return float(fps) if np.isfinite(fps) and 1.0 <= fps <= 240.0 else None


class VideoFileSource(FrameSource):
    """A video file read synchronously, frame by frame (optionally looping).

    Args:
        path: the video file.
        loop: start again at the end instead of stopping.
        realtime: hand out frames no faster than the file's frame rate, like a camera would (a slow model still
            gets every frame, it just runs behind).

    Raises:
        FileNotFoundError: no such file.
        ValueError: OpenCV cannot decode it.
    """

    def __init__(self, path: str | Path, *, loop: bool = False, realtime: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video file not found: {self.path}")
        self.loop = loop
        self.description = f"video file {self.path}"
        self._capture = cv2.VideoCapture(str(self.path))
        self._first: np.ndarray | None = None
        if self._capture.isOpened():
            ok, self._first = self._capture.read()
        if self._first is None:
            self._capture.release()
            raise ValueError(
                f"cannot decode video file {self.path}: OpenCV (FFmpeg) reads no frame from it; "
                "is it a complete video (e.g. .mp4 with H.264/MPEG-4)?"
            )
        self.fps = _capture_fps(self._capture)
        self._frame_interval_s = 1.0 / self.fps if realtime and self.fps else 0.0
        self._started_at: float | None = None
        self._next_index = 0

    def read(self) -> Frame | None:
        self._wait_for_frame_time()
        if self._first is not None:
            bgr, self._first = self._first, None
        else:
            ok, bgr = self._capture.read()
            if not ok and self.loop and self._next_index > 0:
                self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, bgr = self._capture.read()
            if not ok:
                return None
        frame = Frame(self._next_index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.perf_counter())
        self._next_index += 1
        return frame

    def _wait_for_frame_time(self) -> None:
        if not self._frame_interval_s:
            return
        now = time.perf_counter()
        if self._started_at is None:
            self._started_at = now
        delay = self._started_at + self._next_index * self._frame_interval_s - now
        if delay > 0:
            time.sleep(delay)

    def close(self) -> None:
        self._capture.release()


class LiveCameraSource(FrameSource):
    """A camera (index) or stream URL read by a capture thread that keeps only the newest frame.

    Args:
        target: camera index (0 = first camera) or URL (rtsp://, http://...).
        open_timeout_s: how long to wait for the camera / URL to open and for each frame.

    Raises:
        ValueError: the camera does not open, or the URL does not answer / sends no frame.
    """

    def __init__(self, target: int | str, *, open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S) -> None:
        self.target = target
        self.timeout_s = open_timeout_s
        self.description = f"camera {target}" if isinstance(target, int) else f"stream {target}"
        timeout_ms = int(open_timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        self._capture = cv2.VideoCapture(target, cv2.CAP_ANY, params)
        first = self._capture.read()[1] if self._capture.isOpened() else None
        if first is None:
            self._capture.release()
            raise ValueError(self._open_error())
        self.fps = _capture_fps(self._capture)
        self._condition = threading.Condition()
        self._latest: Frame | None = Frame(0, cv2.cvtColor(first, cv2.COLOR_BGR2RGB), time.perf_counter())
        self._ended = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._capture_loop, name="frame-capture", daemon=True)
        self._thread.start()

    def _open_error(self) -> str:
        if isinstance(self.target, int):
            return (
                f"camera {self.target} does not open (no such device, or another program uses it); "
                "try another --camera INDEX or a video file / stream URL"
            )
        return (
            f"stream URL {self.target} does not answer or sends no video within {self.timeout_s:g} s; "
            "check the address and that the camera is streaming"
        )

    def _capture_loop(self) -> None:
        index = 1
        while not self._stop.is_set():
            ok, bgr = self._capture.read()
            if not ok:
                break
            frame = Frame(index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.perf_counter())
            index += 1
            with self._condition:
                if self._latest is not None:
                    self.dropped_frames += 1  # the model never saw it: it was busy with an older frame
                self._latest = frame
                self._condition.notify()
        with self._condition:
            self._ended = True
            self._condition.notify_all()

    def read(self) -> Frame | None:
        """The newest frame not yet returned; waits for one; None once the source ends."""
        with self._condition:
            while self._latest is None and not self._ended:
                self._condition.wait(timeout=0.25)  # short waits keep Ctrl+C responsive
            frame, self._latest = self._latest, None
            return frame

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout_s + 1.0)
        self._capture.release()


def parse_camera(spec: str | int) -> int | str | Path:
    """``"0"`` -> camera index 0, ``"rtsp://..."`` -> URL, anything else -> a video file path."""
    if isinstance(spec, int) or re.fullmatch(r"\d+", str(spec)):
        return int(spec)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", str(spec)):
        return str(spec)
    return Path(spec)


def open_camera(spec: str | int, *, loop: bool = False, open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S) -> FrameSource:
    """Open ``--camera``: an index or URL as a live source; a file as a synchronous source at its own frame rate."""
    target = parse_camera(spec)
    if isinstance(target, Path):
        return VideoFileSource(target, loop=loop, realtime=True)
    return LiveCameraSource(target, open_timeout_s=open_timeout_s)


# -------------------------------------------------------------------------------------------------- display


def opencv_gui_available() -> bool:
    """True where the installed OpenCV can open a window here (GUI backend built in, and a display to use)."""
    gui_lines = [line for line in cv2.getBuildInformation().splitlines() if line.strip().startswith("GUI:")]
    if not gui_lines or gui_lines[0].split(":", 1)[1].strip().upper() == "NONE":
        return False
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False  # a GTK/Qt build without a display would abort the process in namedWindow
    try:
        cv2.namedWindow("ssdlite-gui-probe", cv2.WINDOW_NORMAL)
        cv2.destroyWindow("ssdlite-gui-probe")
    except cv2.error:
        return False
    return True


class OpenCVWindow:
    """An OpenCV window; ``show`` returns False once the user pressed q / Esc or closed the window."""

    def __init__(self, title: str = "ssdlite") -> None:
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)

    def show(self, image_rgb: np.ndarray) -> bool:
        cv2.imshow(self.title, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), ord("Q"), 27):
            return False
        return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        cv2.destroyWindow(self.title)
        cv2.waitKey(1)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
 body {{ margin: 0; background: #16181d; color: #e8e8e8; font: 14px/1.4 system-ui, sans-serif; }}
 header {{ padding: 8px 14px; background: #23262e; display: flex; gap: 18px; align-items: baseline; }}
 header b {{ font-size: 16px; }} #fps {{ color: #7fdc7f; font-variant-numeric: tabular-nums; }}
 main {{ display: flex; gap: 14px; padding: 12px; align-items: flex-start; }}
 #stream {{ width: 72vw; max-width: 1280px; max-height: 85vh; object-fit: contain; background: #000; }}
 ul {{ list-style: none; padding: 0; margin: 0; min-width: 170px; }}
 #count {{ color: #9aa0aa; }}
 li {{ padding: 2px 6px; border-bottom: 1px solid #2c2f38; }}
</style></head>
<body>
<header><b>{title}</b><span id="fps">connecting...</span><span id="size"></span><span id="count"></span></header>
<main><img id="stream" alt="live detections"><ul id="detections"></ul></main>
<script>
const img = document.getElementById("stream");
img.addEventListener("load", () => {{
  img.dataset.naturalWidth = img.naturalWidth;
  document.getElementById("size").textContent = "stream " + img.naturalWidth + "x" + img.naturalHeight;
}});
// Start the endless MJPEG response after the page's load event, so the page itself counts as loaded.
window.addEventListener("load", () => {{ img.src = "/stream.mjpg"; }});
async function poll() {{
  try {{
    const stats = await (await fetch("/stats.json", {{cache: "no-store"}})).json();
    document.getElementById("fps").textContent =
      stats.fps.toFixed(1) + " FPS, " + stats.latency_ms.toFixed(0) + " ms, frame " + stats.frame;
    const tracking = stats.detections.length > 0 && stats.detections[0].track_id !== undefined;
    document.getElementById("count").textContent =
      stats.detections.length + (tracking ? " tracks" : " objects");
    const list = document.getElementById("detections");
    list.replaceChildren(...stats.detections.slice(0, 20).map(d => {{
      const item = document.createElement("li");
      const id = d.track_id !== undefined ? "#" + d.track_id + " " : "";
      item.textContent = id + d.category_name + " " + d.score.toFixed(2);
      return item;
    }}));
  }} catch (error) {{ document.getElementById("fps").textContent = "stream ended"; }}
}}
setInterval(poll, 500); poll();
</script></body></html>
"""


class _HeaderDeadlineInput(io.RawIOBase):
    """A connection's input whose reads, until :meth:`headers_received`, all end by one deadline.

    A socket timeout bounds each read, so a client that sends one byte per timeout could take for ever over its
    request; here each read waits at most until ``deadline`` (``time.monotonic()``), then raises TimeoutError,
    which ``BaseHTTPRequestHandler`` answers by closing the connection.
    """

    def __init__(self, connection: socket.socket, *, deadline: float, idle_timeout_s: float) -> None:
        super().__init__()
        self._connection = connection
        self._idle_timeout_s = idle_timeout_s
        self.deadline: float | None = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the request headers did not arrive in time")
            self._connection.settimeout(min(remaining, self._idle_timeout_s))
        return self._connection.recv_into(buffer)

    def headers_received(self) -> None:
        """From now on only the idle timeout applies (the response may stream for as long as it is read)."""
        self.deadline = None
        self._connection.settimeout(self._idle_timeout_s)


class _BoundedHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer with at most ``max_clients`` handler threads.

    A connection beyond the cap gets "503 Service Unavailable" from the accepting thread itself: the reply fits in
    an empty socket buffer, so sending it never blocks. Its socket is then half-closed and kept until the client
    closes its side or ``REJECT_LINGER_S`` passes (checked in ``service_actions``, between accepts), so that the
    client's request arriving after the reply does not reset the connection before the client has read it.
    """

    daemon_threads = True
    request_queue_size = 64  # listen backlog (socketserver's 5 makes a burst of connections wait for SYN retries)
    REJECT_LINGER_S = 2.0
    _REJECTION_BODY = b"too many viewers of this stream; try again in a moment\n"
    _REJECTION = (
        b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 5\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_REJECTION_BODY), _REJECTION_BODY)
    )

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *, max_clients: int):
        self.max_clients = max_clients
        self._slots = threading.BoundedSemaphore(max_clients)
        self._rejected: list[tuple[socket.socket, float]] = []
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._reject(request)
            return
        try:
            super().process_request(request, client_address)  # starts the handler thread
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _reject(self, connection: socket.socket) -> None:
        try:
            connection.setblocking(False)
            self._drain(connection)
            connection.send(self._REJECTION)
            connection.shutdown(socket.SHUT_WR)
        except OSError:
            connection.close()
            return
        self._rejected.append((connection, time.monotonic() + self.REJECT_LINGER_S))

    @staticmethod
    def _drain(connection: socket.socket) -> bool:
        """Reads what the client sent so far without blocking; True once it has closed its side."""
        while True:
            try:
                if not connection.recv(4096):
                    return True
            except BlockingIOError:
                return False

    def service_actions(self) -> None:
        now, lingering = time.monotonic(), []
        for connection, deadline in self._rejected:
            try:
                finished = self._drain(connection) or now >= deadline
            except OSError:
                finished = True
            if finished:
                connection.close()
            else:
                lingering.append((connection, deadline))
        self._rejected = lingering

    def server_close(self) -> None:
        super().server_close()
        for connection, _ in self._rejected:
            connection.close()
        self._rejected = []


class StreamServer:
    """The MJPEG web view: ``/`` (page), ``/stream.mjpg``, ``/frame.jpg`` (latest frame), ``/stats.json``.

    Each connection is served by a thread, at most ``max_clients`` at once; more are answered 503. A connection
    that sends no request, or stops reading the stream, for ``client_timeout_s`` is closed, and so is one whose
    request line and headers are not complete ``header_timeout_s`` after it started, so neither idle nor slowly
    dribbling sockets can hold the threads.

    Args:
        host: interface to bind; 127.0.0.1 keeps it local (pass 0.0.0.0 to share it on the network).
        port: TCP port; 0 picks a free one (see ``url``).
        title: page title.
        jpeg_quality: 1..100.
        max_clients: connections served at once (>= 1).
        client_timeout_s: seconds a connection may stay silent or stalled (> 0).
        header_timeout_s: seconds from a connection's start to the end of its request headers (> 0).

    Raises:
        ValueError: the port is taken or cannot be bound, or a limit is not a positive number.
    """

    boundary = "ssdliteframe"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        title: str = "ssdlite",
        jpeg_quality: int = 80,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        client_timeout_s: float = DEFAULT_CLIENT_TIMEOUT_S,
        header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
    ):
        if isinstance(max_clients, bool) or not isinstance(max_clients, int) or max_clients < 1:
            raise ValueError(f"max_clients must be an integer >= 1 (connections served at once), got {max_clients!r}")
        for name, seconds in (("client_timeout_s", client_timeout_s), ("header_timeout_s", header_timeout_s)):
            if not (isinstance(seconds, numbers.Real) and 0 < seconds < math.inf):
                raise ValueError(f"{name} must be a finite number of seconds > 0, got {seconds!r}")
        self.title = title
        self.jpeg_quality = jpeg_quality
        self.client_timeout_s = float(client_timeout_s)
        self.header_timeout_s = float(header_timeout_s)
        self._condition = threading.Condition()
        self._jpeg: bytes | None = None
        self._stats: dict[str, Any] = {"fps": 0.0, "latency_ms": 0.0, "frame": 0, "detections": []}
        self._sequence = 0
        self._closed = False
        try:
            self._httpd = _BoundedHTTPServer((host, port), self._handler_class(), max_clients=max_clients)
        except OSError as error:
            raise ValueError(
                f"cannot serve on {host}:{port} ({error.strerror or error}); pick another port with --serve PORT "
                "(0 = any free port)"
            ) from error
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="mjpeg-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def publish(self, image_rgb: np.ndarray, stats: dict[str, Any]) -> None:
        """Make ``image_rgb`` the current frame (JPEG-encoded once here, for all viewers) with its stats."""
        ok, encoded = cv2.imencode(
            ".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality]
        )
        if not ok:
            return
        with self._condition:
            self._jpeg = encoded.tobytes()
            self._stats = stats
            self._sequence += 1
            self._condition.notify_all()

    def frames(self) -> Iterator[bytes]:
        """Each new JPEG as it is published, until the server closes."""
        seen = 0
        while True:
            with self._condition:
                if not self._closed and self._sequence == seen:
                    self._condition.wait(timeout=1.0)
                if self._closed:
                    return
                if self._sequence == seen or self._jpeg is None:
                    continue
                seen, jpeg = self._sequence, self._jpeg
            yield jpeg

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> StreamServer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = server.client_timeout_s  # socket timeout: a silent or stalled client frees its thread

            def setup(self) -> None:
                super().setup()
                self.rfile.close()  # the socket's own reader: replaced by one that keeps the header deadline
                self._input = _HeaderDeadlineInput(
                    self.connection,
                    deadline=time.monotonic() + server.header_timeout_s,
                    idle_timeout_s=server.client_timeout_s,
                )
                self.rfile = io.BufferedReader(self._input)

            def parse_request(self) -> bool:  # reads the headers (the request line is read before it)
                parsed = super().parse_request()
                self._input.headers_received()
                return parsed

            def log_message(self, format: str, *args: Any) -> None:  # quiet: no line per request
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                try:
                    if path in ("/", "/index.html"):
                        self._send(_PAGE.format(title=server.title).encode(), "text/html; charset=utf-8")
                    elif path == "/stats.json":
                        with server._condition:
                            body = json.dumps(server._stats).encode()
                        self._send(body, "application/json")
                    elif path == "/frame.jpg":
                        with server._condition:
                            jpeg = server._jpeg
                        if jpeg is None:
                            self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "no frame yet")
                        else:
                            self._send(jpeg, "image/jpeg")
                    elif path == "/stream.mjpg":
                        self._stream()
                    else:
                        self.send_error(HTTPStatus.NOT_FOUND)
                except (BrokenPipeError, ConnectionResetError, TimeoutError):
                    self.close_connection = True  # the viewer went away, or stopped reading for client_timeout_s

            def _send(self, body: bytes, content_type: str) -> None:
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _stream(self) -> None:
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={server.boundary}")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Connection", "close")
                self.end_headers()
                for jpeg in server.frames():
                    self.wfile.write(
                        f"--{server.boundary}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                    )
                    self.wfile.write(jpeg)
                    self.wfile.write(b"\r\n")
                    self.wfile.flush()

        return Handler


# ---------------------------------------------------------------------------------------------------- loop


class FpsMeter:
    """Frames per second over a sliding window of the last ``window`` frames."""

    def __init__(self, window: int = 30) -> None:
        self._times: deque[float] = deque(maxlen=window)

    def tick(self, now: float) -> float:
        self._times.append(now)
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)


def open_video_writer(path: str | Path, *, fps: float, frame_size: tuple[int, int]) -> cv2.VideoWriter:
    """A cv2.VideoWriter for ``.mp4`` (mp4v) or ``.avi`` (MJPG); ``frame_size`` is (width, height)."""
    path = Path(path)
    codec = VIDEO_WRITER_CODECS.get(path.suffix.lower())
    if codec is None:
        raise ValueError(f"cannot save video as {path}: use a .mp4 or .avi file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, frame_size)
    if not writer.isOpened():
        raise ValueError(f"cannot write video {path}: OpenCV has no {codec} encoder here; try .avi")
    return writer


class StopSignal(KeyboardInterrupt):
    """Raised by a signal's handler to stop ``run_stream`` as cleanly as Ctrl+C, naming the signal.

    A KeyboardInterrupt, so whatever stops cleanly on Ctrl+C stops on it too; ``run_stream`` records ``signum``
    in its summary (a plain KeyboardInterrupt is recorded as SIGINT, "Ctrl+C").

    Example:
        >>> def stop(signum, frame):
        ...     raise StopSignal(signum)
        >>> signal.signal(signal.SIGTERM, stop)  # doctest: +SKIP
    """

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(signal_name(self.signum))


def signal_name(signum: int) -> str:
    """``"SIGTERM"`` for 15; ``"signal 99"`` for a number without a name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@dataclass
class StreamSummary:
    """What a run of ``run_stream`` did.

    Attributes:
        frames: frames processed (detected, drawn, saved).
        seconds: wall time of the loop.
        dropped_frames: frames a live source captured that the model had no time for.
        stop_reason: "end of stream", "max frames", "q" (window), "stop requested" (``stop_event``), "Ctrl+C"
            (KeyboardInterrupt) or the name of the signal that raised :class:`StopSignal`, e.g. "SIGTERM".
        stop_signal: the signal that stopped the loop (SIGINT for Ctrl+C), None if none did.
        records: COCO-style detections per processed frame (image_id = frame index), if collected; with a
            tracker, the tracked objects, each with its ``track_id``.
    """

    frames: int = 0
    seconds: float = 0.0
    dropped_frames: int = 0
    stop_reason: str = "end of stream"
    stop_signal: int | None = None
    records: list[dict] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_status(self) -> int:
        """A command's status for this run: 0, or 128 + the signal that stopped it (130 Ctrl+C, 143 SIGTERM), as
        the shell reports a command the signal ended, so a scheduler does not take a stopped run for a finished one."""
        return 0 if self.stop_signal is None else 128 + self.stop_signal


def run_stream(
    predictor: Any,
    source: FrameSource,
    *,
    max_frames: int | None = None,
    window: OpenCVWindow | None = None,
    server: StreamServer | None = None,
    save_path: str | Path | None = None,
    collect_records: bool = False,
    stop_event: threading.Event | None = None,
    report_every_s: float = 2.0,
    tracker: Any = None,
    on_frame: Callable[[Frame, dict[str, np.ndarray], list[dict]], None] | None = None,
) -> StreamSummary:
    """Detect, draw (boxes + FPS/latency overlay) and show / serve / save every frame of ``source``.

    Stops at the end of the stream, after ``max_frames``, on q / Esc / window closed, when ``stop_event`` is
    set, or on Ctrl+C or a :class:`StopSignal` (KeyboardInterrupt is caught: the summary comes back, naming the
    signal, and the saved video is complete). SIGINT and SIGTERM wait while a frame's outputs are written
    (:func:`ssdlite_runtime.signals.signals_deferred`), so every output holds the same frames, as many as the summary
    counts.
    The caller closes ``source``, ``window`` and ``server``.

    Args:
        predictor: a ``Predictor`` (``predict``, ``class_names``, ``to_records``).
        source: where frames come from.
        max_frames: stop after this many frames (None: no limit).
        window: an OpenCV window to show frames in.
        server: the MJPEG web view to publish frames to.
        save_path: write the annotated frames to this .mp4 / .avi (at the source's frame rate, 25 if unknown).
        collect_records: keep COCO-style records of the detections in the summary.
        stop_event: set from another thread to stop.
        report_every_s: log the FPS this often (INFO).
        tracker: a ``ssdlite_runtime.tracking.Tracker``: each frame's detections go through it, and what is drawn,
            served, collected and passed to ``on_frame`` are its tracks (``#ID class score`` and trails).
        on_frame: called after each frame with the frame, its detections (or tracks, with ``track_ids``) and
            their COCO-style records (``track_id`` added when tracking), e.g. to write them out as they come.
    """
    summary = StreamSummary()
    meter = FpsMeter()
    writer: cv2.VideoWriter | None = None
    started = last_report = time.perf_counter()
    try:
        while max_frames is None or summary.frames < max_frames:
            if stop_event is not None and stop_event.is_set():
                summary.stop_reason = "stop requested"
                break
            frame = source.read()
            if frame is None:
                break
            [detections] = predictor.predict(frame.image)
            if tracker is not None:
                detections = tracker.update(detections)
                annotated = draw_tracks(frame.image, detections, predictor.class_names, tracker.trails, copy=False)
            else:
                annotated = draw_detections(frame.image, detections, predictor.class_names, copy=False)
            now = time.perf_counter()
            fps, latency_ms = meter.tick(now), (now - frame.captured_at) * 1000.0
            draw_stream_overlay(annotated, fps=fps, latency_ms=latency_ms)
            wants_records = collect_records or server is not None or on_frame is not None
            records = predictor.to_records(detections, image_id=frame.index) if wants_records else []
            if tracker is not None:
                for record, track_id in zip(records, detections["track_ids"].tolist()):
                    record["track_id"] = track_id
            with signals_deferred():  # a frame's outputs are written whole, and it is counted, or none of them is
                if on_frame is not None:
                    on_frame(frame, detections, records)
                if collect_records:
                    summary.records.extend(records)
                if save_path is not None:
                    if writer is None:
                        height, width = annotated.shape[:2]
                        writer = open_video_writer(save_path, fps=source.fps or 25.0, frame_size=(width, height))
                    writer.write(cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR))
                if server is not None:
                    stats = {"fps": fps, "latency_ms": latency_ms, "frame": frame.index, "detections": records}
                    server.publish(annotated, stats)
                summary.frames += 1
            if window is not None and not window.show(annotated):
                summary.stop_reason = "q"
                break
            if now - last_report >= report_every_s:
                objects = f"{len(detections['scores'])} {'tracks' if tracker is not None else 'objects'}"
                logger.info(f"frame {frame.index}: {fps:.1f} FPS, latency {latency_ms:.0f} ms, {objects}")
                last_report = now
        else:
            summary.stop_reason = "max frames"
    except KeyboardInterrupt as interrupt:
        summary.stop_signal = int(getattr(interrupt, "signum", signal.SIGINT))
        summary.stop_reason = "Ctrl+C" if summary.stop_signal == signal.SIGINT else signal_name(summary.stop_signal)
    finally:
        if writer is not None:
            writer.release()
        summary.seconds = time.perf_counter() - started
        summary.dropped_frames = source.dropped_frames
    return summary


def watch_stdin_for_quit(stop_event: threading.Event) -> bool:
    """Set ``stop_event`` when the user types q + Enter in the terminal (POSIX, stdin a terminal).

    Returns:
        Whether it watches (False where stdin is not a terminal).

    Reads the raw file descriptor with ``select`` and a timeout rather than ``sys.stdin.readline()``: a daemon
    thread blocked inside the buffered stdin object can abort the interpreter at exit.
    """
    if os.name != "posix" or not sys.stdin or not sys.stdin.isatty():
        return False
    descriptor = sys.stdin.fileno()

    def watch() -> None:
        pending = b""
        while not stop_event.is_set():
            ready, _, _ = select.select([descriptor], [], [], 0.25)
            if not ready:
                continue
            chunk = os.read(descriptor, 256)
            if not chunk:  # end of input
                return
            *lines, pending = (pending + chunk).split(b"\n")
            if any(line.strip().lower() in (b"q", b"quit") for line in lines):
                stop_event.set()
                return

    threading.Thread(target=watch, name="stdin-quit", daemon=True).start()
    return True
