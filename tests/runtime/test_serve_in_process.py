"""ssdlite_runtime.serve in the test's process, without a model or a socket: the dynamic batcher driven by a fake
predictor (batching, the wait for a batch to fill, the queue cap, timeouts, errors, shutting down); the application
called as ASGI (readiness before and after the warm-up, 503 for a full queue, 504 past the timeout, 500 for a model
that fails, and serving on after each); the fixed-batch limit, the metrics' buckets, and the command's one-line
errors (a missing model, a missing extra, a taken port).

The fake predictor records the batches it gets, and can be held on a ``threading.Event`` to stand for a slow model,
so each case is deterministic and takes milliseconds; tests/runtime/test_serve.py runs the real server."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import threading
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from ssdlite_runtime.errors import DEBUG_ENV
from ssdlite_runtime.serve.app import ServeSettings, create_app
from ssdlite_runtime.serve.batching import DynamicBatcher, QueueFull, RequestTimeout, ShuttingDown
from ssdlite_runtime.serve.cli import batch_limit, listening_socket, url_of
from ssdlite_runtime.serve.metrics import batch_size_buckets
from tests.commands_in_process import one_error_line, run_main

HELD_S = 5.0
"""How long a held fake model waits for its release at most (a failing test must not hang)."""


class FakePredictor:
    """``predict(images)`` -> one ``{"index": image[0, 0, 0]}`` per image; records each batch's indices. Held, it
    waits for :meth:`release` before answering (a slow model)."""

    def __init__(self, *, held: bool = False, fails: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self.released = threading.Event()
        if not held:
            self.released.set()
        self.fails = fails

    def predict(self, images: list[np.ndarray]) -> list[dict]:
        self.batches.append([int(image[0, 0, 0]) for image in images])
        self.started.set()
        assert self.released.wait(HELD_S), "the test never released the fake model"
        if self.fails:
            raise RuntimeError("the model fell over")
        return [{"index": int(image[0, 0, 0])} for image in images]

    def release(self) -> None:
        self.released.set()


def image(index: int) -> np.ndarray:
    return np.full((2, 2, 3), index, np.uint8)


def run(scenario) -> None:
    """Runs ``await scenario()`` on a fresh event loop."""
    asyncio.run(asyncio.wait_for(scenario(), 10))


async def started(predictor: FakePredictor, **settings) -> DynamicBatcher:
    batcher = DynamicBatcher(predictor.predict, **settings)
    await batcher.start()
    return batcher


async def until(condition, timeout_s: float = HELD_S) -> None:
    """Yields to the loop until ``condition()`` holds."""
    for _ in range(int(timeout_s / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


def test_requests_that_arrive_together_run_as_one_batch():
    predictor = FakePredictor()

    async def scenario():
        batcher = await started(predictor, max_batch=8, max_wait_s=0.05)
        results = await asyncio.gather(*(batcher.submit(image(index)) for index in range(5)))
        await batcher.close()
        assert [result.detections["index"] for result in results] == [0, 1, 2, 3, 4]  # each gets its own
        assert {result.batch_size for result in results} == {5}
        assert all(result.queue_s >= 0 and result.inference_s >= 0 for result in results)

    run(scenario)
    assert predictor.batches == [[0, 1, 2, 3, 4]]


def test_batches_hold_at_most_max_batch_images_in_arrival_order():
    predictor = FakePredictor()

    async def scenario():
        batcher = await started(predictor, max_batch=4, max_wait_s=0.05)
        await asyncio.gather(*(batcher.submit(image(index)) for index in range(10)))
        await batcher.close()

    run(scenario)
    assert predictor.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_a_request_waits_max_wait_for_company():
    predictor = FakePredictor()

    async def scenario():
        batcher = await started(predictor, max_batch=8, max_wait_s=0.3)
        first = asyncio.ensure_future(batcher.submit(image(1)))
        await asyncio.sleep(0.05)  # well within the first one's wait: joins its batch
        await asyncio.gather(first, batcher.submit(image(2)))
        await batcher.close()

    run(scenario)
    assert predictor.batches == [[1, 2]]


def test_without_a_wait_a_lone_request_goes_alone():
    predictor = FakePredictor()

    async def scenario():
        batcher = await started(predictor, max_batch=8, max_wait_s=0.0)
        first = asyncio.ensure_future(batcher.submit(image(1)))
        await until(lambda: predictor.batches)
        await asyncio.gather(first, batcher.submit(image(2)))
        await batcher.close()

    run(scenario)
    assert predictor.batches == [[1], [2]]


def test_images_queued_during_a_batch_run_together_next():
    predictor = FakePredictor(held=True)

    async def scenario():
        batcher = await started(predictor, max_batch=8, max_wait_s=0.0)
        first = asyncio.ensure_future(batcher.submit(image(0)))
        await until(predictor.started.is_set)
        rest = [asyncio.ensure_future(batcher.submit(image(index))) for index in (1, 2, 3)]
        await until(lambda: batcher.queued == 3)
        predictor.release()
        results = await asyncio.gather(first, *rest)
        await batcher.close()
        assert [result.batch_size for result in results] == [1, 3, 3, 3]
        assert min(result.queue_s for result in results[1:]) > 0  # they waited for the first batch

    run(scenario)
    assert predictor.batches == [[0], [1, 2, 3]]


def test_a_full_queue_refuses_at_once_and_the_queued_requests_are_answered():
    predictor = FakePredictor(held=True)

    async def scenario():
        batcher = await started(predictor, max_batch=1, max_wait_s=0.0, max_queue=2)
        running = asyncio.ensure_future(batcher.submit(image(0)))
        await until(predictor.started.is_set)  # image 0 is in the model, the queue is empty
        queued = [asyncio.ensure_future(batcher.submit(image(index))) for index in (1, 2)]
        await until(lambda: batcher.queued == 2)
        assert batcher.full()
        with pytest.raises(QueueFull, match="--max-queue 2"):
            await batcher.submit(image(3))
        predictor.release()
        results = await asyncio.gather(running, *queued)
        assert [result.detections["index"] for result in results] == [0, 1, 2]
        assert not batcher.full()
        await batcher.close()

    run(scenario)
    assert predictor.batches == [[0], [1], [2]]


def test_a_request_that_times_out_is_dropped_from_the_queue():
    predictor = FakePredictor(held=True)

    async def scenario():
        batcher = await started(predictor, max_batch=4, max_wait_s=0.0)
        running = asyncio.ensure_future(batcher.submit(image(0)))
        await until(predictor.started.is_set)
        with pytest.raises(RequestTimeout, match="within 0.05 s"):
            await batcher.submit(image(1), timeout_s=0.05)  # queued behind the held batch
        patient = asyncio.ensure_future(batcher.submit(image(2)))
        await until(lambda: batcher.queued == 1)  # the timed-out image no longer counts
        predictor.release()
        await asyncio.gather(running, patient)
        await batcher.close()

    run(scenario)
    assert predictor.batches == [[0], [2]]  # image 1 never reached the model


def test_a_failing_batch_fails_its_requests_and_the_batcher_goes_on():
    predictor = FakePredictor(fails=True)

    async def scenario():
        batcher = await started(predictor, max_batch=8, max_wait_s=0.05)
        results = await asyncio.gather(*(batcher.submit(image(index)) for index in range(3)), return_exceptions=True)
        assert [str(result) for result in results] == ["the model fell over"] * 3
        predictor.fails = False
        assert (await batcher.submit(image(7))).detections == {"index": 7}
        await batcher.close()

    run(scenario)


def test_closing_fails_the_queued_requests_and_waits_for_the_running_batch():
    predictor = FakePredictor(held=True)

    async def scenario():
        batcher = await started(predictor, max_batch=1, max_wait_s=0.0)
        running = asyncio.ensure_future(batcher.submit(image(0)))
        await until(predictor.started.is_set)
        queued = asyncio.ensure_future(batcher.submit(image(1)))
        await until(lambda: batcher.queued == 1)
        asyncio.get_running_loop().call_later(0.05, predictor.release)
        await batcher.close()
        with pytest.raises(ShuttingDown):
            await queued
        with pytest.raises(ShuttingDown):  # its batch ran to its end, but the collector was gone to answer it
            await running

    run(scenario)
    assert predictor.batches == [[0]]


def test_call_runs_on_the_inference_thread_between_batches():
    predictor = FakePredictor()

    async def scenario():
        batcher = await started(predictor)
        name = await batcher.call(lambda: threading.current_thread().name)
        assert name.startswith("ssdlite-inference")
        await batcher.close()

    run(scenario)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_batch"):
        DynamicBatcher(FakePredictor().predict, max_batch=0)


# ------------------------------------------------------------------------------------------------ the app as ASGI


class FakeModel(FakePredictor):
    """A fake Predictor for the app: one box per image, class "box" (category id 5)."""

    image_size = 16
    class_names = ["box", "disc"]
    category_ids = [5, 9]
    batch_size = 8

    def predict(self, images: list[np.ndarray]) -> list[dict]:
        super().predict(images)
        return [{"boxes": np.array([[1.0, 2.0, 3.0, 4.0]], np.float32), "scores": np.array([0.9], np.float32),
                 "labels": np.array([1])} for _ in images]

    def describe(self) -> str:
        return "a fake model"

    def hold(self) -> None:
        self.started.clear()
        self.released.clear()


PNG = cv2.imencode(".png", np.full((6, 8, 3), 40, np.uint8))[1].tobytes()


async def call(app, method: str, path: str, body: bytes = b"", *, body_arrives: bool = True) -> tuple[int, dict]:
    """``app``'s (status, JSON answer) to one HTTP request, called as uvicorn calls it (``body_arrives=False``: a
    client that sends its headers, then nothing)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "state": {},
        "headers": [(b"content-type", b"image/png"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }
    request = [{"type": "http.request", "body": body, "more_body": False}] if body_arrives else []
    sent: list[dict] = []

    async def receive() -> dict:
        if request:
            return request.pop()
        await asyncio.sleep(3600)  # a client that stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], json.loads(b"".join(message.get("body", b"") for message in sent[1:]))


def serve_in_process(model: FakeModel, scenario, **settings) -> None:
    """``await scenario(app)`` while the app built around ``model`` runs (its lifespan: the batcher, the warm-up)."""

    async def main():
        app = create_app(model, ServeSettings(**settings), model_name="fake.onnx")
        async with app.router.lifespan_context(app):
            await scenario(app)

    run(main)


def test_readyz_is_503_until_the_warm_up_inference_has_run():
    model = FakeModel(held=True)

    async def scenario(app):
        await until(model.started.is_set)  # the warm-up is in the model
        assert await call(app, "GET", "/readyz") == (503, {"error": "not ready: warming the model up"})
        assert await call(app, "GET", "/healthz") == (200, {"status": "alive"})
        model.release()
        for _ in range(200):
            status, answer = await call(app, "GET", "/readyz")
            if status == 200:
                break
            await asyncio.sleep(0.01)
        assert answer == {"status": "ready", "model": "fake.onnx", "backend": "a fake model", "max_batch": 8}
        status, answer = await call(app, "POST", "/v1/detect", PNG)
        assert status == 200 and answer["image"] == {"width": 8, "height": 6}
        assert answer["detections"] == [{"box": [1.0, 2.0, 3.0, 4.0], "score": 0.9, "category_id": 5,
                                          "category_name": "box"}]

    serve_in_process(model, scenario)
    assert model.batches[0] == [0]  # the warm-up: a blank image of the model's input size


def test_a_full_queue_is_503_a_late_answer_504_and_the_server_serves_on():
    model = FakeModel()

    async def scenario(app):
        await until(lambda: len(model.batches) == 1)  # warmed up
        model.hold()
        running = asyncio.ensure_future(call(app, "POST", "/v1/detect", PNG))
        await until(model.started.is_set)
        queued = asyncio.ensure_future(call(app, "POST", "/v1/detect", PNG))
        for _ in range(1000):  # until the second image waits in the queue, which is then full
            if "ssdlite_serve_queue_depth 1.0" in (await call_text(app, "/metrics"))[1]:
                break
            await asyncio.sleep(0.005)
        status, answer = await call(app, "POST", "/v1/detect", PNG)
        assert status == 503 and answer["error"].startswith("busy: 1 images are waiting already (--max-queue 1)")
        for late in await asyncio.gather(running, queued):
            assert late == (504, {"error": "no answer within 0.5 s (--timeout-s): the server is overloaded"})
        model.release()
        status, answer = await call(app, "POST", "/v1/detect", PNG)
        assert status == 200 and answer["batch_size"] == 1
        _, metrics = await call_text(app, "/metrics")
        assert 'ssdlite_serve_errors_total{endpoint="/v1/detect",reason="queue_full"} 1.0' in metrics
        assert 'ssdlite_serve_errors_total{endpoint="/v1/detect",reason="timeout"} 2.0' in metrics

    serve_in_process(model, scenario, max_batch=1, max_wait_ms=0, max_queue=1, timeout_s=0.5)


async def call_text(app, path: str) -> tuple[int, str]:
    """(status, text) of a GET whose answer is not JSON (/metrics)."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": [],
             "state": {}, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    await app(scope, receive, send)
    return sent[0]["status"], b"".join(message.get("body", b"") for message in sent[1:]).decode()


def test_a_body_that_does_not_arrive_in_time_is_408():
    model = FakeModel()

    async def scenario(app):
        status, answer = await call(app, "POST", "/v1/detect", PNG, body_arrives=False)
        assert (status, answer) == (408, {"error": "the body did not arrive within 0.2 s (--timeout-s)"})
        assert (await call(app, "POST", "/v1/detect", PNG))[0] == 200

    serve_in_process(model, scenario, timeout_s=0.2)


def test_a_model_that_fails_is_500_and_the_server_serves_on():
    model = FakeModel()

    async def scenario(app):
        await until(lambda: len(model.batches) == 1)
        model.fails = True
        status, answer = await call(app, "POST", "/v1/detect", PNG)
        assert (status, answer) == (500, {"error": "the model failed on this batch: RuntimeError: the model fell over"})
        model.fails = False
        assert (await call(app, "POST", "/v1/detect", PNG))[0] == 200

    serve_in_process(model, scenario)


def test_a_model_that_fails_its_warm_up_is_never_ready():
    model = FakeModel(fails=True)

    async def scenario(app):
        await until(lambda: len(model.batches) == 1)
        for _ in range(200):
            status, answer = await call(app, "GET", "/readyz")
            if "warm-up inference" in answer["error"]:
                break
            await asyncio.sleep(0.01)
        expected = "the model failed its warm-up inference: the model fell over"
        assert (status, answer) == (503, {"error": expected})
        assert await call(app, "POST", "/v1/detect", PNG) == (503, {"error": expected})

    serve_in_process(model, scenario)


# ------------------------------------------------------------------------------------------------ cli, metrics


def fake_predictor(fixed_batch: int | None) -> SimpleNamespace:
    return SimpleNamespace(backend=SimpleNamespace(fixed_batch=fixed_batch))


def test_a_model_with_a_fixed_batch_of_one_gets_batches_of_one_and_says_so(caplog):
    with caplog.at_level(logging.INFO, logger="ssdlite_runtime.serve.cli"):
        assert batch_limit(fake_predictor(1), 8) == 1
    assert "fixed batch of 1" in caplog.text and "--max-batch 8 lowered to 1" in caplog.text
    assert batch_limit(fake_predictor(None), 8) == 8  # a dynamic batch
    assert batch_limit(SimpleNamespace(backend=object()), 8) == 8  # tflite, ncnn: no batch axis to respect
    assert batch_limit(fake_predictor(16), 8) == 8


def test_batch_size_buckets_give_each_power_of_two_its_own_bucket():
    assert batch_size_buckets(8) == (1.0, 2.0, 4.0, 8.0)
    assert batch_size_buckets(6) == (1.0, 2.0, 4.0, 6.0)
    assert batch_size_buckets(1) == (1.0,)


def test_the_url_of_a_socket_names_its_port():
    with socket.create_server(("127.0.0.1", 0)) as sock:
        assert url_of(sock) == f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_missing_model_is_one_line(tmp_path, capfd, monkeypatch):
    completed = run_main("tools/serve.py", ["missing.onnx"], cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch,
                         env={DEBUG_ENV: ""})
    assert one_error_line(completed) == "serve.py: error: model file not found: missing.onnx"


def test_without_the_serve_extra_the_error_names_it(tmp_path, capfd, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # what find_spec reports for a package that is not there
    completed = run_main("tools/serve.py", ["missing.onnx"], cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch,
                         env={DEBUG_ENV: ""})
    assert one_error_line(completed) == (
        "serve.py: error: serve.py needs fastapi, which is not installed here: pip install 'ssdlite-runtime[serve]'"
    )


def test_connections_to_the_listening_socket_have_nagles_algorithm_off():
    """asyncio sets TCP_NODELAY on the connections of a socket made for TCP (proto 6), not on those of a socket made
    with proto 0, whose answers then wait for the client's delayed ACK (40 ms each)."""

    async def scenario():
        loop = asyncio.get_running_loop()
        accepted = loop.create_future()

        class Protocol(asyncio.Protocol):
            def connection_made(self, transport):
                accepted.set_result(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP,
                                                                                  socket.TCP_NODELAY))

        server = await loop.create_server(Protocol, sock=listening_socket("127.0.0.1", 0))
        host, port = server.sockets[0].getsockname()[:2]
        _, writer = await asyncio.open_connection(host, port)
        assert await accepted != 0
        writer.close()
        server.close()
        await server.wait_closed()

    run(scenario)


def test_a_taken_port_is_one_line():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match=f"cannot listen on 127.0.0.1:{port} .*--port 0 for any free one"):
            listening_socket("127.0.0.1", port)
