"""A thread-per-connection HTTP server whose clients cannot hold its threads.

``ThreadingHTTPServer`` gives each connection a thread, so an idle, stalled or slow client keeps one for as long as
it likes. Here:

* :class:`BoundedHTTPServer` runs at most ``max_clients`` handler threads; a connection beyond the cap is answered
  503 from the accepting thread, without a thread of its own;
* :class:`DeadlineRequestHandler` drops a client that sends nothing or stops reading for ``timeout`` seconds (a
  socket timeout), and one whose request line and headers are not complete ``header_timeout_s`` after it
  connected, however slowly it keeps sending (a socket timeout alone restarts with every byte, so a slowloris
  client dribbling a byte at a time would hold a slot for ever).
"""

from __future__ import annotations

import io
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_MAX_CLIENTS = 32
"""Connections served at once (a viewer's page of the web view holds one for the stream and one per stats poll)."""
DEFAULT_CLIENT_TIMEOUT_S = 10.0
"""Seconds a connection may send nothing (no request) or read nothing (a stalled viewer) before it is dropped."""
DEFAULT_HEADER_TIMEOUT_S = 10.0
"""Seconds from a connection's start to the end of its request headers, however slowly it sends them; then it is
dropped."""


class HeaderDeadlineInput(io.RawIOBase):
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


class DeadlineRequestHandler(BaseHTTPRequestHandler):
    """A request handler that keeps ``timeout`` (idle seconds) and ``header_timeout_s`` (see the module docstring)
    and logs nothing per request; subclasses set both and add their ``do_GET``."""

    timeout: float = DEFAULT_CLIENT_TIMEOUT_S  # socket timeout: a silent or stalled client frees its thread
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket's own reader: replaced by one that keeps the header deadline
        self._input = HeaderDeadlineInput(
            self.connection, deadline=time.monotonic() + self.header_timeout_s, idle_timeout_s=self.timeout
        )
        self.rfile = io.BufferedReader(self._input)

    def parse_request(self) -> bool:  # reads the headers (the request line is read before it)
        parsed = super().parse_request()
        self._input.headers_received()
        return parsed

    def log_message(self, format: str, *args: Any) -> None:  # quiet: no line per request
        pass


class BoundedHTTPServer(ThreadingHTTPServer):
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
