"""``ssdlite-detect``: detect objects with an SSDLite model in images, a folder, a video file or a camera.

Examples:
    ssdlite-detect image photo.jpg --save out.jpg
    ssdlite-detect dir photos/ --save annotated/ --json detections.json
    ssdlite-detect video clip.mp4 --save clip_boxes.mp4 --classes person,dog
    ssdlite-detect webcam --camera 0              # OpenCV window, or http://127.0.0.1:8000 without a GUI
    ssdlite-detect webcam --camera rtsp://10.0.0.5/stream --serve 8080
    ssdlite-detect video clip.mp4 --track --mot tracks.txt --json tracks.jsonl --save tracked.mp4
    ssdlite-detect dir photos/ --save-labels yolo runs/labels   # pre-labels for CVAT / Label Studio / training
    ssdlite-detect video clip.mp4 --save-labels coco runs/clip_labels --every 10
    ssdlite-detect video drone_4k.mp4 --slice 640 --save boxes.mp4   # small objects: 640 px tiles + the frame

Exported files (.onnx, ...) run with this package alone, without PyTorch; a checkpoint (.ckpt) needs the full
ssdlite package. From a checkout, ``python detect.py`` is the same command. Without --model the newest checkpoint
under runs/ is used (best*.ckpt first). Errors are one line on stderr with exit status 2 (see
ssdlite_runtime/errors.py). q (exit status 0), Ctrl+C (130) or SIGTERM (143, e.g. from a job scheduler) stops a
stream cleanly: the saved video, the --json / --mot files and the --save-labels dataset hold every frame processed
(the dataset: every one it keeps), and the last line says what stopped it, e.g. "stopped (SIGTERM): 120 frames in
9.8 s".

--track (video and webcam) follows objects across frames with ByteTrack (supervision; pip install
'ssdlite-runtime[tracking]'), one tracker per class or, with --track-classes any, one for all classes with each
track's class voted: boxes read "#ID class score" with a trail of recent centres, --mot writes the MOT Challenge
text format, --json NAME.jsonl one JSON line per frame. --count-line and --count-zone count the tracks crossing a
line (in and out) and inside a polygon (entered, exited), per class (ssdlite_runtime/counting.py has the rules):
    ssdlite-detect video clip.mp4 --track --count-line 0,240,640,240 --json counts.jsonl --save counted.mp4

--save-labels FORMAT OUT writes what is kept (above --score-threshold, of --classes) as a dataset in a training
format, the images beside their labels, for a labelling tool (CVAT, Label Studio) to import and a person to
correct, or to train on (ssdlite_runtime/labels.py has each layout):
    yolo  OUT/images/, OUT/labels/STEM.txt (class cx cy w h, normalised), OUT/classes.txt, OUT/data.yaml
    voc   OUT/JPEGImages/, OUT/Annotations/STEM.xml, OUT/ImageSets/Main/trainval.txt, OUT/labels.txt
    coco  OUT/images/, OUT/annotations.json (the model's category ids)
Image files are copied as they are; a video or camera gives one JPEG (<video stem>_<frame>.jpg) and one label per
kept frame, every --every N-th. An image without detections still gets its (empty) label. A folder that already
holds such a dataset is refused unless --overwrite, which deletes that dataset first.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

# Before cv2 loads: keep OpenCV / FFmpeg from printing their own messages next to our one-line errors.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET

from ssdlite_runtime.argtypes import (  # noqa: E402
    checked,
    class_list,
    port,
    positive_int,
    real_number,
    unit_interval,
    whole_number,
)
from ssdlite_runtime.backends.base import available_backends  # noqa: E402
from ssdlite_runtime.errors import command  # noqa: E402
from ssdlite_runtime.slicing import DEFAULT_SLICE_OVERLAP, MIN_SLICE_SIZE  # noqa: E402

PROG = "ssdlite-detect"


MAX_TRACK_FPS = 1000.0
"""--track-fps at most (cameras deliver up to a few hundred frames a second)."""
MAX_TRACK_BUFFER = 1_000_000
"""--track-buffer at most, in frames (over 9 hours at 30 FPS)."""
MAX_TRAIL = 10_000
"""--trail at most, in points per track."""
MAX_TIMEOUT_S = 3600.0
"""--timeout at most, in seconds."""

# The option types check the whole range at parse time (ssdlite_runtime.argtypes), so a value no setting can take
# (inf, nan, a number too large for the library that gets it) is argparse's one-line usage error naming the option.

_non_negative_int = checked(whole_number, lambda n: n >= 0, "0 or more")
_track_buffer = checked(_non_negative_int, lambda n: n <= MAX_TRACK_BUFFER, f"at most {MAX_TRACK_BUFFER} frames")
_frame_rate = checked(
    real_number, lambda n: 0.0 < n <= MAX_TRACK_FPS, f"a frame rate above 0 and at most {MAX_TRACK_FPS:g}"
)
_trail = checked(positive_int, lambda n: n <= MAX_TRAIL, f"at most {MAX_TRAIL} points")
_seconds = checked(
    real_number, lambda n: 0.0 < n <= MAX_TIMEOUT_S, f"a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}"
)
_slice_size = checked(whole_number, lambda n: n >= MIN_SLICE_SIZE, f"at least {MIN_SLICE_SIZE} pixels")
_slice_overlap = checked(real_number, lambda n: 0.0 <= n < 1.0, "at least 0 and below 1")


def add_slicing_options(parser: argparse.ArgumentParser) -> None:
    """--slice and --slice-overlap: sliced inference (``ssdlite_runtime.slicing``), ssdlite-detect's and
    ssdlite-serve's."""
    parser.add_argument(
        "--slice", dest="slice_size", type=_slice_size, metavar="SIZE",
        help="small objects in large images: also run the model on overlapping SIZE x SIZE tiles of each image "
        f"(at least {MIN_SLICE_SIZE}; e.g. 640 for 4K frames) and merge their detections with the full frame's; "
        "costs one forward pass per tile",
    )
    parser.add_argument(
        "--slice-overlap", type=_slice_overlap, metavar="F",
        help=f"with --slice: the fraction of a tile its neighbours overlap, 0 to below 1 (default: "
        f"{DEFAULT_SLICE_OVERLAP:g}); an object no larger than F x SIZE is seen whole by some tile",
    )


_TRACKER_OPTIONS = (
    # (option, supervision's ByteTrack setting, type, metavar, help without the default)
    ("--track-activation", "track_activation_threshold", unit_interval, "S",
     "ByteTrack's track_activation_threshold: detections scoring at least S are matched first (and start tracks "
     "from S + 0.1); weaker ones, down to --score-threshold (default 0.1 with --track), only extend tracks"),
    ("--track-buffer", "lost_track_buffer", _track_buffer, "FRAMES",
     f"lost_track_buffer: frames a lost track waits to be found again, at most {MAX_TRACK_BUFFER}"),
    ("--track-match", "minimum_matching_threshold", unit_interval, "T",
     "minimum_matching_threshold: the largest IoU distance (1 - IoU, fused with the score) of a match"),
    ("--track-fps", "frame_rate", _frame_rate, "FPS",
     f"frame_rate: scales --track-buffer by FPS / 30; above 0, at most {MAX_TRACK_FPS:g}"),
    ("--track-min-frames", "minimum_consecutive_frames", positive_int, "N",
     "minimum_consecutive_frames: frames an object must be tracked before it gets an id"),
)


def _add_tracking_options(parser: argparse.ArgumentParser) -> None:
    """--mot and the tracker's settings; one left out is not passed, so supervision's ByteTrack default applies."""
    from ssdlite_runtime.tracking import DEFAULT_CLASS_NMS_IOU, DEFAULT_PER_CLASS, DEFAULT_TRAIL_LENGTH

    group = parser.add_argument_group("tracking (with --track)")
    group.add_argument("--mot", dest="mot_path", metavar="PATH", help="write the tracks as MOT Challenge text "
                       "(frame,id,x,y,w,h,score,-1,-1,-1; frames from 1), e.g. for tools/eval_mot.py")
    for flag, _, kind, metavar, text in _TRACKER_OPTIONS:
        group.add_argument(flag, type=kind, metavar=metavar, help=f"{text} (default: supervision's)")
    group.add_argument(
        "--track-classes", choices=("each", "any"), default="each" if DEFAULT_PER_CLASS else "any",
        help="each: one ByteTrack per class (a track only matches its own class's detections); any: one ByteTrack "
        f"for all classes after a class-agnostic NMS (IoU {DEFAULT_CLASS_NMS_IOU:g}), each track's class voted by "
        "the scores of the detections it matched, so a detector flipping an object's class neither splits nor "
        f"renames its track (default: {'each' if DEFAULT_PER_CLASS else 'any'}; with a detector that confuses classes, 'each' splits a track when its class flips)",
    )
    group.add_argument(
        "--trail", type=_trail, default=DEFAULT_TRAIL_LENGTH, metavar="N",
        help=f"recent centres drawn per track (default: {DEFAULT_TRAIL_LENGTH}; at most {MAX_TRAIL})",
    )
    group.add_argument(
        "--count-line", dest="count_lines", type=_count_line, action="append", default=[], metavar="X1,Y1,X2,Y2",
        help="count the tracks crossing the line from (X1, Y1) to (X2, Y2), frame pixels, per class: in when a box "
        "passes whole to the left of that direction as drawn (upwards for a line drawn left to right), out to the "
        "right; drawn on the frame, in --json NAME.jsonl (each frame's counts) and logged at the end; repeatable",
    )
    group.add_argument(
        "--count-zone", dest="count_zones", type=_count_zone, action="append", default=[],
        metavar="X1,Y1,X2,Y2,X3,Y3,...",
        help="count the tracks inside the polygon (at least 3 corners, frame pixels), by the bottom centre of their "
        "box, per class, and those that entered and left it; repeatable",
    )


def _count_line(value: str) -> Any:
    from ssdlite_runtime.counting import CountLine

    try:
        return CountLine.parse(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _count_zone(value: str) -> Any:
    from ssdlite_runtime.counting import CountZone

    try:
        return CountZone.parse(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


class _SaveLabels(argparse.Action):
    """``--save-labels FORMAT OUT``: an unknown FORMAT is argparse's usage error."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        from ssdlite_runtime.labels import LABEL_FORMATS

        label_format, folder = values
        if label_format not in LABEL_FORMATS:
            raise argparse.ArgumentError(
                self, f"invalid FORMAT {label_format!r} (choose from {', '.join(LABEL_FORMATS)})"
            )
        setattr(namespace, self.dest, (label_format, folder))


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--model", metavar="PATH", help="exported file (.onnx, ...) or checkpoint (.ckpt); default: newest under runs/"
    )
    common.add_argument(
        "--backend",
        choices=available_backends(),
        help="ort (ONNX Runtime), int8 (an INT8 .onnx from tools/export.py --int8), eager (PyTorch, a checkpoint; "
        "needs the full ssdlite package), ...; default: from the model file's name (.onnx -> ort)",
    )
    common.add_argument("--runs-dir", metavar="DIR", help="without --model: the folder the installed default model "
                        "is looked for in (the full ssdlite package: its newest checkpoint under DIR, default runs)")
    common.add_argument("--device", default="cpu", help="torch device of the eager backend, e.g. cuda (default: cpu)")
    common.add_argument("--score-threshold", type=unit_interval, default=None, metavar="S", help="minimum score, 0 to 1 (default: 0.4; 0.1 with --track)")
    common.add_argument(
        "--classes", type=class_list, action="extend", metavar="NAME[,NAME...]", help="keep only these classes"
    )
    common.add_argument("--save", metavar="PATH", help="annotated output: image file or folder; .mp4/.avi for video and webcam")
    common.add_argument(
        "--json", dest="json_path", metavar="PATH", help="write detections as COCO-style records to this file "
        "(with --track each has a track_id); for video and webcam a .jsonl name gets one JSON line per frame "
        '({"frame", "time_s", "timestamp", "tracks" or "detections"}), written as frames come',
    )
    common.add_argument(
        "--save-labels", action=_SaveLabels, nargs=2, metavar=("FORMAT", "OUT"),
        help="write the detections as a dataset in FORMAT (yolo, voc, coco) in folder OUT: the images and one label "
        "each (an empty one without detections) and the class names, for CVAT / Label Studio or training",
    )
    common.add_argument("--overwrite", action="store_true",
                        help="with --save-labels: replace the dataset already in OUT (else it is refused)")
    common.add_argument("--no-show", dest="show", action="store_false", help="do not display anything")
    common.add_argument(
        "--track", action="store_true", help="video and webcam: follow objects across frames, each with an id"
    )
    add_slicing_options(common)

    streaming = argparse.ArgumentParser(add_help=False)
    streaming.add_argument("--max-frames", type=positive_int, metavar="N", help="stop after N frames")
    streaming.add_argument("--every", type=positive_int, metavar="N",
                           help="with --save-labels: label every Nth frame, the first one included (default: 1)")
    streaming.add_argument("--serve", type=port, metavar="PORT", help="web view on http://HOST:PORT (0 = free port)")
    streaming.add_argument("--host", default="127.0.0.1", help="interface for --serve (default: 127.0.0.1 only)")
    _add_tracking_options(streaming)

    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    image = commands.add_parser("image", parents=[common], help="one or more image files")
    image.add_argument("paths", nargs="+", metavar="PATH")
    folder = commands.add_parser("dir", parents=[common], help="every image in a folder")
    folder.add_argument("folder", metavar="DIR")
    video = commands.add_parser("video", parents=[common, streaming], help="a video file, every frame")
    video.add_argument("video", metavar="FILE")
    webcam = commands.add_parser("webcam", parents=[common, streaming], help="a live camera or stream")
    webcam.add_argument("--camera", default="0", metavar="INDEX|URL|FILE", help="camera index, stream URL, or a video file (default: 0)")
    webcam.add_argument("--loop", action="store_true", help="with a video file as camera: start over at the end")
    webcam.add_argument(
        "--timeout", type=_seconds, default=10.0, metavar="SECONDS",
        help=f"wait this long for a camera or URL (default: 10; at most {MAX_TIMEOUT_S:g})",
    )
    return parser


_TRACKER_SETTINGS = {flag[2:].replace("-", "_"): setting for flag, setting, *_ in _TRACKER_OPTIONS}
"""argparse destination -> ByteTrack setting."""


def run(args: argparse.Namespace) -> object:
    """Runs the subcommand; returns what its job returns (a ``StreamSummary`` for video and webcam)."""
    from ssdlite_runtime import jobs
    from ssdlite_runtime.tracking import DEFAULT_PER_CLASS, DEFAULT_TRAIL_LENGTH

    if args.track and args.command in ("image", "dir"):
        raise ValueError(jobs.TRACKING_NEEDS_A_STREAM)
    settings = {
        name: getattr(args, dest) for dest, name in _TRACKER_SETTINGS.items() if getattr(args, dest, None) is not None
    }
    options = jobs.DetectOptions(
        model=args.model,
        backend=args.backend,
        runs_dir=args.runs_dir,
        device=args.device,
        score_threshold=args.score_threshold,
        classes=args.classes,
        save=args.save,
        json_path=args.json_path,
        show=args.show,
        track=args.track,
        tracker_settings=settings,
        trail_length=getattr(args, "trail", DEFAULT_TRAIL_LENGTH),
        track_per_class=getattr(args, "track_classes", "each" if DEFAULT_PER_CLASS else "any") == "each",
        mot_path=getattr(args, "mot_path", None),
        labels_format=args.save_labels[0] if args.save_labels else None,
        labels_dir=args.save_labels[1] if args.save_labels else None,
        overwrite_labels=args.overwrite,
        labels_every=getattr(args, "every", None),
        count_lines=getattr(args, "count_lines", ()),
        count_zones=getattr(args, "count_zones", ()),
        slice_size=args.slice_size,
        slice_overlap=args.slice_overlap,
    )
    if args.command == "image":
        return jobs.detect_images(args.paths, options)
    if args.command == "dir":
        return jobs.detect_folder(args.folder, options)
    if args.command == "video":
        return jobs.detect_video(args.video, options, max_frames=args.max_frames, serve_port=args.serve, host=args.host)
    return jobs.detect_camera(
        args.camera,
        options,
        max_frames=args.max_frames,
        serve_port=args.serve,
        host=args.host,
        loop=args.loop,
        open_timeout_s=args.timeout,
    )


def _stop_on_signal(signum: int, frame: object) -> None:
    from ssdlite_runtime.stream import StopSignal  # imported by main before this handler is installed

    raise StopSignal(signum)  # stops a stream as cleanly as Ctrl+C (camera released, video finished), named


@command(PROG)
def main(argv: list[str] | None = None, *, prog: str = PROG) -> int:
    """Exit status: 0 done (or q), 2 bad input, 130 Ctrl+C, 143 SIGTERM (after a stream stopped cleanly, or at once
    before one started), 1 an unexpected error."""
    args = build_parser(prog).parse_args(argv)
    from ssdlite_runtime.stream import StopSignal, StreamSummary, signal_name

    previous = signal.signal(signal.SIGTERM, _stop_on_signal)
    try:
        result = run(args)
    except StopSignal as stop:  # outside a stream's loop (loading the model, an image job): nothing to finish
        print(f"{prog}: terminated ({signal_name(stop.signum)})", file=sys.stderr, flush=True)
        return 128 + stop.signum
    finally:
        if previous is not None:  # None: a handler not set from Python, which cannot be put back
            signal.signal(signal.SIGTERM, previous)
    return result.exit_status if isinstance(result, StreamSummary) else 0
