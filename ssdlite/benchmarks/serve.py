"""HTTP serving: ``ssdlite-serve`` on loopback under 1, 4 and 16 concurrent clients, against the in-process Predictor.

The server is a process of its own (``python -m ssdlite_runtime.serve FILE --port 0``, its default batching: up to 8
images, 5 ms wait), serving an ONNX file with NMS inside and a dynamic batch. At each concurrency level a pool of
client threads, each with its own keep-alive connection, posts one JPEG camera frame (480 x 640) a fixed number of
times (200; smoke: 8), within a time cap; the level reports images / s over its wall time, p50 and p99 latency
(from sending a request to reading its answer), the server's mean batch size (from its /metrics) and the answers
that were not 200.

The reference is the Predictor in this process on the same file and the same decoded frame, at batch sizes 1, 4 and
8 (the best of them), measured before the server starts and after it stops (the better of the two: the machine's
other load moves it). ``serve_c16_vs_predictor_best`` (server at 16 clients / that best,
higher is better; the goal is 0.9) is what the HTTP layer, the JPEG decoding and the batching cost. Both run with the
runtime's default threads. The clients share the machine with the server, which the Predictor alone does not: on
2 cores read the ratio as a floor.

The model: ``--checkpoint``, a checkpoint (exported here) or an exported file (served as it is); else
ssdlite_mobilenet_v2 with random weights (smoke: width 0.35 at 128 px).
"""

from __future__ import annotations

import http.client
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .inputs import benchmark_model, camera_frames
from .options import BenchmarkOptions
from .timing import alternating_rates

CONCURRENCY = (1, 4, 16)
PREDICTOR_BATCHES = (1, 4, 8)
REQUESTS, SMOKE_REQUESTS = 200, 8
LEVEL_CAP_S = 120.0
"""A level stops sending after this long (its remaining requests are reported as not sent)."""
START_CAP_S = 120.0
JPEG_QUALITY = 90


def measure_serve(options: BenchmarkOptions) -> dict[str, dict[str, Any]]:
    """Server throughput and latency per concurrency level, and the in-process Predictor's (see the module
    docstring)."""
    from ssdlite_runtime.image_io import decode_image
    from ssdlite_runtime.plugins import missing_packages

    missing = missing_packages(["fastapi", "uvicorn", "prometheus_client", "python_multipart"])
    if missing:
        return {"info": {"serve": f"not measured: {', '.join(missing)} missing (pip install 'ssdlite-runtime[serve]')"}}
    frame = camera_frames(1, seed=5)[0]
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1]
    jpeg = jpeg.tobytes()
    requests = SMOKE_REQUESTS if options.smoke else REQUESTS
    with tempfile.TemporaryDirectory(prefix="ssdlite_benchmark_") as scratch:
        model_file, model_info = _served_file(options, Path(scratch))
        predictor, described = _predictor(model_file)
        before = _predictor_rates(predictor, decode_image(jpeg), options)
        levels, server = _server_levels(model_file, jpeg, requests)
        after = _predictor_rates(predictor, decode_image(jpeg), options)
    predictor_rates = {batch: max(before[batch], after[batch]) for batch in PREDICTOR_BATCHES}
    return _report(levels, predictor_rates, server, {
        **model_info, "predictor": described, "image": f"one {frame.shape[0]} x {frame.shape[1]} JPEG camera frame "
        f"(quality {JPEG_QUALITY}, {len(jpeg)} bytes)", "requests_per_level": requests,
    })


def _served_file(options: BenchmarkOptions, scratch: Path) -> tuple[Path, dict[str, Any]]:
    """An exported file to serve: ``--checkpoint`` itself if a runtime backend reads it, else the model (the
    checkpoint's, or random weights) exported to ONNX with NMS inside and a dynamic batch."""
    from ssdlite_runtime.backends.base import file_kind

    if options.checkpoint is not None and file_kind(options.checkpoint) is not None:
        return Path(options.checkpoint), {"model": str(options.checkpoint)}
    from ssdlite.deploy.export import export_onnx

    model, model_info = benchmark_model(options)
    return export_onnx(model, scratch / "model.onnx", with_nms=True, dynamic_batch=True), model_info


def _predictor(model_file: Path) -> tuple[Any, str]:
    from ssdlite_runtime.predictor import Predictor

    predictor = Predictor(model_file)
    return predictor, predictor.describe()


def _predictor_rates(predictor: Any, image: np.ndarray, options: BenchmarkOptions) -> dict[int, float]:
    """Images / s of ``predictor.predict([image] * B)`` for each batch size B, in alternating rounds over half of
    ``options.seconds`` (it runs before and after the server; the report keeps the better of the two)."""
    pipelines = {batch: (lambda item, batch=batch: predictor.predict([item] * batch)) for batch in PREDICTOR_BATCHES}
    calls = alternating_rates(pipelines, [image], seconds=0.1 if options.smoke else options.seconds / 2,
                              rounds=2 if options.smoke else 3)
    return {batch: rate * batch for batch, rate in calls.items()}


# ------------------------------------------------------------------------------------------------ the server


class _Server:
    """``python -m ssdlite_runtime.serve FILE --port 0``: started, read up to its URL, ready, stopped by SIGTERM."""

    def __init__(self, model_file: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ssdlite_runtime.serve", str(model_file), "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self.url = self._wait_for_url()
        threading.Thread(target=self._drain_output, daemon=True).start()
        self._wait_until_ready()

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def _wait_for_url(self) -> str:
        for line in self.process.stdout:  # the server prints its URL within seconds, or exits
            self.lines.append(line.rstrip())
            if line.startswith("serving ") and " on http://" in line:
                return line.split(" on ", 1)[1].split()[0]
        raise RuntimeError(f"ssdlite-serve exited with status {self.process.wait()}: {self.lines[-5:]}")

    def _drain_output(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_CAP_S
        while self.get("/readyz")[0] != 200:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"ssdlite-serve did not get ready: {self.lines[-5:]}")
            time.sleep(0.05)

    def get(self, path: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def batches(self) -> tuple[float, float]:
        """(images, batches) the server has run so far, from its /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        text = self.get("/metrics")[1].decode()
        values = {sample.name: sample.value for family in text_string_to_metric_families(text)
                  for sample in family.samples if sample.name.startswith("ssdlite_serve_batch_size_")}
        return values.get("ssdlite_serve_batch_size_sum", 0.0), values.get("ssdlite_serve_batch_size_count", 0.0)

    def stop(self) -> int:
        """SIGTERM, and the exit status (0: drained and stopped)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def _server_levels(model_file: Path, jpeg: bytes, requests: int) -> tuple[dict[int, dict[str, Any]], dict[str, Any]]:
    """Each concurrency level's figures, and the server's facts (its start-up lines, exit status)."""
    server = _Server(model_file)
    try:
        _post_all(server.port, jpeg, requests=4, clients=1)  # warm-up: connections, the first batches
        levels = {}
        for clients in CONCURRENCY:
            images_before, batches_before = server.batches()
            levels[clients] = _post_all(server.port, jpeg, requests=requests, clients=clients)
            images, batches = server.batches()
            levels[clients]["mean_batch_size"] = (images - images_before) / max(batches - batches_before, 1.0)
    finally:
        status = server.stop()
    return levels, {"exit_status": status, "start_up": server.lines[:4]}


def _post_all(port: int, jpeg: bytes, *, requests: int, clients: int) -> dict[str, Any]:
    """``requests`` posts of ``jpeg`` from ``clients`` threads, one keep-alive connection each, within
    :data:`LEVEL_CAP_S`: {images_per_s, latencies_ms, errors, not_sent}."""
    local = threading.local()
    deadline = time.perf_counter() + LEVEL_CAP_S

    def post(_: int) -> tuple[float, int] | None:
        if time.perf_counter() > deadline:
            return None
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        started = time.perf_counter()
        try:
            local.connection.request("POST", "/v1/detect", body=jpeg, headers={"Content-Type": "image/jpeg"})
            response = local.connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException, ValueError):
            local.connection.close()
            del local.connection
            status = 0
        return (time.perf_counter() - started) * 1000.0, status

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients, thread_name_prefix="client") as pool:
        results = list(pool.map(post, range(requests)))
    seconds = time.perf_counter() - started
    sent = [result for result in results if result is not None]
    latencies = [latency for latency, status in sent if status == 200]
    return {
        "images_per_s": len(latencies) / seconds,
        "latencies_ms": latencies,
        "errors": len(sent) - len(latencies),
        "not_sent": requests - len(sent),
    }


def _percentile(values: list[float], percent: float) -> float:
    return float(np.percentile(values, percent)) if values else float("nan")


def _report(levels: dict[int, dict[str, Any]], predictor_rates: dict[int, float], server: dict[str, Any],
            facts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    best_batch = max(predictor_rates, key=predictor_rates.get)
    throughput = {f"serve_c{clients}": level["images_per_s"] for clients, level in levels.items()}
    throughput.update({f"serve_predictor_b{batch}": rate for batch, rate in predictor_rates.items()})
    throughput["serve_predictor_best"] = predictor_rates[best_batch]
    latency = {}
    for clients, level in levels.items():
        latency[f"serve_c{clients}_p50"] = _percentile(level["latencies_ms"], 50)
        latency[f"serve_c{clients}_p99"] = _percentile(level["latencies_ms"], 99)
    top = max(CONCURRENCY)
    return {
        "throughput": throughput,
        "latency_ms": latency,
        "ratios": {f"serve_c{top}_vs_predictor_best": levels[top]["images_per_s"] / predictor_rates[best_batch]},
        "info": {"serve": {
            **facts,
            "predictor_best_batch": best_batch,
            "errors": sum(level["errors"] + level["not_sent"] for level in levels.values()),
            "levels": {f"c{clients}": {"errors": level["errors"], "not_sent": level["not_sent"],
                                       "mean_batch_size": round(level["mean_batch_size"], 2),
                                       "mean_latency_ms": round(statistics.fmean(level["latencies_ms"]), 2)
                                       if level["latencies_ms"] else None}
                       for clients, level in levels.items()},
            "server": server,
        }},
    }
