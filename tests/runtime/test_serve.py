"""``ssdlite-serve`` as a real process: uvicorn on a free port (``--port 0``, the URL read from its first lines)
serving the tiny detector's ONNX file (tests/deploy/tiny_detector.py), with real HTTP clients (http.client with
keep-alive, and raw sockets for what a well-behaved client never does).

One server serves the module (a small body cap and a long batching wait, so concurrent requests batch), in an
interpreter where importing torch, Lightning or ssdlite fails (tests/runtime/test_without_torch.py's blocker): the
server is the runtime's alone. The SIGTERM test starts its own, since it ends it. The batcher's logic (queue cap, timeouts, batch composition) is tested
in-process with a fake model in tests/runtime/test_serve_in_process.py.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssdlite_runtime.image_io import decode_image
from ssdlite_runtime.predictor import Predictor
from ssdlite_runtime.serve import MAX_IMAGE_PIXELS
from tests.deploy import tiny_detector as tiny
from tests.runtime.test_without_torch import BLOCKER

pytestmark = pytest.mark.slow  # starts server processes
pytest.importorskip("fastapi", reason="the serve extra: pip install 'ssdlite-runtime[serve]'")
text_string_to_metric_families = pytest.importorskip("prometheus_client.parser").text_string_to_metric_families

MAX_BODY_MB = 0.25
MAX_WAIT_MS = 150
"""Long enough that requests sent together land in one batch on a busy machine."""
START_TIMEOUT_S = 120


@dataclass
class Server:
    """A running ``ssdlite-serve`` process and what it printed on stdout so far."""

    process: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    url: str = ""
    changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def read_stdout(self) -> None:
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait_for_line(self, part: str, timeout_s: float = START_TIMEOUT_S) -> str:
        """The first stdout line containing ``part``, waiting for it."""
        def found() -> str | None:
            return next((line for line in self.lines if part in line), None)

        with self.changed:
            self.changed.wait_for(lambda: found() is not None or self.process.poll() is not None, timeout_s)
            line = found()
        assert line is not None, f"no {part!r} line; stdout: {self.lines}; exit status {self.process.poll()}"
        return line

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)


def start_server(model: Path, *options: str, env: dict[str, str] | None = None) -> Server:
    """``python -m ssdlite_runtime.serve MODEL --port 0 OPTIONS``, once its URL is printed and /readyz is 200."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ssdlite_runtime.serve", str(model), "--port", "0", *options],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    server = Server(process)
    threading.Thread(target=server.read_stdout, daemon=True).start()
    line = server.wait_for_line("serving ")
    server.url = line.split(" on ", 1)[1].split()[0]
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        status, answer = request(server, "GET", "/readyz")
        assert status in (200, 503), answer
        if status == 200:
            return server
        assert "error" in answer and time.monotonic() < deadline, answer
        time.sleep(0.02)


def stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


def request(server: Server, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, connection: http.client.HTTPConnection | None = None
            ) -> tuple[int, dict]:
    """(status, JSON answer) of one request, on ``connection`` (kept alive) or a new one."""
    own = connection is None
    connection = connection or server.connection()
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        payload = response.read()
        return response.status, json.loads(payload) if payload else {}
    finally:
        if own:
            connection.close()


def detect(server: Server, body: bytes, content_type: str = "image/jpeg", **kwargs) -> tuple[int, dict]:
    return request(server, "POST", "/v1/detect", body, {"Content-Type": content_type}, **kwargs)


def multipart(fields: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body of file fields ``{name: (file name, bytes)}``, and its Content-Type."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, (file_name, data) in fields.items():
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{file_name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n")
        parts.append(head.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def metrics(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: {(name, sorted labels): value}."""
    connection = server.connection()
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("Content-Type").startswith("text/plain")
        text = response.read().decode()
    finally:
        connection.close()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def sample(values: dict, name: str, **labels: str) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


def raw_socket(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """(status, body) of the HTTP answer on a raw socket (read until the server closes it or the body is whole)."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _content_length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _content_length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def model() -> Path:
    """The tiny detector as ONNX with NMS inside and a dynamic batch."""
    return tiny.exported_for_predictor("ort")[1]


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    image = tiny.scene_images()[0]
    return cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


@pytest.fixture(scope="module")
def server(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    site = tmp_path_factory.mktemp("without_torch")
    (site / "sitecustomize.py").write_text(BLOCKER)
    server = start_server(model, "--max-body-mb", str(MAX_BODY_MB), "--max-wait-ms", str(MAX_WAIT_MS),
                          env={**os.environ, "PYTHONPATH": str(site)})
    yield server
    stop(server)


# ------------------------------------------------------------------------------------------------ answers


def assert_matches_predictor(answer: dict, expected: dict, predictor: Predictor) -> None:
    got = answer["detections"]
    assert len(got) == len(expected["scores"]) > 0
    np.testing.assert_allclose([item["box"] for item in got], expected["boxes"], atol=1e-3)
    np.testing.assert_allclose([item["score"] for item in got], expected["scores"], atol=1e-3)
    labels = expected["labels"].tolist()
    assert [item["category_id"] for item in got] == [predictor.category_ids[label - 1] for label in labels]
    assert [item["category_name"] for item in got] == [predictor.class_names[label - 1] for label in labels]


def test_detect_raw_and_multipart_give_the_predictors_detections(server, model, jpeg):
    predictor = Predictor(model)
    decoded = decode_image(jpeg)
    [expected] = predictor.predict(decoded)
    status, raw = detect(server, jpeg)
    assert status == 200, raw
    body, content_type = multipart({"image": ("scene.jpg", jpeg)})
    status, form = detect(server, body, content_type)
    assert status == 200, form
    for answer in (raw, form):
        assert_matches_predictor(answer, expected, predictor)
        assert answer["image"] == {"width": decoded.shape[1], "height": decoded.shape[0]}
        assert answer["batch_size"] >= 1
        timing = answer["timing_ms"]
        assert 0 <= timing["queue"] <= timing["total"] and 0 < timing["inference"] <= timing["total"]
    assert raw["detections"] == form["detections"]


def test_health_readiness_and_the_api_description(server):
    assert request(server, "GET", "/healthz") == (200, {"status": "alive"})
    status, ready = request(server, "GET", "/readyz")
    assert status == 200 and ready["status"] == "ready" and ready["model"] == "model.onnx"
    assert ready["max_batch"] == 8 and "ort" in ready["backend"]
    status, api = request(server, "GET", "/openapi.json")
    assert status == 200
    operation = api["paths"]["/v1/detect"]["post"]
    assert {"image/*", "multipart/form-data"} <= set(operation["requestBody"]["content"])
    assert {"200", "400", "413", "503", "504"} <= set(operation["responses"])
    schemas = api["components"]["schemas"]
    assert set(schemas["DetectResponse"]["properties"]) == {"image", "detections", "batch_size", "timing_ms"}
    assert set(schemas["Detection"]["properties"]) == {"box", "score", "category_id", "category_name"}
    assert request(server, "GET", "/no/such/path") == (404, {"error": "Not Found"})


def test_metrics_count_requests_errors_and_inference(server, jpeg):
    before = metrics(server)
    assert detect(server, jpeg)[0] == 200
    assert detect(server, b"not an image")[0] == 400
    after = metrics(server)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved("ssdlite_serve_requests_total", endpoint="/v1/detect", status="200") == 1
    assert moved("ssdlite_serve_requests_total", endpoint="/v1/detect", status="400") == 1
    assert moved("ssdlite_serve_errors_total", endpoint="/v1/detect", reason="bad_image") == 1
    assert moved("ssdlite_serve_request_duration_seconds_count", endpoint="/v1/detect") == 2
    assert moved("ssdlite_serve_inference_duration_seconds_count") == 1
    assert moved("ssdlite_serve_batch_size_sum") == 1
    assert sample(after, "ssdlite_serve_queue_depth") == 0
    assert sample(after, "ssdlite_serve_ready") == 1


# ------------------------------------------------------------------------------------------------ bad requests


def test_bad_requests_get_one_line_json_errors(server, jpeg):
    status, answer = detect(server, b"\x00garbage\xff" * 10)
    assert status == 400 and answer["error"].startswith("cannot decode the image: ") and "\n" not in answer["error"]
    status, answer = detect(server, b"")
    assert status == 400 and answer["error"].startswith("empty body")
    status, answer = detect(server, jpeg[: len(jpeg) // 2])
    assert status == 400 and "truncated JPEG" in answer["error"]
    body, content_type = multipart({"picture": ("scene.jpg", jpeg)})
    status, answer = detect(server, body, content_type)
    assert status == 400 and "field 'image' is missing (fields: picture)" in answer["error"]
    status, answer = detect(server, b"--x\r\nbroken", "multipart/form-data; boundary=x")
    assert status == 400 and "field 'image' is missing (fields: none)" in answer["error"]
    # A decompression bomb: a 0.2 MB PNG of 64 megapixels (190 MB decoded) is over the server's decoding limit.
    bomb = cv2.imencode(".png", np.zeros((8000, 8000), np.uint8))[1].tobytes()
    status, answer = detect(server, bomb, "image/png")
    assert status == 400 and f"more than {MAX_IMAGE_PIXELS} pixels" in answer["error"], answer
    assert detect(server, jpeg)[0] == 200


def test_a_body_over_the_cap_gets_413_whether_declared_or_counted(server, jpeg):
    over = int(MAX_BODY_MB * 2**20) + 1
    with raw_socket(server) as sock:  # declared: answered before any of the body is sent
        sock.sendall(f"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {over}\r\n\r\n"
                     .encode())
        status, body = read_answer(sock)
    assert status == 413 and "over the server's limit of 0.25 MB (--max-body-mb)" in json.loads(body)["error"]
    with raw_socket(server) as sock:  # chunked, no length: counted as it arrives
        sock.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"x" * 65536
        for _ in range(over // len(piece) + 1):
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        status, body = read_answer(sock)
    assert status == 413 and "so far" in json.loads(body)["error"]
    assert detect(server, jpeg)[0] == 200


def test_a_thousand_bad_requests_in_a_row_then_a_good_one(server, jpeg):
    connection = server.connection()  # one keep-alive connection: the server must not drop it either
    bad = [b"", b"garbage", jpeg[:100], b"\xff\xd8\xff" + b"\x00" * 50]
    try:
        for index in range(1000):
            status, answer = detect(server, bad[index % len(bad)], connection=connection)
            assert status == 400 and answer["error"], (index, answer)
        status, answer = detect(server, jpeg, connection=connection)
    finally:
        connection.close()
    assert status == 200 and len(answer["detections"]) > 0


def test_a_client_gone_mid_upload_and_a_slow_client_leave_the_server_serving(server, jpeg):
    before = metrics(server)
    with raw_socket(server) as sock:  # promises 10 000 bytes, sends 100, hangs up
        sock.sendall(f"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Length: {len(jpeg) + 10_000}\r\n\r\n".encode()
                     + jpeg[:100])
    with raw_socket(server) as sock:  # the whole body, in four pieces with pauses
        sock.sendall(f"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                     "\r\n\r\n".encode())
        quarter = len(jpeg) // 4 + 1
        for start in range(0, len(jpeg), quarter):
            time.sleep(0.1)
            sock.sendall(jpeg[start:start + quarter])
        status, body = read_answer(sock)
    assert status == 200 and len(json.loads(body)["detections"]) > 0
    assert detect(server, jpeg)[0] == 200
    for _ in range(200):  # the server notices the hang-up on its own time
        if sample(metrics(server), "ssdlite_serve_errors_total", endpoint="/v1/detect", reason="disconnected") > \
                sample(before, "ssdlite_serve_errors_total", endpoint="/v1/detect", reason="disconnected"):
            break
        time.sleep(0.02)
    else:
        pytest.fail("the client that went away was not counted as disconnected")


def test_concurrent_requests_are_batched(server, jpeg):
    clients = 6
    before = metrics(server)
    barrier = threading.Barrier(clients)
    answers: list[tuple[int, dict]] = []

    def client() -> None:
        connection = server.connection()
        connection.connect()
        barrier.wait()
        answers.append(detect(server, jpeg, connection=connection))
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [status for status, _ in answers] == [200] * clients
    assert max(answer["batch_size"] for _, answer in answers) > 1
    after = metrics(server)
    images = sample(after, "ssdlite_serve_batch_size_sum") - sample(before, "ssdlite_serve_batch_size_sum")
    batches = sample(after, "ssdlite_serve_batch_size_count") - sample(before, "ssdlite_serve_batch_size_count")
    assert images == clients and batches < clients


# ------------------------------------------------------------------------------------------------ shutting down


def test_sigterm_answers_the_request_in_flight_and_exits_0(model, jpeg):
    server = start_server(model, "--max-wait-ms", "0")
    try:
        with raw_socket(server) as sock:
            sock.sendall(f"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: "
                         f"{len(jpeg)}\r\n\r\n".encode() + jpeg[:200])
            # A request answered after the upload started: the server's loop has read the upload's first bytes.
            assert request(server, "GET", "/healthz")[0] == 200
            server.process.send_signal(signal.SIGTERM)
            server.wait_for_line("SIGTERM: finishing the requests in flight", 30)
            sock.sendall(jpeg[200:])
            status, body = read_answer(sock)
        assert status == 200 and len(json.loads(body)["detections"]) > 0
        assert server.process.wait(30) == 0, server.lines
        server.wait_for_line("stopped", 5)
    finally:
        stop(server)


def test_slice_options_reach_the_served_predictor(model, monkeypatch):
    """--slice and --slice-overlap are ssdlite-detect's: the Predictor the server answers with slices (the serving
    itself is stubbed: the options are what is tested)."""
    from ssdlite_runtime.serve import cli

    served = {}
    monkeypatch.setattr(cli, "serve", lambda predictor, settings, **_: served.update(predictor=predictor))
    assert cli.main([str(model), "--slice", "64", "--slice-overlap", "0.25", "--port", "0"]) == 0
    assert (served["predictor"].slice_size, served["predictor"].slice_overlap) == (64, 0.25)
