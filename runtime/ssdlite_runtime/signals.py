"""Holding off the stop signals while something must be written whole.

Used where a Python signal handler raising in the middle of a write would leave a broken file or outputs that
disagree: a frame's outputs in ``ssdlite-detect``'s stream loop (:mod:`ssdlite_runtime.stream`) and a training
checkpoint (:mod:`ssdlite.engine.checkpointing`, where a KeyboardInterrupt inside ``torch.save`` surfaces as torch's
RuntimeError rather than a clean stop).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name))
"""Ctrl+C and a scheduler's stop."""


@contextmanager
def signals_deferred(signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Holds ``signals`` until the block ends, then delivers them to the handlers they would have reached.

    Only in the main thread, where Python runs signal handlers; elsewhere the block runs as it is. A handler that
    raises (KeyboardInterrupt) does so right after the block, at a clean point.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in signals}
    previous = {signum: handler for signum, handler in previous.items() if handler is not None}
    for signum in previous:
        signal.signal(signum, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in received:
            signal.raise_signal(signum)


__all__ = ["STOP_SIGNALS", "signals_deferred"]
