"""The FastAPI application of ``ssdlite-serve``: :func:`create_app` around a loaded ``Predictor``.

Endpoints:
    POST /v1/detect          an image (JPEG, PNG, BMP, WebP) as the raw request body (any content type but
                             multipart) or as the file field ``image`` of a multipart form; answers
                             :class:`~ssdlite_runtime.serve.schemas.DetectResponse` JSON
    GET /healthz             200 while the process serves
    GET /readyz              200 once the model is loaded and warmed up by one inference, 503 before
    GET /metrics             Prometheus text (:mod:`ssdlite_runtime.serve.metrics`)
    GET /docs, /openapi.json FastAPI's API documentation, with the answers' schemas

The request path of a detection: the body is read with the size cap, the image decoded in a worker thread
(:func:`ssdlite_runtime.image_io.decode_image`, as ``ssdlite-detect`` reads files), then queued for the
:class:`~ssdlite_runtime.serve.batching.DynamicBatcher`, which runs batches of concurrent requests on one inference
thread. Every refusal is JSON ``{"error": "one line"}``, and the server goes on serving after it:

======  ==========================================================================================================
status  when
======  ==========================================================================================================
400     empty body, bytes that are not a decodable image, a multipart form without the file field ``image``
404     an unknown path (405: a known path with another method)
408     the body did not arrive within ``--timeout-s``
413     a body over ``--max-body-mb`` (its Content-Length says so, or it grows past the cap as it arrives); the
        connection is closed after the answer, so the rest of the upload is not read
499     (in /metrics only) the client went away before its body was complete
500     the model raised on the batch (a fault of the server, not of the image)
503     ``--max-queue`` images are waiting already; the model's warm-up failed; the server is shutting down
504     no answer within ``--timeout-s`` of the request's start (upload, decoding, queue wait and inference)
======  ==========================================================================================================
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations (Request) when the routes are
# made, and those classes are imported inside create_app (the runtime imports optional packages inside functions).

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ssdlite_runtime.errors import one_line
from ssdlite_runtime.image_io import ImageReadError, decode_image
from ssdlite_runtime.serve.batching import (
    BatchedResult,
    DynamicBatcher,
    QueueFull,
    RequestTimeout,
    ShuttingDown,
)
from ssdlite_runtime.serve.metrics import ServeMetrics, build_metrics
from ssdlite_runtime.serve.schemas import DetectResponse, ErrorResponse, HealthResponse, ReadyResponse

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.requests import Request

    from ssdlite_runtime.predictor import Predictor

__all__ = ["DETECT_PATH", "IMAGE_FIELD", "MB", "RequestError", "ServeSettings", "create_app"]

logger = logging.getLogger(__name__)

MB = 2**20
"""A megabyte of ``--max-body-mb``."""
DETECT_PATH = "/v1/detect"
IMAGE_FIELD = "image"
"""The multipart form field that holds the image (``curl -F image=@photo.jpg``)."""
ENDPOINTS = frozenset((DETECT_PATH, "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"))
"""The paths /metrics counts by name (any other: "other")."""
SEND_AN_IMAGE = (
    f"send an image (JPEG, PNG, BMP, WebP) as the request body, or as the file field {IMAGE_FIELD!r} of a multipart "
    f"form (curl -F {IMAGE_FIELD}=@photo.jpg)"
)


@dataclass(frozen=True)
class ServeSettings:
    """The server's batching and limits (``ssdlite-serve``'s options of the same names).

    Attributes:
        max_batch: images per batch at most (already lowered to the model's fixed batch, if it has one).
        max_wait_ms: how long the oldest waiting image waits for others to join its batch.
        max_queue: images waiting for a batch at most; more requests get 503.
        max_body_mb: the largest request body, in MB of 2**20 bytes; larger ones get 413.
        timeout_s: a request's time limit from its start: 408 while its body arrives, 504 after.
    """

    max_batch: int = 8
    max_wait_ms: float = 5.0
    max_queue: int = 64
    max_body_mb: float = 20.0
    timeout_s: float = 30.0

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * MB)


class RequestError(Exception):
    """A request the server refuses: answered ``status`` with ``{"error": message}``, counted under ``reason``.

    Attributes:
        status: the HTTP status.
        message: one line for the client.
        reason: the ``reason`` label of ``ssdlite_serve_errors_total``.
        close: close the connection after the answer (a body left unread).
    """

    def __init__(self, status: int, message: str, reason: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = one_line(message)
        self.reason = reason
        self.close = close


@dataclass
class _Service:
    """What the endpoints share: the model, the settings, the batcher, the metrics and the readiness."""

    predictor: "Predictor"
    model_name: str
    settings: ServeSettings
    batcher: DynamicBatcher
    metrics: ServeMetrics
    ready: bool = False
    failure: str | None = None


def create_app(predictor: "Predictor", settings: ServeSettings, *, model_name: str = "model") -> "FastAPI":
    """The application: endpoints, error answers, request metrics, and the batcher started and warmed up with the
    app (its lifespan), stopped after the requests in flight are answered.

    Args:
        predictor: the loaded model; from now on only the batcher's inference thread calls it.
        settings: batching and limits; ``settings.max_batch`` is taken as it is (lower it to the model's fixed
            batch first: :func:`ssdlite_runtime.serve.cli.batch_limit`).
        model_name: the model file's name, for /readyz.
    """
    from fastapi import FastAPI

    predictor.batch_size = settings.max_batch  # one batch of the batcher is one forward pass
    batcher = DynamicBatcher(
        predictor.predict, max_batch=settings.max_batch, max_wait_s=settings.max_wait_ms / 1000.0,
        max_queue=settings.max_queue,
    )
    metrics = build_metrics(max_batch=settings.max_batch, queue_depth=lambda: batcher.queued)
    batcher.on_batch = metrics.observe_batch
    service = _Service(predictor, model_name, settings, batcher, metrics)
    app = FastAPI(
        title="ssdlite-serve", version="1", lifespan=_lifespan(service),
        description=f"SSDLite object detection over HTTP: {predictor.describe()}.",
    )
    _add_error_handlers(app, service)
    _add_routes(app, service)
    app.add_middleware(_RequestMetrics, metrics=service.metrics)
    return app


def _lifespan(service: _Service) -> Any:
    """Starts the batcher and its warm-up with the app; on the way out (after uvicorn has answered the requests
    in flight) stops it."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        await service.batcher.start()
        warm_up = asyncio.create_task(_warm_up(service))
        try:
            yield
        finally:
            warm_up.cancel()
            await service.batcher.close()

    return lifespan


async def _warm_up(service: _Service) -> None:
    """One inference on a blank image of the model's input size, on the inference thread; then /readyz is 200."""
    side = service.predictor.image_size
    started = time.perf_counter()
    try:
        await service.batcher.call(lambda: service.predictor.predict([np.zeros((side, side, 3), np.uint8)]))
    except Exception as error:
        service.failure = f"the model failed its warm-up inference: {one_line(error) or type(error).__name__}"
        logger.error(service.failure)
        return
    service.ready = True
    service.metrics.ready.set(1)
    logger.info(f"ready: warmed up in {(time.perf_counter() - started) * 1000:.0f} ms")


# ------------------------------------------------------------------------------------------------ the endpoints

_ERRORS = {status: {"model": ErrorResponse} for status in (400, 408, 413, 500, 503, 504)}
_DETECT_BODY = {
    "requestBody": {
        "required": True,
        "description": f"the image as the raw body, or as the file field {IMAGE_FIELD!r} of a multipart form",
        "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [IMAGE_FIELD],
                    "properties": {IMAGE_FIELD: {"type": "string", "format": "binary"}},
                }
            },
        },
    }
}
"""The request body of POST /v1/detect in the OpenAPI document (the endpoint reads the body itself, to cap it)."""


def _add_routes(app: "FastAPI", service: _Service) -> None:
    from fastapi import Request
    from fastapi.responses import JSONResponse, Response

    @app.post(DETECT_PATH, response_model=DetectResponse, responses=_ERRORS, openapi_extra=_DETECT_BODY)
    async def detect(request: Request) -> Response:
        """Detect objects in one image: boxes in its pixels, scores, classes, and the time spent."""
        started = time.perf_counter()
        return JSONResponse(await _detect(request, service, started))

    @app.get("/healthz", response_model=HealthResponse)
    async def healthz() -> Response:
        """200 while the process serves (liveness)."""
        return JSONResponse({"status": "alive"})

    @app.get("/readyz", response_model=ReadyResponse, responses={503: {"model": ErrorResponse}})
    async def readyz() -> Response:
        """200 once the model is loaded and warmed up by one inference, 503 before (readiness)."""
        if not service.ready:
            return JSONResponse({"error": service.failure or "not ready: warming the model up"}, status_code=503)
        return JSONResponse({
            "status": "ready", "model": service.model_name, "backend": service.predictor.describe(),
            "max_batch": service.settings.max_batch,
        })

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """The server's metrics in Prometheus' text format."""
        text, content_type = service.metrics.exposition()
        return Response(text, media_type=content_type)


async def _detect(request: "Request", service: _Service, started: float) -> dict[str, Any]:
    """The answer to POST /v1/detect (see the module docstring for the refusals)."""
    if service.failure is not None:
        raise RequestError(503, service.failure, "not_ready")
    if service.batcher.full():  # refused before reading and decoding the image
        raise RequestError(503, _queue_full_message(service), "queue_full")
    deadline = started + service.settings.timeout_s
    body = await _within(deadline, _read_body(request, service.settings.max_body_bytes), 408,
                         f"the body did not arrive within {service.settings.timeout_s:g} s (--timeout-s)", "body_timeout")
    image = await _within(deadline, _decoded(request, body), 504, _timeout_message(service), "timeout")
    try:
        result = await service.batcher.submit(image, timeout_s=max(deadline - time.perf_counter(), 0.0))
    except QueueFull:
        raise RequestError(503, _queue_full_message(service), "queue_full") from None
    except RequestTimeout:
        raise RequestError(504, _timeout_message(service), "timeout") from None
    except ShuttingDown as error:
        raise RequestError(503, str(error), "shutting_down") from None
    except Exception as error:  # the model's fault, not the image's: the server goes on
        message = f"the model failed on this batch: {type(error).__name__}: {one_line(error)}"
        logger.error(message)
        raise RequestError(500, message, "inference") from None
    service.metrics.queue_wait_seconds.observe(result.queue_s)
    return _detections_payload(service.predictor, image, result, started)


def _queue_full_message(service: _Service) -> str:
    return (f"busy: {service.batcher.queued} images are waiting already (--max-queue {service.settings.max_queue}); "
            "retry later")


def _timeout_message(service: _Service) -> str:
    return f"no answer within {service.settings.timeout_s:g} s (--timeout-s): the server is overloaded"


async def _within(deadline: float, work: Any, status: int, message: str, reason: str) -> Any:
    """``await work`` until ``deadline`` (perf_counter seconds); past it, a :class:`RequestError`."""
    try:
        return await asyncio.wait_for(work, max(deadline - time.perf_counter(), 0.0))
    except asyncio.TimeoutError:
        raise RequestError(status, message, reason) from None


async def _read_body(request: "Request", limit: int) -> bytes:
    """The whole body, refused with 413 as soon as its declared or received size passes ``limit`` bytes."""
    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit, so_far=True)
            chunks.append(chunk)
    except ClientDisconnect:
        raise RequestError(499, "the client went away before its body was complete", "disconnected") from None
    return b"".join(chunks)


def _too_large(size: int, limit: int, *, so_far: bool = False) -> RequestError:
    what = f"over {size / MB:.1f} MB so far" if so_far else f"{size / MB:.1f} MB"
    return RequestError(413, f"the body is {what}, over the server's limit of {limit / MB:g} MB (--max-body-mb)",
                        "too_large", close=True)


async def _decoded(request: "Request", body: bytes) -> np.ndarray:
    """The image of the request: the multipart field ``image``, or the whole body; decoded in a worker thread."""
    from starlette.concurrency import run_in_threadpool

    data = await _multipart_image(request, body) if _is_multipart(request) else body
    if not data:
        raise RequestError(400, f"empty body: {SEND_AN_IMAGE}", "empty_body")
    try:
        return await run_in_threadpool(decode_image, data, "the request body")
    except ImageReadError as error:
        raise RequestError(400, f"cannot decode the image: {error.reason}; {SEND_AN_IMAGE}", "bad_image") from None


def _is_multipart(request: "Request") -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def _multipart_image(request: "Request", body: bytes) -> bytes:
    """The bytes of the form's file field ``image`` (the form parsed from ``body``, already read and capped)."""
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
    from starlette.formparsers import MultiPartException
    from starlette.requests import Request

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=4, max_fields=16)
    except (HTTPException, MultiPartException) as error:
        detail = getattr(error, "detail", None) or getattr(error, "message", "")
        raise RequestError(400, f"bad multipart form: {detail}; {SEND_AN_IMAGE}", "bad_multipart") from None
    try:
        upload = form.get(IMAGE_FIELD)
        if not isinstance(upload, UploadFile):
            found = "text, not a file" if upload is not None else f"missing (fields: {', '.join(form) or 'none'})"
            raise RequestError(400, f"the form's field {IMAGE_FIELD!r} is {found}; {SEND_AN_IMAGE}", "bad_multipart")
        return await upload.read()
    finally:
        await form.close()


def _detections_payload(predictor: "Predictor", image: np.ndarray, result: BatchedResult,
                        started: float) -> dict[str, Any]:
    """The JSON of :class:`~ssdlite_runtime.serve.schemas.DetectResponse`: boxes to a thousandth of a pixel and
    scores to 5 decimals, as :func:`ssdlite_runtime.records.predictions_to_coco_results` writes them."""
    detections = result.detections
    boxes = np.round(detections["boxes"].astype(np.float64), 3).tolist()
    scores = np.round(detections["scores"].astype(np.float64), 5).tolist()
    names, ids = predictor.class_names, predictor.category_ids
    return {
        "image": {"width": int(image.shape[1]), "height": int(image.shape[0])},
        "detections": [
            {"box": box, "score": score, "category_id": ids[label - 1], "category_name": names[label - 1]}
            for box, score, label in zip(boxes, scores, detections["labels"].tolist())
        ],
        "batch_size": result.batch_size,
        "timing_ms": {
            "queue": round(result.queue_s * 1000, 3),
            "inference": round(result.inference_s * 1000, 3),
            "total": round((time.perf_counter() - started) * 1000, 3),
        },
    }


# ------------------------------------------------------------------------------------------------ errors, metrics


def _add_error_handlers(app: "FastAPI", service: _Service) -> None:
    """Every refusal as ``{"error": "one line"}``, counted in ``ssdlite_serve_errors_total``."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    def answer(request: Any, status: int, message: str, reason: str, close: bool = False) -> JSONResponse:
        service.metrics.errors.labels(_endpoint(request.scope), reason).inc()
        headers = {"Connection": "close"} if close else None
        return JSONResponse({"error": one_line(message)}, status_code=status, headers=headers)

    async def refused(request: Any, error: RequestError) -> JSONResponse:
        return answer(request, error.status, error.message, error.reason, error.close)

    async def http_error(request: Any, error: HTTPException) -> JSONResponse:
        return answer(request, error.status_code, str(error.detail), f"http_{error.status_code}")

    async def invalid(request: Any, error: RequestValidationError) -> JSONResponse:
        return answer(request, 422, f"invalid request: {error.errors()}", "invalid")

    async def failed(request: Any, error: Exception) -> JSONResponse:
        logger.error(f"{request.method} {request.url.path} failed: {type(error).__name__}: {one_line(error)}")
        return answer(request, 500, f"the server failed: {type(error).__name__}: {one_line(error)}", "internal")

    app.add_exception_handler(RequestError, refused)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, failed)


def _endpoint(scope: dict[str, Any]) -> str:
    path = scope.get("path", "")
    return path if path in ENDPOINTS else "other"


class _RequestMetrics:
    """Pure ASGI middleware: counts each HTTP request by endpoint and status, and times it to its last byte."""

    def __init__(self, app: Any, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_and_note(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            endpoint = _endpoint(scope)
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.request_seconds.labels(endpoint).observe(time.perf_counter() - started)
