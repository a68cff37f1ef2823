"""The stream loop: each frame of a source detected (and tracked), drawn, and shown / served / saved.

:func:`run_stream` ends cleanly on Ctrl+C (KeyboardInterrupt) and on :class:`StopSignal`, which a signal handler
raises for another signal (``ssdlite-detect`` does for SIGTERM); its :class:`StreamSummary` names the signal and
gives the shell's exit status for it (130, 143).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from ssdlite_runtime.signals import signals_deferred
from ssdlite_runtime.stream.sources import Frame, FrameSource
from ssdlite_runtime.stream.webview import StreamServer
from ssdlite_runtime.stream.window import OpenCVWindow
from ssdlite_runtime.visualize import draw_detections, draw_stream_overlay, draw_tracks

logger = logging.getLogger(__name__)

VIDEO_WRITER_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}
DEFAULT_SAVE_FPS = 25.0
"""Frame rate of a saved video when the source does not say its own."""

FrameCallback = Callable[[Frame, dict[str, np.ndarray], list[dict]], None]
"""``on_frame(frame, detections or tracks, records)``."""


class Detector(Protocol):
    """What :func:`run_stream` needs of a predictor (:class:`ssdlite_runtime.predictor.Predictor` is one)."""

    @property
    def class_names(self) -> Sequence[str]: ...

    def predict(self, images: np.ndarray, /) -> list[dict[str, np.ndarray]]: ...

    def to_records(self, detections: dict[str, np.ndarray], *, image_id: int) -> list[dict]: ...


class FrameTracker(Protocol):
    """What :func:`run_stream` needs of a tracker (:class:`ssdlite_runtime.tracking.Tracker` is one)."""

    trails: Mapping[int, Sequence[tuple[float, float]]]

    def update(self, detections: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class FrameCounter(Protocol):
    """What :func:`run_stream` needs of a counter (:class:`ssdlite_runtime.counting.Counter` is one)."""

    def update(self, tracks: Mapping[str, np.ndarray]) -> dict[str, Any]: ...

    def draw(self, image: np.ndarray) -> np.ndarray: ...

    def totals(self) -> dict[str, Any]: ...


class FpsMeter:
    """Frames per second over a sliding window of the last ``window`` frames."""

    def __init__(self, window: int = 30) -> None:
        self._times: deque[float] = deque(maxlen=window)

    def tick(self, now: float) -> float:
        self._times.append(now)
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)


def open_video_writer(path: str | Path, *, fps: float, frame_size: tuple[int, int]) -> cv2.VideoWriter:
    """A cv2.VideoWriter for ``.mp4`` (mp4v) or ``.avi`` (MJPG); ``frame_size`` is (width, height)."""
    path = Path(path)
    codec = VIDEO_WRITER_CODECS.get(path.suffix.lower())
    if codec is None:
        raise ValueError(f"cannot save video as {path}: use a .mp4 or .avi file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, frame_size)
    if not writer.isOpened():
        raise ValueError(f"cannot write video {path}: OpenCV has no {codec} encoder here; try .avi")
    return writer


class StopSignal(KeyboardInterrupt):
    """Raised by a signal's handler to stop ``run_stream`` as cleanly as Ctrl+C, naming the signal.

    A KeyboardInterrupt, so whatever stops cleanly on Ctrl+C stops on it too; ``run_stream`` records ``signum``
    in its summary (a plain KeyboardInterrupt is recorded as SIGINT, "Ctrl+C").

    Example:
        >>> def stop(signum, frame):
        ...     raise StopSignal(signum)
        >>> signal.signal(signal.SIGTERM, stop)  # doctest: +SKIP
    """

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(signal_name(self.signum))


def signal_name(signum: int) -> str:
    """``"SIGTERM"`` for 15; ``"signal 99"`` for a number without a name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@dataclass
class StreamSummary:
    """What a run of ``run_stream`` did.

    Attributes:
        frames: frames processed (detected, drawn, saved).
        seconds: wall time of the loop.
        dropped_frames: frames a live source captured that the model had no time for.
        stop_reason: "end of stream", "max frames", "q" (window), "stop requested" (``stop_event``), "Ctrl+C"
            (KeyboardInterrupt) or the name of the signal that raised :class:`StopSignal`, e.g. "SIGTERM".
        stop_signal: the signal that stopped the loop (SIGINT for Ctrl+C), None if none did.
        records: COCO-style detections per processed frame (image_id = frame index), if collected; with a
            tracker, the tracked objects, each with its ``track_id``.
        counts: with a counter, its totals at the end (``Counter.totals()``: per line the tracks that crossed in
            and out, per zone those that entered and exited, per class); None without one.
    """

    frames: int = 0
    seconds: float = 0.0
    dropped_frames: int = 0
    stop_reason: str = "end of stream"
    stop_signal: int | None = None
    records: list[dict] = field(default_factory=list)
    counts: dict[str, Any] | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_status(self) -> int:
        """A command's status for this run: 0, or 128 + the signal that stopped it (130 Ctrl+C, 143 SIGTERM), as
        the shell reports a command the signal ended, so a scheduler does not take a stopped run for a finished one."""
        return 0 if self.stop_signal is None else 128 + self.stop_signal

    def interrupted(self, interrupt: KeyboardInterrupt) -> None:
        """Records Ctrl+C (SIGINT) or the signal of a :class:`StopSignal` as what stopped the run."""
        self.stop_signal = int(getattr(interrupt, "signum", signal.SIGINT))
        self.stop_reason = "Ctrl+C" if self.stop_signal == signal.SIGINT else signal_name(self.stop_signal)


@dataclass
class _FrameOutputs:
    """Where each processed frame goes: ``on_frame``, the collected records, the video file and the web view."""

    on_frame: FrameCallback | None
    collected: list[dict] | None
    save_path: str | Path | None
    save_fps: float
    server: StreamServer | None
    _writer: cv2.VideoWriter | None = None

    @property
    def wants_records(self) -> bool:
        return self.collected is not None or self.server is not None or self.on_frame is not None

    def write(
        self, frame: Frame, detections: dict[str, np.ndarray], records: list[dict], annotated: np.ndarray,
        *, fps: float, latency_ms: float, counts: dict[str, Any] | None = None,
    ) -> None:
        if self.on_frame is not None:
            self.on_frame(frame, detections, records)
        if self.collected is not None:
            self.collected.extend(records)
        if self.save_path is not None:
            if self._writer is None:
                height, width = annotated.shape[:2]
                self._writer = open_video_writer(self.save_path, fps=self.save_fps, frame_size=(width, height))
            self._writer.write(cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR))
        if self.server is not None:
            stats = {"fps": fps, "latency_ms": latency_ms, "frame": frame.index, "detections": records}
            if counts is not None:
                stats["counts"] = counts
            self.server.publish(annotated, stats)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


def run_stream(
    predictor: Detector,
    source: FrameSource,
    *,
    max_frames: int | None = None,
    window: OpenCVWindow | None = None,
    server: StreamServer | None = None,
    save_path: str | Path | None = None,
    collect_records: bool = False,
    stop_event: threading.Event | None = None,
    report_every_s: float = 2.0,
    tracker: FrameTracker | None = None,
    on_frame: FrameCallback | None = None,
    clean_frames: bool = False,
    counter: FrameCounter | None = None,
) -> StreamSummary:
    """Detect, draw (boxes + FPS/latency overlay) and show / serve / save every frame of ``source``.

    Stops at the end of the stream, after ``max_frames``, on q / Esc / window closed, when ``stop_event`` is
    set, or on Ctrl+C or a :class:`StopSignal` (KeyboardInterrupt is caught: the summary comes back, naming the
    signal, and the saved video is complete). SIGINT and SIGTERM wait while a frame's outputs are written
    (:func:`ssdlite_runtime.signals.signals_deferred`), so every output holds the same frames, as many as the summary
    counts. The caller closes ``source``, ``window`` and ``server``.

    Args:
        predictor: a ``Predictor`` (``predict``, ``class_names``, ``to_records``).
        source: where frames come from.
        max_frames: stop after this many frames (None: no limit).
        window: an OpenCV window to show frames in.
        server: the MJPEG web view to publish frames to.
        save_path: write the annotated frames to this .mp4 / .avi (at the source's frame rate, 25 if unknown).
        collect_records: keep COCO-style records of the detections in the summary.
        stop_event: set from another thread to stop.
        report_every_s: log the FPS this often (INFO).
        tracker: a ``ssdlite_runtime.tracking.Tracker``: each frame's detections go through it, and what is drawn,
            served, collected and passed to ``on_frame`` are its tracks (``#ID class score`` and trails).
        on_frame: called after each frame with the frame, its detections (or tracks, with ``track_ids``) and
            their COCO-style records (``track_id`` added when tracking), e.g. to write them out as they come.
        clean_frames: draw on a copy of each frame, so that ``on_frame`` gets the frame as the source gave it (e.g.
            to save it as a dataset image); by default the boxes are drawn on the frame itself.
        counter: a ``ssdlite_runtime.counting.Counter`` (needs ``tracker``): each frame's tracks go through it
            before ``on_frame`` is called (so ``counter.latest`` is that frame's counts), its lines, zones and counts
            are drawn, the web view's stats get the frame's ``counts``, and the summary its totals.

    Raises:
        ValueError: a ``counter`` without a ``tracker``.
    """
    if counter is not None and tracker is None:
        raise ValueError("counting needs tracks: pass a tracker with the counter")
    summary = StreamSummary()
    outputs = _FrameOutputs(on_frame, summary.records if collect_records else None, save_path,
                            source.fps or DEFAULT_SAVE_FPS, server)
    meter = FpsMeter()
    started = last_report = time.perf_counter()
    try:
        for frame in _frames_until_stopped(source, summary, max_frames=max_frames, stop_event=stop_event):
            detections, annotated = _detect_and_draw(predictor, tracker, frame.image, copy=clean_frames)
            counts = None
            if counter is not None:
                counts = counter.update(detections)
                counter.draw(annotated)
            now = time.perf_counter()
            fps, latency_ms = meter.tick(now), (now - frame.captured_at) * 1000.0
            draw_stream_overlay(annotated, fps=fps, latency_ms=latency_ms)
            records = _records(predictor, detections, frame.index) if outputs.wants_records else []
            with signals_deferred():  # a frame's outputs are written whole, and it is counted, or none of them is
                outputs.write(frame, detections, records, annotated, fps=fps, latency_ms=latency_ms, counts=counts)
                summary.frames += 1
                if counter is not None:  # the totals of the frames written, also when a signal comes next
                    summary.counts = counter.totals()
            if window is not None and not window.show(annotated):
                summary.stop_reason = "q"
                break
            if now - last_report >= report_every_s:
                objects = f"{len(detections['scores'])} {'tracks' if tracker is not None else 'objects'}"
                logger.info(f"frame {frame.index}: {fps:.1f} FPS, latency {latency_ms:.0f} ms, {objects}")
                last_report = now
    except KeyboardInterrupt as interrupt:
        summary.interrupted(interrupt)
    finally:
        outputs.close()
        summary.seconds = time.perf_counter() - started
        summary.dropped_frames = source.dropped_frames
        if counter is not None and summary.counts is None:  # no frame written
            summary.counts = counter.totals()
    return summary


def _frames_until_stopped(
    source: FrameSource, summary: StreamSummary, *, max_frames: int | None, stop_event: threading.Event | None
) -> Iterator[Frame]:
    """The source's frames until it ends, ``summary.frames`` reaches ``max_frames`` or ``stop_event`` is set
    (``summary.stop_reason`` says which)."""
    while max_frames is None or summary.frames < max_frames:
        if stop_event is not None and stop_event.is_set():
            summary.stop_reason = "stop requested"
            return
        frame = source.read()
        if frame is None:
            return
        yield frame
    summary.stop_reason = "max frames"


def _detect_and_draw(
    predictor: Detector, tracker: FrameTracker | None, image: np.ndarray, *, copy: bool = False
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The image's detections (its tracks, with ``track_ids``, when tracking) and the image with them drawn on it
    (in place unless ``copy``: the frame is not used again)."""
    [detections] = predictor.predict(image)
    if tracker is None:
        return detections, draw_detections(image, detections, predictor.class_names, copy=copy)
    tracks = tracker.update(detections)
    return tracks, draw_tracks(image, tracks, predictor.class_names, tracker.trails, copy=copy)


def _records(predictor: Detector, detections: dict[str, np.ndarray], frame_index: int) -> list[dict]:
    """COCO-style records of a frame's detections (image_id = frame index), each track's ``track_id`` added."""
    records = predictor.to_records(detections, image_id=frame_index)
    if "track_ids" in detections:
        for record, track_id in zip(records, detections["track_ids"].tolist()):
            record["track_id"] = track_id
    return records
