"""``ssdlite-serve MODEL``: an HTTP inference server for every file the ``Predictor`` opens (extra ``serve``:
FastAPI on uvicorn, prometheus-client, python-multipart; imported inside functions, so this package imports
without them).

Requests that arrive together run as one batch on one inference thread, off the event loop; the limits (body size,
queue, time) answer with one-line JSON errors and the server goes on serving.

Modules:
    batching   DynamicBatcher: queued images into batches of up to --max-batch, waiting at most --max-wait-ms for
               them to fill, run on one inference thread; the queue cap and the per-request timeout (asyncio and
               numpy only, tested with a fake predictor)
    app        create_app: the FastAPI application (POST /v1/detect, /healthz, /readyz, /metrics, /docs), the
               request path (size cap, decoding in a worker thread, the batcher) and every refusal as
               {"error": ...}; ServeSettings
    schemas    the JSON answers as dataclasses, which FastAPI describes in /openapi.json
    metrics    the Prometheus metrics of /metrics
    cli        the command: its options, loading the model as ssdlite-detect does, uvicorn on a socket of ours (the
               URL printed, port 0 = a free one), SIGTERM / Ctrl+C answered by draining and exit 0
"""

from __future__ import annotations

import os

__all__ = ["MAX_IMAGE_PIXELS", "main"]

MAX_IMAGE_PIXELS = 50_000_000
"""The most pixels the server decodes an image to (a 50-megapixel photo, 150 MB decoded): a 20 MB upload of a
flat PNG could otherwise decode to OpenCV's own limit, 2**30 pixels (3 GB), per request. The environment variable
OPENCV_IO_MAX_IMAGE_PIXELS, which OpenCV reads when it loads, sets another limit."""


def main(argv: list[str] | None = None, *, prog: str = "ssdlite-serve") -> int:
    """The ``ssdlite-serve`` command (:func:`ssdlite_runtime.serve.cli.main`), imported when it runs: importing this
    package loads nothing else. The decoding limit is set first, before OpenCV loads (larger images: 400)."""
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))
    from ssdlite_runtime.serve import cli

    return cli.main(argv, prog=prog)
