"""The web view of a stream: a small page at http://127.0.0.1:PORT with the annotated frames (MJPEG,
multipart/x-mixed-replace), the FPS and the current detections (``/stats.json``, polled by the page; with
tracking, the live track ids; with counting, each line's and zone's counts per class).

The page is ``webview.html`` (package data), its ``$title`` filled in with :class:`string.Template`; the server is
a :class:`~ssdlite_runtime.stream.bounded_http.BoundedHTTPServer`, so idle, stalled and slow viewers cannot hold
its threads.
"""

from __future__ import annotations

import html
import json
import math
import numbers
import string
import threading
from collections.abc import Iterator
from http import HTTPStatus
from importlib import resources
from typing import Any

import cv2
import numpy as np

from ssdlite_runtime.stream.bounded_http import (
    DEFAULT_CLIENT_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MAX_CLIENTS,
    BoundedHTTPServer,
    DeadlineRequestHandler,
)

PAGE_FILE = "webview.html"
"""The viewer's page, package data of ``ssdlite_runtime.stream`` (runtime/pyproject.toml puts it in the wheel)."""


def render_page(title: str) -> str:
    """The viewer's page with ``title`` (HTML-escaped) as its title and heading."""
    template = resources.files("ssdlite_runtime.stream").joinpath(PAGE_FILE).read_text(encoding="utf-8")
    return string.Template(template).substitute(title=html.escape(title))


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
        _check_limits(max_clients, client_timeout_s=client_timeout_s, header_timeout_s=header_timeout_s)
        self.title = title
        self.jpeg_quality = jpeg_quality
        self.client_timeout_s = float(client_timeout_s)
        self.header_timeout_s = float(header_timeout_s)
        self.page = render_page(title).encode()
        self._condition = threading.Condition()
        self._jpeg: bytes | None = None
        self._stats: dict[str, Any] = {"fps": 0.0, "latency_ms": 0.0, "frame": 0, "detections": []}
        self._sequence = 0
        self._closed = False
        try:
            self._httpd = BoundedHTTPServer((host, port), self._handler_class(), max_clients=max_clients)
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

    def latest_jpeg(self) -> bytes | None:
        """The current frame as JPEG (None before the first)."""
        with self._condition:
            return self._jpeg

    def stats_json(self) -> bytes:
        """The current frame's stats as JSON."""
        with self._condition:
            return json.dumps(self._stats).encode()

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

    def _handler_class(self) -> type[DeadlineRequestHandler]:
        server = self

        class Handler(_ViewerHandler):
            view = server
            timeout = server.client_timeout_s
            header_timeout_s = server.header_timeout_s

        return Handler


class _ViewerHandler(DeadlineRequestHandler):
    """The routes of :class:`StreamServer` (``view``, set on the subclass each server makes)."""

    view: StreamServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path in ("/", "/index.html"):
                self._send(self.view.page, "text/html; charset=utf-8")
            elif path == "/stats.json":
                self._send(self.view.stats_json(), "application/json")
            elif path == "/frame.jpg":
                jpeg = self.view.latest_jpeg()
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
        boundary = self.view.boundary
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={boundary}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        for jpeg in self.view.frames():
            self.wfile.write(f"--{boundary}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode())
            self.wfile.write(jpeg)
            self.wfile.write(b"\r\n")
            self.wfile.flush()


def _check_limits(max_clients: int, **seconds: float) -> None:
    if isinstance(max_clients, bool) or not isinstance(max_clients, int) or max_clients < 1:
        raise ValueError(f"max_clients must be an integer >= 1 (connections served at once), got {max_clients!r}")
    for name, value in seconds.items():
        if not (isinstance(value, numbers.Real) and 0 < value < math.inf):
            raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
