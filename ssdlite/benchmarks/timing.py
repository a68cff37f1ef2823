"""How the measurements time things: rounds that alternate between the candidates, medians of the rounds.

Alternating means load from other processes on a shared machine hits every candidate alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import torch


def use_threads(threads: int) -> None:
    """Intra-op threads for torch; OpenCV gets one (the resize is tiny, its own pool would compete)."""
    torch.set_num_threads(threads)
    cv2.setNumThreads(1)


def interleaved_latencies_ms(
    candidates: dict[str, Callable[[Any], Any]], items: Sequence[Any], *, rounds: int, warmup: int = 3
) -> dict[str, float]:
    """Median milliseconds per call of each candidate; rounds alternate between candidates (one pass over the
    items each), so load from other processes hits all alike."""
    for function in candidates.values():
        for item in items[:warmup]:
            function(item)
    timings: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, function in candidates.items():
            for item in items:
                start = time.perf_counter()
                function(item)
                timings[name].append(time.perf_counter() - start)
    return {name: 1000.0 * statistics.median(values) for name, values in timings.items()}


def alternating_rates(
    pipelines: dict[str, Callable[[Any], Any]], items: Sequence[Any], *, seconds: float, rounds: int = 5
) -> dict[str, float]:
    """Items / s of each pipeline: ``rounds`` alternating rounds of about seconds / rounds each; median round."""
    for pipeline in pipelines.values():  # warm-up
        for item in items[:4]:
            pipeline(item)
    per_round = {name: [] for name in pipelines}
    for _ in range(rounds):
        for name, pipeline in pipelines.items():
            per_round[name].append(rate_of(pipeline, items, seconds=seconds / rounds))
    return {name: statistics.median(values) for name, values in per_round.items()}


def rate_of(function: Callable[[Any], Any], items: Sequence[Any], *, seconds: float) -> float:
    """Calls ``function`` on the items in turn (at least one full pass) until ``seconds`` passed; items / s."""
    count = 0
    start = time.perf_counter()
    while True:
        for item in items:
            function(item)
        count += len(items)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed
