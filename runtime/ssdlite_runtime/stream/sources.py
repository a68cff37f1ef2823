"""Where a stream's frames come from: a video file, or a camera / stream URL.

* ``VideoFileSource`` reads a file frame by frame, synchronously: nothing is dropped, so ``max_frames`` means exactly
  that many frames of the file (also when a file stands in for a camera).
* ``LiveCameraSource`` (a camera index or a stream URL) reads on a capture thread that keeps only the newest frame
  (double buffering): while the model works on one frame the thread overwrites the next slot, so latency never
  builds up; frames the model had no time for are counted as dropped.
"""

from __future__ import annotations

import abc
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

DEFAULT_OPEN_TIMEOUT_S = 10.0


@dataclass
class Frame:
    """One frame from a source.

    Attributes:
        index: position in the source (for live sources it counts the dropped frames too).
        image: uint8 RGB (H, W, 3).
        captured_at: ``time.perf_counter()`` when the frame was read.
    """

    index: int
    image: np.ndarray
    captured_at: float


class FrameSource(abc.ABC):
    """A stream of RGB frames; ``read()`` returns None at the end. Use as a context manager to release it."""

    description: str = ""
    fps: float | None = None
    dropped_frames: int = 0

    @abc.abstractmethod
    def read(self) -> Frame | None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _capture_fps(capture: cv2.VideoCapture) -> float | None:
    fps = capture.get(cv2.CAP_PROP_FPS)
    return float(fps) if np.isfinite(fps) and 1.0 <= fps <= 240.0 else None


class VideoFileSource(FrameSource):
    """A video file read synchronously, frame by frame (optionally looping).

    Args:
        path: the video file.
        loop: start again at the end instead of stopping.
        realtime: hand out frames no faster than the file's frame rate, like a camera would (a slow model still
            gets every frame, it just runs behind).

    Raises:
        FileNotFoundError: no such file.
        ValueError: OpenCV cannot decode it.
    """

    def __init__(self, path: str | Path, *, loop: bool = False, realtime: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video file not found: {self.path}")
        self.loop = loop
        self.description = f"video file {self.path}"
        self._capture = cv2.VideoCapture(str(self.path))
        self._first: np.ndarray | None = None
        if self._capture.isOpened():
            ok, self._first = self._capture.read()
        if self._first is None:
            self._capture.release()
            raise ValueError(
                f"cannot decode video file {self.path}: OpenCV (FFmpeg) reads no frame from it; "
                "is it a complete video (e.g. .mp4 with H.264/MPEG-4)?"
            )
        self.fps = _capture_fps(self._capture)
        self._frame_interval_s = 1.0 / self.fps if realtime and self.fps else 0.0
        self._started_at: float | None = None
        self._next_index = 0

    def read(self) -> Frame | None:
        self._wait_for_frame_time()
        if self._first is not None:
            bgr, self._first = self._first, None
        else:
            ok, bgr = self._capture.read()
            if not ok and self.loop and self._next_index > 0:
                self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, bgr = self._capture.read()
            if not ok:
                return None
        frame = Frame(self._next_index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.perf_counter())
        self._next_index += 1
        return frame

    def _wait_for_frame_time(self) -> None:
        if not self._frame_interval_s:
            return
        now = time.perf_counter()
        if self._started_at is None:
            self._started_at = now
        delay = self._started_at + self._next_index * self._frame_interval_s - now
        if delay > 0:
            time.sleep(delay)

    def close(self) -> None:
        self._capture.release()


class LiveCameraSource(FrameSource):
    """A camera (index) or stream URL read by a capture thread that keeps only the newest frame.

    Args:
        target: camera index (0 = first camera) or URL (rtsp://, http://...).
        open_timeout_s: how long to wait for the camera / URL to open and for each frame.

    Raises:
        ValueError: the camera does not open, or the URL does not answer / sends no frame.
    """

    def __init__(self, target: int | str, *, open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S) -> None:
        self.target = target
        self.timeout_s = open_timeout_s
        self.description = f"camera {target}" if isinstance(target, int) else f"stream {target}"
        timeout_ms = int(open_timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        self._capture = cv2.VideoCapture(target, cv2.CAP_ANY, params)
        first = self._capture.read()[1] if self._capture.isOpened() else None
        if first is None:
            self._capture.release()
            raise ValueError(self._open_error())
        self.fps = _capture_fps(self._capture)
        self._condition = threading.Condition()
        self._latest: Frame | None = Frame(0, cv2.cvtColor(first, cv2.COLOR_BGR2RGB), time.perf_counter())
        self._ended = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._capture_loop, name="frame-capture", daemon=True)
        self._thread.start()

    def _open_error(self) -> str:
        if isinstance(self.target, int):
            return (
                f"camera {self.target} does not open (no such device, or another program uses it); "
                "try another --camera INDEX or a video file / stream URL"
            )
        return (
            f"stream URL {self.target} does not answer or sends no video within {self.timeout_s:g} s; "
            "check the address and that the camera is streaming"
        )

    def _capture_loop(self) -> None:
        index = 1
        while not self._stop.is_set():
            ok, bgr = self._capture.read()
            if not ok:
                break
            frame = Frame(index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.perf_counter())
            index += 1
            with self._condition:
                if self._latest is not None:
                    self.dropped_frames += 1  # the model never saw it: it was busy with an older frame
                self._latest = frame
                self._condition.notify()
        with self._condition:
            self._ended = True
            self._condition.notify_all()

    def read(self) -> Frame | None:
        """The newest frame not yet returned; waits for one; None once the source ends."""
        with self._condition:
            while self._latest is None and not self._ended:
                self._condition.wait(timeout=0.25)  # short waits keep Ctrl+C responsive
            frame, self._latest = self._latest, None
            return frame

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout_s + 1.0)
        self._capture.release()


def parse_camera(spec: str | int) -> int | str | Path:
    """``"0"`` -> camera index 0, ``"rtsp://..."`` -> URL, anything else -> a video file path."""
    if isinstance(spec, int) or re.fullmatch(r"\d+", str(spec)):
        return int(spec)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", str(spec)):
        return str(spec)
    return Path(spec)


def open_camera(spec: str | int, *, loop: bool = False, open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S) -> FrameSource:
    """Open ``--camera``: an index or URL as a live source; a file as a synchronous source at its own frame rate."""
    target = parse_camera(spec)
    if isinstance(target, Path):
        return VideoFileSource(target, loop=loop, realtime=True)
    return LiveCameraSource(target, open_timeout_s=open_timeout_s)
