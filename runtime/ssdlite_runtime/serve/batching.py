"""Dynamic batching: requests that arrive together run as one ``Predictor.predict`` call.

Each request puts its decoded image in a queue and awaits its detections. One collector task on the event loop
takes the oldest image and those queued behind it, up to ``max_batch``; if fewer are waiting it waits for more until
``max_wait_s`` has passed since the oldest one arrived (images that queued up while the previous batch ran are
already past that, so they go at once). The batch runs on one inference thread, off the event loop, so the server
keeps reading requests while it computes; the next batch is collected when it is done.

Limits: at most ``max_queue`` images wait (:class:`QueueFull` beyond, the server's 503), and a request gives up after
its timeout (:class:`RequestTimeout`, the server's 504); an image whose request gave up before its batch started is
dropped from the batch.

Nothing here knows HTTP or the model: ``predict`` is any ``list[image] -> list[detections]`` function, so the tests
drive the batcher with a fake one, in-process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

__all__ = ["BatchedResult", "DynamicBatcher", "QueueFull", "RequestTimeout", "ShuttingDown"]

Result = TypeVar("Result")
PredictBatch = Callable[[list[np.ndarray]], Sequence[Any]]
"""``predict(images) -> one result per image``, e.g. ``Predictor.predict``."""
BatchObserver = Callable[[int, float], None]
"""``on_batch(batch_size, inference_s)``, called on the event loop after each batch (the server's metrics)."""


class QueueFull(Exception):
    """``max_queue`` images are already waiting: the request is refused at once (HTTP 503)."""


class RequestTimeout(Exception):
    """The request's detections did not come within its timeout (HTTP 504)."""


class ShuttingDown(Exception):
    """The batcher was closed before the request's batch ran."""


@dataclass(frozen=True)
class BatchedResult:
    """One image's detections and how they were computed.

    Attributes:
        detections: what ``predict`` returned for this image.
        queue_s: seconds from the request's arrival in the queue to the start of its batch.
        inference_s: seconds its batch took in ``predict`` (the same for every image of the batch).
        batch_size: images in its batch.
    """

    detections: Any
    queue_s: float
    inference_s: float
    batch_size: int


@dataclass
class _Waiting:
    image: np.ndarray
    future: asyncio.Future
    queued_at: float
    counted: bool = True
    """Still counted in :attr:`DynamicBatcher.queued`: neither taken into a batch nor given up."""


class DynamicBatcher:
    """Collects queued images into batches and runs each on one inference thread.

    Args:
        predict: runs a list of images, returns one result per image (called on the inference thread only).
        max_batch: images per batch at most (a model with a fixed batch of 1 takes 1).
        max_wait_s: how long the oldest waiting image may wait for others to join its batch.
        max_queue: images waiting at most; :meth:`submit` raises :class:`QueueFull` beyond.
        on_batch: called with (batch size, inference seconds) after each batch.

    Start it on the event loop that will submit (:meth:`start`), close it when done (:meth:`close`).
    """

    def __init__(
        self,
        predict: PredictBatch,
        *,
        max_batch: int = 8,
        max_wait_s: float = 0.005,
        max_queue: int = 64,
        on_batch: BatchObserver | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError(
                f"max_batch ({max_batch}) and max_queue ({max_queue}) must be 1 or more, max_wait_s ({max_wait_s}) "
                "0 or more"
            )
        self.predict = predict
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Waiting] | None = None
        self._queued = 0
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._collector: asyncio.Task | None = None

    # -- lifecycle

    async def start(self) -> None:
        """Starts the inference thread and the collector task on the running event loop."""
        self._queue = asyncio.Queue()
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ssdlite-inference")
        self._collector = asyncio.get_running_loop().create_task(self._collect_forever(), name="ssdlite-batcher")

    async def close(self) -> None:
        """Stops collecting, fails the requests still queued with :class:`ShuttingDown`, and waits for the batch
        on the inference thread to finish (the server closes it after answering the requests in flight)."""
        if self._collector is not None:
            self._collector.cancel()
            await asyncio.gather(self._collector, return_exceptions=True)
        while self._queue is not None and not self._queue.empty():
            waiting = self._queue.get_nowait()
            self._uncount(waiting)
            _fail(waiting.future, ShuttingDown("the server is shutting down"))
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)

    # -- state

    @property
    def queued(self) -> int:
        """Images waiting for a batch (not those whose request gave up)."""
        return self._queued

    def full(self) -> bool:
        """Whether :meth:`submit` would raise :class:`QueueFull` now."""
        return self.queued >= self.max_queue

    # -- work

    async def call(self, function: Callable[[], Result]) -> Result:
        """Runs ``function()`` on the inference thread, between batches (the server's warm-up)."""
        if self._executor is None:
            raise RuntimeError("start the batcher first")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    async def submit(self, image: np.ndarray, *, timeout_s: float | None = None) -> BatchedResult:
        """Queues ``image`` for the next batch and waits for its result.

        Raises:
            QueueFull: ``max_queue`` images are waiting already.
            RequestTimeout: no result within ``timeout_s`` (the image is dropped if its batch has not started).
            ShuttingDown: the batcher was closed first.
            Exception: whatever ``predict`` raised for the image's batch.
        """
        if self._queue is None:
            raise RuntimeError("start the batcher first")
        if self.full():
            raise QueueFull(f"{self.queued} images are waiting already (--max-queue {self.max_queue})")
        future = asyncio.get_running_loop().create_future()
        waiting = _Waiting(image, future, time.perf_counter())
        self._queue.put_nowait(waiting)
        self._queued += 1
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"no answer within {timeout_s:g} s (queue wait + inference)") from None
        finally:
            future.cancel()  # a no-op once done; otherwise the collector drops the image
            self._uncount(waiting)

    def _uncount(self, waiting: _Waiting) -> None:
        """``waiting`` leaves :attr:`queued`: taken into a batch, or given up (once, whichever comes first)."""
        if waiting.counted:
            waiting.counted = False
            self._queued -= 1

    async def _collect_forever(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch:
                await self._run(batch)

    async def _next_batch(self) -> list[_Waiting]:
        """The oldest waiting image and up to ``max_batch - 1`` more: those queued, then those arriving until
        ``max_wait_s`` after the oldest one arrived. Images whose request gave up are left out."""
        assert self._queue is not None
        batch = [await self._queue.get()]
        deadline = batch[0].queued_at + self.max_wait_s
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        for waiting in batch:
            self._uncount(waiting)
        return [waiting for waiting in batch if not waiting.future.done()]

    async def _run(self, batch: list[_Waiting]) -> None:
        """``predict`` on the inference thread; each image's future gets its result, or the batch's error."""
        assert self._executor is not None
        started = time.perf_counter()
        images = [waiting.image for waiting in batch]
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._executor, self.predict, images)
        except asyncio.CancelledError:  # closed while the batch ran: its requests get an answer all the same
            for waiting in batch:
                _fail(waiting.future, ShuttingDown("the server is shutting down"))
            raise
        except Exception as error:
            for waiting in batch:
                _fail(waiting.future, error)
            return
        inference_s = time.perf_counter() - started
        if self.on_batch is not None:
            self.on_batch(len(batch), inference_s)
        for waiting, result in zip(batch, results):
            if not waiting.future.done():
                waiting.future.set_result(
                    BatchedResult(result, started - waiting.queued_at, inference_s, len(batch))
                )


def _fail(future: asyncio.Future, error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
