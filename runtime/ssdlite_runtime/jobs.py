"""What ``ssdlite-detect`` (and ``detect.py``) does, one function per subcommand: images, a folder, a video file, a
camera.

Each job checks its input first (files, folder, camera), then loads the model, so a typo fails in a fraction of a
second with a message naming the input. Errors are ValueError / FileNotFoundError with one-line messages.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import IO, Any

import cv2

from ssdlite_runtime import stream
from ssdlite_runtime.backends.base import APPLE_ONLY_SUFFIXES
from ssdlite_runtime.counting import Counter, CountLine, CountZone, describe_totals
from ssdlite_runtime.errors import one_line
from ssdlite_runtime.image_io import IMAGE_EXTENSIONS, list_images, read_image
from ssdlite_runtime.labels import LabelWriter, check_label_folder, open_label_writer
from ssdlite_runtime.predictor import AUTO_BACKEND, DISPLAY_SCORE_THRESHOLD, Predictor
from ssdlite_runtime.signals import signals_deferred
from ssdlite_runtime.tracking import (
    DEFAULT_PER_CLASS,
    DEFAULT_TRAIL_LENGTH,
    SECOND_ASSOCIATION_MIN_SCORE,
    Tracker,
    mot_lines,
)
from ssdlite_runtime.visualize import draw_detections

logger = logging.getLogger(__name__)

DEFAULT_WEB_PORT = 8000
TRACKING_NEEDS_A_STREAM = (
    "tracking needs a video or a camera: use `video FILE --track` or `webcam --track` (images have no frames to follow)"
)
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")
"""``--json`` on a stream: these suffixes get one JSON object per frame, written as frames come; any other name
gets the COCO-style record list (as for images), written at the end."""


@dataclass
class DetectOptions:
    """What every subcommand shares.

    Attributes:
        model: the model file (.onnx, .xml, ... or a file another installed package's backend reads); None: the
            installed default model (:func:`default_model`).
        backend: Predictor backend ("ort", "int8", ...); None: from the model file's name.
        runs_dir: handed to the default model's provider without ``model`` (``--runs-dir``; None: its own default).
        device: where the backend runs, in the backend's words ("cpu"; the file backends here run on the CPU only).
        score_threshold: keep detections scoring above this (None: the Predictor's display default, 0.4; when
            tracking, ByteTrack's low-score floor, 0.1, so its second association sees the weak detections).
        classes: keep only these class names (None: all).
        save: where annotated output goes (image file / folder for images, .mp4 / .avi for streams).
        json_path: write the detections as COCO-style records (with class names) here.
        show: show the output (OpenCV window; the web view for cameras when OpenCV has no GUI).
        track: give objects persistent ids across frames (video and camera only; ``ssdlite_runtime.tracking``).
        tracker_settings: ``sv.ByteTrack`` keyword arguments (missing ones: the library's defaults).
        trail_length: box centres drawn per track.
        track_per_class: one ByteTrack per class (True) or one for all classes with a class vote (False; see
            ``ssdlite_runtime.tracking``).
        mot_path: with ``track``, write the tracks in the MOT Challenge text format here.
        labels_format: write the detections (with ``track``, the tracks) as a labelled dataset in this format
            ("yolo", "voc", "coco"; ``ssdlite_runtime.labels``) into ``labels_dir``; None: no dataset.
        labels_dir: the dataset's folder.
        overwrite_labels: replace a dataset already in ``labels_dir`` (else it is refused).
        labels_every: streams: label every Nth frame (frames 0, N, 2N, ... of those processed); None: every one.
        count_lines: with ``track``, count the tracks crossing these lines, in and out, per class
            (``ssdlite_runtime.counting``).
        count_zones: with ``track``, count the tracks inside these polygons, and those entering and leaving.
        slice_size: sliced inference: also run the model on overlapping tiles of this side and merge their
            detections with the full frame's (``Predictor(slice_size=...)``, ``ssdlite_runtime.slicing``); None: no.
        slice_overlap: with ``slice_size``, the fraction of a tile its neighbours overlap (None: the Predictor's
            default, 0.2).
    """

    model: str | Path | None = None
    backend: str | None = None
    runs_dir: str | Path | None = None
    device: str = "cpu"
    score_threshold: float | None = None
    classes: Sequence[str] | None = None
    save: str | Path | None = None
    json_path: str | Path | None = None
    show: bool = True
    track: bool = False
    tracker_settings: dict[str, Any] = field(default_factory=dict)
    trail_length: int = DEFAULT_TRAIL_LENGTH
    track_per_class: bool = DEFAULT_PER_CLASS
    mot_path: str | Path | None = None
    labels_format: str | None = None
    labels_dir: str | Path | None = None
    overwrite_labels: bool = False
    labels_every: int | None = None
    count_lines: Sequence[CountLine] = ()
    count_zones: Sequence[CountZone] = ()
    slice_size: int | None = None
    slice_overlap: float | None = None


# ------------------------------------------------------------------------------------------------ the model


DEFAULT_MODEL_GROUP = "ssdlite_runtime.default_model"
"""The entry-point group through which an installed distribution names the model to run when ``--model`` is left
out: a function ``(folder: str | None) -> Path`` that returns the model file, or raises a one-line ValueError saying
how to make one; ``folder`` is ``--runs-dir`` (None: the function's own default). The full ``ssdlite`` package
declares one, which picks its newest checkpoint. Without one, ``--model`` is required."""


def default_model(folder: str | Path | None = None) -> Path:
    """The model file of the first :data:`DEFAULT_MODEL_GROUP` entry point (by distribution and name).

    Raises:
        ValueError: no installed distribution declares one, or its module cannot be imported here (says to pass
            ``--model``); whatever the provider raises (its own one-line error).
    """
    providers = sorted(entry_points(group=DEFAULT_MODEL_GROUP),
                       key=lambda entry: (entry.dist.name if entry.dist else "", entry.name))
    if not providers:
        raise ValueError("no --model given: pass --model FILE, the exported model to run (.onnx, .xml, .tflite, ...)")
    try:
        provider = providers[0].load()
    except ImportError as error:
        raise ValueError(
            f"no --model given, and the default model's provider ({providers[0].value}) cannot be imported here "
            f"({one_line(error)}); pass --model FILE"
        ) from None
    return Path(provider(None if folder is None else str(folder)))


def resolve_model_path(model: str | Path | None, runs_dir: str | Path | None = None) -> Path:
    """``model`` itself, or the installed :func:`default_model` (given ``runs_dir``).

    Raises:
        FileNotFoundError: ``model`` does not exist.
        ValueError: ``model`` is a folder (other than a Core ML package); no ``model`` and no default model.
    """
    if model is None:
        return default_model(runs_dir)
    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.is_dir() and not path.name.lower().endswith(APPLE_ONLY_SUFFIXES):
        raise ValueError(f"--model {path} is a folder; pass a model file (.onnx, .xml, .tflite, .ncnn.param, ...)")
    return path  # a Core ML package (a folder) goes on to the Predictor, which says where it runs


def load_predictor(options: DetectOptions) -> Predictor:
    """A Predictor for ``options.model`` (``options.backend``, else from the file's name) with the options'
    threshold, classes and slicing.

    Raises:
        ValueError: ``slice_overlap`` without ``slice_size``; what ``resolve_model_path`` and the Predictor raise.
    """
    if options.slice_overlap is not None and options.slice_size is None:
        raise ValueError("--slice-overlap goes with --slice SIZE, which is not given")
    path = resolve_model_path(options.model, options.runs_dir)  # before loading a runtime: fail fast
    backend = options.backend or AUTO_BACKEND
    default_threshold = SECOND_ASSOCIATION_MIN_SCORE if options.track else DISPLAY_SCORE_THRESHOLD
    threshold = default_threshold if options.score_threshold is None else options.score_threshold
    slicing = {} if options.slice_overlap is None else {"slice_overlap": options.slice_overlap}
    predictor = Predictor(
        path, backend=backend, device=options.device, score_threshold=threshold, classes=options.classes,
        slice_size=options.slice_size, **slicing,
    )
    logger.info(f"model {path}: {predictor.describe()}")
    return predictor


def write_json(records: list[dict], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=1))
    logger.info(f"wrote {len(records)} detections to {path}")


def _check_json_path(json_path: str | Path | None) -> None:
    if json_path is not None and Path(json_path).is_dir():
        raise ValueError(f"--json {json_path} is a folder; give a file name such as detections.json")


# --------------------------------------------------------------------------------------------------- labels


def _check_labels(options: DetectOptions, inputs: Sequence[Path]) -> None:
    """Refuses ``--save-labels`` into a folder holding a dataset (before the model loads), and ``--overwrite`` or
    ``--every`` without it."""
    if options.labels_format is None:
        for given, flag in ((options.overwrite_labels, "--overwrite"), (options.labels_every, "--every N")):
            if given:
                raise ValueError(f"{flag} goes with --save-labels FORMAT OUT, which is not given")
        return
    check_label_folder(options.labels_dir, overwrite=options.overwrite_labels, inputs=inputs)


def _open_labels(options: DetectOptions, predictor: Predictor) -> LabelWriter | None:
    """The ``--save-labels`` dataset, in the model's classes (an old one removed first with ``--overwrite``)."""
    if options.labels_format is None:
        return None
    return open_label_writer(
        options.labels_format, options.labels_dir, class_names=predictor.class_names,
        category_ids=predictor.category_ids, overwrite=options.overwrite_labels,
    )


def _log_labels(labels: LabelWriter | None) -> None:
    if labels is not None:
        logger.info(f"wrote {labels.images} images and {labels.boxes} boxes as a {labels.format} dataset in "
                    f"{labels.folder}; read it back with: {labels.check_command()}")


# --------------------------------------------------------------------------------------------------- images


def list_folder_images(folder: str | Path) -> list[Path]:
    """The images directly inside ``folder`` (``ssdlite_runtime.image_io.list_images``), at least one.

    Raises:
        FileNotFoundError: no such folder.
        ValueError: the folder has no images.
    """
    images = list_images(folder)
    if not images:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {folder}")
    return images


def _image_save_paths(paths: Sequence[Path], save: str | Path | None) -> list[Path | None]:
    """One output path per input: ``save`` itself for one image with an image suffix, else ``save/<name>``."""
    if save is None:
        return [None] * len(paths)
    save = Path(save)
    if save.suffix.lower() in IMAGE_EXTENSIONS:
        if len(paths) != 1:
            raise ValueError(f"--save {save} is an image file but there are {len(paths)} images; give a folder")
        return [save]
    if save.is_file():
        raise ValueError(f"--save {save} is an existing file; give a folder for the annotated images")
    outputs, used = [], set()
    for index, path in enumerate(paths):
        name = path.name if path.name not in used else f"{path.stem}_{index}{path.suffix}"
        used.add(name)
        outputs.append(save / name)
    return outputs


@dataclass
class ImagesSummary:
    processed: int
    skipped: int
    detections: int


def detect_images(
    paths: Sequence[str | Path],
    options: DetectOptions,
) -> ImagesSummary:
    """Detect objects in image files: log them, and save / show / write JSON / write labels as ``options`` say.

    An image that does not exist or cannot be read is skipped with a warning (and gets no label). The labelled
    dataset is finished also when the job stops early (Ctrl+C, SIGTERM, q in the window).

    Raises:
        ValueError: none of the images could be read, a bad ``--save`` / ``--json`` / ``--save-labels`` target, or
            ``options.track``.
    """
    if options.track:
        raise ValueError(TRACKING_NEEDS_A_STREAM)
    paths = [Path(path) for path in paths]
    save_paths = _image_save_paths(paths, options.save)
    _check_json_path(options.json_path)
    _check_labels(options, paths)
    window = _image_window(options)
    predictor = load_predictor(options)
    labels = _open_labels(options, predictor)
    records: list[dict] = []
    processed = skipped = 0
    try:
        for image_id, (path, save_path) in enumerate(zip(paths, save_paths)):
            try:
                image = read_image(path)
            except (OSError, ValueError, cv2.error) as error:  # ImageReadError: missing, truncated, not an image
                logger.warning(f"skipping {path}: {getattr(error, 'reason', None) or one_line(error)}")
                skipped += 1
                continue
            [detections] = predictor.predict(image)
            image_records = predictor.to_records(detections, image_id=image_id, file_name=str(path))
            records.extend(image_records)
            logger.info(f"{path}: {_describe_records(image_records)}")
            processed += 1
            if labels is not None:
                with signals_deferred():  # the image and its label are written whole
                    labels.add_file(path, detections, height=image.shape[0], width=image.shape[1])
            if save_path is not None or window is not None:
                annotated = draw_detections(image, detections, predictor.class_names)
                if save_path is not None:
                    _write_image(save_path, annotated)
                if window is not None and not window.show_and_wait(annotated):
                    break
    finally:
        if window is not None:
            window.close()
        if labels is not None:
            labels.close()
    if processed == 0:
        raise ValueError(f"none of the {len(paths)} images could be read")
    if options.json_path is not None:
        write_json(records, options.json_path)
    if options.save is not None:
        logger.info(f"saved annotated images to {options.save}")
    _log_labels(labels)
    return ImagesSummary(processed=processed, skipped=skipped, detections=len(records))


def _describe_records(records: list[dict], *, listed: int = 8) -> str:
    """``3 objects: disc 0.91, square 0.80, ...``"""
    names = [f"{record['category_name']} {record['score']:.2f}" for record in records[:listed]]
    more = ", ..." if len(records) > listed else ""
    return f"{len(records)} objects" + (f": {', '.join(names)}{more}" if records else "")


def detect_folder(folder: str | Path, options: DetectOptions, **kwargs) -> ImagesSummary:
    """``detect_images`` on the images directly inside ``folder``."""
    return detect_images(list_folder_images(folder), options, **kwargs)


def _write_image(path: Path, image_rgb) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)):
        raise ValueError(f"cannot write image {path} (unsupported suffix or unwritable folder)")


class _ImageWindow(stream.OpenCVWindow):
    def show_and_wait(self, image_rgb) -> bool:
        """Show one image until a key is pressed; False if it was q / Esc."""
        cv2.imshow(self.title, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
        return (cv2.waitKey(0) & 0xFF) not in (ord("q"), ord("Q"), 27)


def _image_window(options: DetectOptions) -> _ImageWindow | None:
    if not options.show:
        return None
    if not stream.opencv_gui_available():
        logger.info("note: this OpenCV has no GUI (or there is no display), so images are not shown; use --save")
        return None
    return _ImageWindow("ssdlite (any key: next, q: quit)")


# -------------------------------------------------------------------------------------------------- streams


def detect_video(
    path: str | Path,
    options: DetectOptions,
    *,
    max_frames: int | None = None,
    serve_port: int | None = None,
    host: str = "127.0.0.1",
) -> stream.StreamSummary:
    """Detect objects in every frame of a video file (synchronously: no frame is dropped).

    Raises:
        FileNotFoundError / ValueError: the video does not exist or cannot be decoded, bad output targets.
    """
    with stream.VideoFileSource(path) as source:
        return _run_stream_job(
            source, options, max_frames=max_frames, serve_port=serve_port, host=host, web_fallback=False,
            frame_stem=Path(path).stem,
        )


def detect_camera(
    camera: str | int,
    options: DetectOptions,
    *,
    max_frames: int | None = None,
    serve_port: int | None = None,
    host: str = "127.0.0.1",
    loop: bool = False,
    open_timeout_s: float = stream.DEFAULT_OPEN_TIMEOUT_S,
) -> stream.StreamSummary:
    """Live detection on a camera index, a stream URL, or a video file standing in for a camera.

    Shown in an OpenCV window where OpenCV has a GUI, else (and always with ``serve_port``) on the local web view.

    Raises:
        FileNotFoundError / ValueError: the camera does not open, the URL does not answer, the file cannot be
            decoded, the port is taken, bad output targets.
    """
    with stream.open_camera(camera, loop=loop, open_timeout_s=open_timeout_s) as source:
        return _run_stream_job(
            source, options, max_frames=max_frames, serve_port=serve_port, host=host, web_fallback=True,
            frame_stem=camera_stem(camera),
        )


def camera_stem(camera: str | int) -> str:
    """The start of ``--save-labels``' frame names for ``--camera``: ``camera0``, ``stream``, a file's stem."""
    target = stream.parse_camera(camera)
    if isinstance(target, int):
        return f"camera{target}"
    return target.stem if isinstance(target, Path) else "stream"


def _check_stream_outputs(options: DetectOptions, source: stream.FrameSource) -> None:
    source_path = getattr(source, "path", None)
    _check_labels(options, [] if source_path is None else [Path(source_path)])
    if options.save is not None and Path(options.save).suffix.lower() not in stream.VIDEO_WRITER_CODECS:
        raise ValueError(f"--save {options.save}: save a stream as a .mp4 or .avi file")
    _check_json_path(options.json_path)
    if options.mot_path is not None:
        if not options.track:
            raise ValueError(f"--mot {options.mot_path} writes tracks: add --track")
        if Path(options.mot_path).is_dir():
            raise ValueError(f"--mot {options.mot_path} is a folder; give a file name such as tracks.txt")
    if (options.count_lines or options.count_zones) and not options.track:
        flag = "--count-line" if options.count_lines else "--count-zone"
        raise ValueError(f"{flag} counts tracked objects: add --track")


def _json_lines(options: DetectOptions) -> bool:
    return options.json_path is not None and Path(options.json_path).suffix.lower() in JSON_LINES_SUFFIXES


def json_line(
    frame: stream.Frame, records: list[dict], *, fps: float | None, started_at: float, tracking: bool,
    counts: dict | None = None,
) -> str:
    """One frame of ``--json x.jsonl``: ``{"frame", "time_s", "timestamp", "tracks" | "detections"[, "counts"]}``.

    ``frame`` is the frame's 0-based index in the source (a live source counts the frames it dropped too),
    ``time_s`` its time in the stream (index / the source's frame rate; the capture time since the first frame
    where the rate is unknown), ``timestamp`` the Unix time it was read; ``tracks`` (with ``--track``: each with
    ``track_id``) or ``detections`` are COCO-style records without ``image_id``; ``counts`` (with
    ``--count-line`` / ``--count-zone``) is the frame's ``Counter.update`` result: per line the tracks that crossed
    in and out so far, per zone those inside now and those that entered and exited so far, per class, and the
    track ids of this frame's events.
    """
    time_s = frame.index / fps if fps else frame.captured_at - started_at
    timestamp = time.time() - (time.perf_counter() - frame.captured_at)
    objects = [{key: value for key, value in record.items() if key != "image_id"} for record in records]
    line = {"frame": frame.index, "time_s": round(time_s, 4), "timestamp": round(timestamp, 4)}
    line["tracks" if tracking else "detections"] = objects
    if counts is not None:
        line["counts"] = counts
    return json.dumps(line)


class _FrameWriters:
    """The per-frame outputs of a stream: ``--json x.jsonl`` lines and ``--mot`` lines, written as frames come
    (flushed, so a live run can be followed and Ctrl+C loses nothing), and every ``--every``-th frame with its
    ``--save-labels`` label, named ``<frame_stem>_<frame index, 6 digits>.jpg``. With a ``counter``, each JSON
    line gets the frame's counts (``counter.latest``: ``run_stream`` counts a frame before it calls ``write``)."""

    def __init__(
        self, options: DetectOptions, source: stream.FrameSource, labels: LabelWriter | None = None,
        frame_stem: str = "frame", counter: Counter | None = None,
    ) -> None:
        self.options = options
        self.source = source
        self.files: list[IO[str]] = []
        self.json_file = self._open(options.json_path) if _json_lines(options) else None
        self.mot_file = self._open(options.mot_path) if options.mot_path is not None else None
        self.labels = labels
        self.frame_stem = frame_stem
        self.counter = counter
        self.lines = 0
        self._frames = 0
        self._started_at: float | None = None

    def _open(self, path: str | Path) -> IO[str]:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("w", encoding="utf-8")
        self.files.append(handle)
        return handle

    @property
    def callback(self) -> Callable[[stream.Frame, dict, list[dict]], None] | None:
        return self.write if self.files or self.labels is not None else None

    def write(self, frame: stream.Frame, result: dict, records: list[dict]) -> None:
        if self._started_at is None:
            self._started_at = frame.captured_at
        if self.json_file is not None:
            line = json_line(
                frame, records, fps=self.source.fps, started_at=self._started_at, tracking=self.options.track,
                counts=None if self.counter is None else self.counter.latest,
            )
            self.json_file.write(line + "\n")
            self.json_file.flush()
        if self.mot_file is not None:
            for line in mot_lines(frame.index + 1, result):
                self.mot_file.write(line + "\n")
                self.lines += 1
            self.mot_file.flush()
        if self.labels is not None and self._frames % (self.options.labels_every or 1) == 0:
            self.labels.add_frame(f"{self.frame_stem}_{frame.index:06d}.jpg", frame.image, result)
        self._frames += 1

    def close(self) -> None:
        for handle in self.files:
            handle.close()
        if self.labels is not None:
            self.labels.close()


def _open_server(ports: Sequence[int], host: str) -> stream.StreamServer:
    """The web view on the first of ``ports`` that is free (the last one's error if none is)."""
    *earlier, last = ports
    for port in earlier:
        try:
            server = stream.StreamServer(host=host, port=port, title="ssdlite live detections")
            break
        except ValueError:
            continue  # taken: the next one
    else:
        server = stream.StreamServer(host=host, port=last, title="ssdlite live detections")
    logger.info(f"web view: {server.url}")
    return server


def _stream_tracker(options: DetectOptions) -> Tracker | None:
    """The tracker ``--track`` asks for (made before the model: a missing supervision or a bad setting fails fast)."""
    if not options.track:
        return None
    tracker = Tracker(**options.tracker_settings, trail_length=options.trail_length, per_class=options.track_per_class)
    logger.info(f"tracking: {tracker.describe()}")
    return tracker


def _stream_counter(options: DetectOptions, tracker: Tracker | None, class_names: Sequence[str]) -> Counter | None:
    """The counter ``--count-line`` / ``--count-zone`` ask for, remembering a lost track as long as the tracker
    does."""
    if tracker is None or not (options.count_lines or options.count_zones):
        return None
    counter = Counter(options.count_lines, options.count_zones, class_names=class_names,
                      forget_after=tracker.lost_track_frames)
    counted = [f"line {index} ({line.describe()})" for index, line in enumerate(counter.lines, 1)]
    counted += [f"zone {index} ({zone.describe()})" for index, zone in enumerate(counter.zones, 1)]
    logger.info(f"counting: {', '.join(counted)}; a line counts a box whose four corners crossed it, a zone the "
                "bottom centre of a box")
    return counter


def _stream_display(options: DetectOptions, *, serve_port: int | None, web_fallback: bool) -> tuple[bool, list[int]]:
    """(whether to show an OpenCV window, the ports to try for the web view): ``--serve``'s port; without a GUI,
    for a camera, the default port then any free one."""
    gui = options.show and stream.opencv_gui_available()
    if serve_port is not None:
        return gui, [serve_port]
    if not options.show or gui:
        return gui, []
    if web_fallback:
        logger.info("note: this OpenCV has no GUI (or there is no display): showing the stream on a local web page")
        return False, [DEFAULT_WEB_PORT, 0]  # 0: any free port, if the default one is taken
    logger.info("note: this OpenCV has no GUI (or there is no display): not showing frames (use --serve PORT)")
    return False, []


def _run_stream_job(
    source: stream.FrameSource,
    options: DetectOptions,
    *,
    max_frames: int | None,
    serve_port: int | None,
    host: str,
    web_fallback: bool,
    frame_stem: str,
) -> stream.StreamSummary:
    _check_stream_outputs(options, source)
    tracker = _stream_tracker(options)
    predictor = load_predictor(options)
    gui, ports = _stream_display(options, serve_port=serve_port, web_fallback=web_fallback)
    stop_event = threading.Event()
    counter = _stream_counter(options, tracker, predictor.class_names)
    writers = _FrameWriters(options, source, _open_labels(options, predictor), frame_stem, counter)
    window: stream.OpenCVWindow | None = None
    server: stream.StreamServer | None = None
    try:
        server = _open_server(ports, host) if ports else None
        window = stream.OpenCVWindow("ssdlite (q: quit)") if gui else None
        stop_keys = "q + Enter or Ctrl+C" if stream.watch_stdin_for_quit(stop_event) else "Ctrl+C"
        limit = f" for {max_frames} frames" if max_frames else ""
        logger.info(f"reading {source.description}{limit} ({'q in the window, ' if window else ''}{stop_keys} to stop)")
        summary = stream.run_stream(
            predictor, source, max_frames=max_frames, window=window, server=server, save_path=options.save,
            collect_records=options.json_path is not None and not _json_lines(options), stop_event=stop_event,
            tracker=tracker, on_frame=writers.callback, clean_frames=writers.labels is not None, counter=counter,
        )
    finally:
        for opened in (writers, window, server):
            if opened is not None:
                opened.close()
    _finish_stream_outputs(options, summary, mot_lines=writers.lines)
    _log_labels(writers.labels)
    return summary


def _finish_stream_outputs(options: DetectOptions, summary: stream.StreamSummary, *, mot_lines: int) -> None:
    """Logs how the stream ended and what it wrote, writing ``--json``'s record list (not JSON lines) now."""
    dropped = f", {summary.dropped_frames} frames dropped while busy" if summary.dropped_frames else ""
    logger.info(
        f"stopped ({summary.stop_reason}): {summary.frames} frames in {summary.seconds:.1f} s, "
        f"{summary.fps:.1f} FPS{dropped}"
    )
    if options.save is not None and summary.frames:
        logger.info(f"saved annotated video to {options.save}")
    if options.json_path is not None:
        if _json_lines(options):
            what = "tracks" if options.track else "detections"
            logger.info(f"wrote {summary.frames} frames of {what} to {options.json_path}")
        else:
            write_json(summary.records, options.json_path)
    if options.mot_path is not None:
        logger.info(f"wrote {mot_lines} MOT lines ({summary.frames} frames) to {options.mot_path}")
    if summary.counts is not None:
        for described in describe_totals(summary.counts):
            logger.info(f"counted {described}")
