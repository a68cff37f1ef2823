"""q + Enter in the terminal stops a stream: a thread that watches stdin and sets an event."""

from __future__ import annotations

import os
import select
import sys
import threading


def watch_stdin_for_quit(stop_event: threading.Event) -> bool:
    """Set ``stop_event`` when the user types q + Enter in the terminal (POSIX, stdin a terminal).

    Returns:
        Whether it watches (False where stdin is not a terminal).

    Reads the raw file descriptor with ``select`` and a timeout rather than ``sys.stdin.readline()``: a daemon
    thread blocked inside the buffered stdin object can abort the interpreter at exit.
    """
    if os.name != "posix" or not sys.stdin or not sys.stdin.isatty():
        return False
    descriptor = sys.stdin.fileno()

    def watch() -> None:
        pending = b""
        while not stop_event.is_set():
            ready, _, _ = select.select([descriptor], [], [], 0.25)
            if not ready:
                continue
            chunk = os.read(descriptor, 256)
            if not chunk:  # end of input
                return
            *lines, pending = (pending + chunk).split(b"\n")
            if any(line.strip().lower() in (b"q", b"quit") for line in lines):
                stop_event.set()
                return

    threading.Thread(target=watch, name="stdin-quit", daemon=True).start()
    return True
