"""Live detection on video, one module per job:

sources        where frames come from: a video file read frame by frame (nothing dropped), or a camera / stream
               URL read on a capture thread that keeps only the newest frame
window         the OpenCV window, and the probe for whether this OpenCV can open one here
webview        the MJPEG web view (``StreamServer``) and its page, ``webview.html`` (package data)
bounded_http   the HTTP server under the web view, which idle, stalled and slow clients cannot hold
loop           ``run_stream``: detect, track, count, draw, show / serve / save each frame; its summary and
               ``StopSignal``
stdin          q + Enter in the terminal stops a stream

The names below are what ``ssdlite_runtime.jobs`` and ``ssdlite-detect`` use.
"""

from ssdlite_runtime.stream.bounded_http import (
    DEFAULT_CLIENT_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MAX_CLIENTS,
)
from ssdlite_runtime.stream.loop import (
    VIDEO_WRITER_CODECS,
    Detector,
    FpsMeter,
    FrameCounter,
    FrameTracker,
    StopSignal,
    StreamSummary,
    open_video_writer,
    run_stream,
    signal_name,
)
from ssdlite_runtime.stream.sources import (
    DEFAULT_OPEN_TIMEOUT_S,
    Frame,
    FrameSource,
    LiveCameraSource,
    VideoFileSource,
    open_camera,
    parse_camera,
)
from ssdlite_runtime.stream.stdin import watch_stdin_for_quit
from ssdlite_runtime.stream.webview import StreamServer
from ssdlite_runtime.stream.window import OpenCVWindow, opencv_gui_available

__all__ = [
    "DEFAULT_CLIENT_TIMEOUT_S",
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_MAX_CLIENTS",
    "DEFAULT_OPEN_TIMEOUT_S",
    "VIDEO_WRITER_CODECS",
    "Detector",
    "FpsMeter",
    "Frame",
    "FrameCounter",
    "FrameSource",
    "FrameTracker",
    "LiveCameraSource",
    "OpenCVWindow",
    "StopSignal",
    "StreamServer",
    "StreamSummary",
    "VideoFileSource",
    "open_camera",
    "open_video_writer",
    "opencv_gui_available",
    "parse_camera",
    "run_stream",
    "signal_name",
    "watch_stdin_for_quit",
]
