"""What ``GET /metrics`` shows, in Prometheus' text format (prometheus-client, imported inside :func:`build_metrics`).

==============================================  =========  ==========================================================
metric                                          type       what
==============================================  =========  ==========================================================
``ssdlite_serve_requests_total``                counter    HTTP requests answered, by ``endpoint`` and ``status``
``ssdlite_serve_errors_total``                  counter    requests refused or failed, by ``endpoint`` and ``reason``
``ssdlite_serve_request_duration_seconds``      histogram  time from the request's start to its answer, by endpoint
``ssdlite_serve_inference_duration_seconds``    histogram  ``Predictor.predict`` time of each batch
``ssdlite_serve_queue_wait_seconds``            histogram  time an image waited for its batch
``ssdlite_serve_batch_size``                    histogram  images per batch
``ssdlite_serve_queue_depth``                   gauge      images waiting for a batch now
``ssdlite_serve_ready``                         gauge      1 once the model is loaded and warmed up
``process_*``                                   (several)  the server process's CPU time, memory, open files
==============================================  =========  ==========================================================

Endpoints are the server's paths (``/v1/detect``, ``/healthz``, ...), any other path is ``other``, so a scan of
random URLs cannot grow the label set. The metrics live in a registry of their own (not prometheus-client's global
one), so two apps in one process do not share counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["ServeMetrics", "batch_size_buckets", "build_metrics"]

NAMESPACE = "ssdlite_serve"
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""From a millisecond (a health check) to half a minute (a request that waits out a long queue)."""


@dataclass(frozen=True)
class ServeMetrics:
    """The server's metrics (prometheus-client objects) and their registry."""

    registry: Any
    requests: Any
    errors: Any
    request_seconds: Any
    inference_seconds: Any
    queue_wait_seconds: Any
    batch_size: Any
    ready: Any

    def observe_batch(self, size: int, inference_s: float) -> None:
        """Records one batch (the batcher's ``on_batch``)."""
        self.batch_size.observe(size)
        self.inference_seconds.observe(inference_s)

    def exposition(self) -> tuple[bytes, str]:
        """(the text of ``GET /metrics``, its content type)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def batch_size_buckets(max_batch: int) -> tuple[float, ...]:
    """Powers of two up to ``max_batch``, and ``max_batch`` itself: a batch of 1 has its own bucket."""
    sizes = {1, max_batch}
    size = 2
    while size < max_batch:
        sizes.add(size)
        size *= 2
    return tuple(float(size) for size in sorted(sizes))


def build_metrics(*, max_batch: int, queue_depth: Callable[[], float]) -> ServeMetrics:
    """The metrics of one server, in a registry of their own; ``queue_depth()`` is read at each scrape."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    common = dict(namespace=NAMESPACE, registry=registry)
    depth = Gauge("queue_depth", "Images waiting for a batch.", **common)
    depth.set_function(queue_depth)
    return ServeMetrics(
        registry=registry,
        requests=Counter("requests", "HTTP requests answered.", ["endpoint", "status"], **common),
        errors=Counter("errors", "Requests refused or failed, by reason.", ["endpoint", "reason"], **common),
        request_seconds=Histogram(
            "request_duration_seconds", "Time from a request's start to its answer.", ["endpoint"],
            buckets=LATENCY_BUCKETS_S, **common,
        ),
        inference_seconds=Histogram(
            "inference_duration_seconds", "Predictor.predict time of each batch.", buckets=LATENCY_BUCKETS_S, **common
        ),
        queue_wait_seconds=Histogram(
            "queue_wait_seconds", "Time an image waited for its batch.", buckets=LATENCY_BUCKETS_S, **common
        ),
        batch_size=Histogram("batch_size", "Images per batch.", buckets=batch_size_buckets(max_batch), **common),
        ready=Gauge("ready", "1 once the model is loaded and warmed up.", **common),
    )
