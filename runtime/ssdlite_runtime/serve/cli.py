"""``ssdlite-serve MODEL``: serve an exported model (or a checkpoint, with the full ssdlite package) over HTTP.

Usage:
    ssdlite-serve runs/shapes/model.onnx --port 8000
    curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg' http://127.0.0.1:8000/v1/detect
    curl -F image=@photo.jpg http://127.0.0.1:8000/v1/detect

The model loads as ``ssdlite-detect --model`` loads it (same ``--backend``, ``--score-threshold``, ``--classes``)
before the port opens, so a wrong file fails at once with a one-line error (exit 2). Then one line on stdout gives
the URL (``--port 0`` picks a free port), /readyz turns 200 after one warm-up inference, and SIGTERM or Ctrl+C
stops taking connections, answers the requests in flight (at most ``--drain-s`` seconds) and exits 0.
Endpoints, batching and limits: :mod:`ssdlite_runtime.serve.app`, :mod:`ssdlite_runtime.serve.batching`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssdlite_runtime.argtypes import checked, class_list, port, positive_int, real_number, unit_interval
from ssdlite_runtime.backends.base import available_backends
from ssdlite_runtime.detect import add_slicing_options
from ssdlite_runtime.errors import command
from ssdlite_runtime.logs import ConsoleHandler
from ssdlite_runtime.plugins import require
from ssdlite_runtime.serve.app import MB, ServeSettings

if TYPE_CHECKING:
    from ssdlite_runtime.predictor import Predictor

logger = logging.getLogger(__name__)

PROG = "ssdlite-serve"
PACKAGES = ("fastapi", "uvicorn", "prometheus_client", "python_multipart")
"""What the ``serve`` extra installs (importable names)."""
INSTALL = "pip install 'ssdlite-runtime[serve]'"
DEFAULT_PORT = 8000
DEFAULT_HOST = "127.0.0.1"

_seconds = checked(real_number, lambda n: n > 0, "a number of seconds above 0")
_non_negative_ms = checked(real_number, lambda n: n >= 0, "0 or more milliseconds")
_megabytes = checked(real_number, lambda n: 0 < n * MB < 2**40, "a size in MB above 0 (and under a terabyte)")


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    defaults = ServeSettings()
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="MODEL", help="exported file (.onnx, INT8 .onnx, .xml, .tflite, .ncnn.param) "
                        "or a checkpoint (.ckpt, with the full ssdlite package)")
    model = parser.add_argument_group("model (as ssdlite-detect)")
    model.add_argument("--backend", choices=available_backends(), help="default: from the model file's name")
    model.add_argument("--device", default="cpu", help="torch device of the eager backend, e.g. cuda (default: cpu)")
    model.add_argument("--score-threshold", type=unit_interval, default=None, metavar="S",
                       help="answer detections scoring above S, 0 to 1 (default: 0.4)")
    model.add_argument("--classes", type=class_list, action="extend", metavar="NAME[,NAME...]",
                       help="answer only these classes")
    add_slicing_options(model)
    server = parser.add_argument_group("server")
    server.add_argument("--host", default=DEFAULT_HOST, help=f"interface to listen on (default: {DEFAULT_HOST}, this "
                        "machine only; 0.0.0.0 for every IPv4 interface)")
    server.add_argument("--port", type=port, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0: a free "
                        "one, printed at start-up)")
    server.add_argument("--max-batch", type=positive_int, default=defaults.max_batch, metavar="N",
                        help=f"images per batch at most (default {defaults.max_batch}; a model exported with a fixed "
                        "batch of 1 takes 1)")
    server.add_argument("--max-wait-ms", type=_non_negative_ms, default=defaults.max_wait_ms, metavar="MS",
                        help=f"how long a request waits for others to batch with (default {defaults.max_wait_ms:g})")
    server.add_argument("--max-queue", type=positive_int, default=defaults.max_queue, metavar="N",
                        help=f"images waiting for a batch at most; more get 503 (default {defaults.max_queue})")
    server.add_argument("--max-body-mb", type=_megabytes, default=defaults.max_body_mb, metavar="MB",
                        help=f"largest request body; larger get 413 (default {defaults.max_body_mb:g})")
    server.add_argument("--timeout-s", type=_seconds, default=defaults.timeout_s, metavar="S",
                        help=f"a request's time limit: 408 while its body arrives, 504 after (default "
                        f"{defaults.timeout_s:g})")
    server.add_argument("--drain-s", type=_seconds, default=30.0, metavar="S",
                        help="on SIGTERM / Ctrl+C, how long to wait for the requests in flight (default 30)")
    return parser


def batch_limit(predictor: Predictor, max_batch: int) -> int:
    """``max_batch``, lowered to the model's fixed batch size when its file has one (an ONNX or OpenVINO file
    exported without a dynamic batch: 1), with a note saying so."""
    fixed = getattr(predictor.backend, "fixed_batch", None)
    if fixed is None or fixed >= max_batch:
        return max_batch
    logger.info(f"note: the model was exported with a fixed batch of {fixed}, so requests run {fixed} at a time "
                f"(--max-batch {max_batch} lowered to {fixed}; export with --dynamic-batch to batch them)")
    return fixed


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening (port 0: a free one).

    Raises:
        ValueError: the host does not resolve, or the port is taken or not ours to use.
    """
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as error:
        raise ValueError(f"--host {host}: not an address of this machine ({error.strerror})") from None
    # The protocol named, not 0: asyncio switches Nagle's algorithm off (TCP_NODELAY) only on sockets whose proto
    # is TCP, and with it on, each answer's body waited for the client's delayed ACK (40 ms a request).
    sock = socket.socket(family, kind, protocol)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port} ({error.strerror or error}); pick another --port, or "
                         "--port 0 for any free one") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.contextmanager
def signals_end_the_server() -> Iterator[None]:
    """SIGINT and SIGTERM handled by uvicorn while it serves, then ignored once: uvicorn, after a graceful
    shutdown, raises the signal again with the handler it found, and the command then exits 0 rather than die of
    it (or raise KeyboardInterrupt)."""
    previous = {signum: signal.signal(signum, _already_drained) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _already_drained(signum: int, frame: object) -> None:
    """The signal uvicorn raises again after it has drained the requests: nothing left to do."""


def _server(config: Any) -> Any:
    """A ``uvicorn.Server`` that says, when asked to stop, that it is answering the requests in flight."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if not self.should_exit:
                name = signal.Signals(sig).name
                logger.info(f"{name}: finishing the requests in flight, then stopping (again to force it)")
            super().handle_exit(sig, frame)

    return Server(config)


def serve(predictor: Predictor, settings: ServeSettings, *, host: str, port: int, drain_s: float,
          model_name: str = "model") -> None:
    """Serves ``predictor`` on ``host:port`` until SIGTERM or Ctrl+C, then answers the requests in flight.

    Raises:
        ValueError: the port cannot be used.
        RuntimeError: the server did not start (uvicorn logged why).
    """
    import uvicorn

    from ssdlite_runtime.serve.app import create_app

    app = create_app(predictor, settings, model_name=model_name)
    sock = listening_socket(host, port)
    config = uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=drain_s,
                            server_header=False)
    server = _server(config)
    uvicorn_logger = logging.getLogger("uvicorn")
    uvicorn_logger.setLevel(logging.WARNING)
    if not any(isinstance(handler, ConsoleHandler) for handler in uvicorn_logger.handlers):
        uvicorn_logger.addHandler(ConsoleHandler())
    url = url_of(sock)
    logger.info(f"serving {model_name} on {url} (POST {url}/v1/detect, API docs {url}/docs); Ctrl+C or SIGTERM stops")
    with sock, signals_end_the_server():
        server.run(sockets=[sock])
    if not server.started:
        raise RuntimeError("the server did not start (see the error above)")
    logger.info("stopped")


@command(PROG)
def main(argv: list[str] | None = None, *, prog: str = PROG) -> int:
    """Exit status: 0 stopped by SIGTERM / Ctrl+C after answering the requests in flight, 2 bad input (a missing or
    unreadable model, a taken port, the serve extra not installed), 1 an unexpected error."""
    args = build_parser(prog).parse_args(argv)
    require(PACKAGES, needed_by=prog, install=INSTALL)
    from ssdlite_runtime.jobs import DetectOptions, load_predictor

    predictor = load_predictor(DetectOptions(
        model=args.model, backend=args.backend, device=args.device, score_threshold=args.score_threshold,
        classes=args.classes, slice_size=args.slice_size, slice_overlap=args.slice_overlap,
    ))
    settings = ServeSettings(
        max_batch=batch_limit(predictor, args.max_batch), max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
        max_body_mb=args.max_body_mb, timeout_s=args.timeout_s,
    )
    logger.info(f"batches of up to {settings.max_batch} images, waiting at most {settings.max_wait_ms:g} ms for them "
                f"to fill; at most {settings.max_queue} waiting")
    serve(predictor, settings, host=args.host, port=args.port, drain_s=args.drain_s, model_name=Path(args.model).name)
    return 0
