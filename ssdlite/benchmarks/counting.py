"""Counting accuracy: the tracks crossing a line across the middle of generated shapes videos, counted as
``ssdlite-detect video ... --track --count-line`` counts them, against the true crossings in the MOT ground truth.

The videos are the first sequences of the generated MOT set of the tracking measurement in docs/benchmarks.md
(``ssdlite-make-shapes --video``: seed 0, 320 x 320, 30 fps; its 5 sequences of 300 frames, written to a
scratch folder); two lines through the middle are counted at once: a horizontal one drawn left to right
(``0,160,320,160``: in is upwards) and a vertical one drawn bottom to top (``160,320,160,0``: in is leftwards),
so that the shapes, which wander the whole frame, cross one or the other often enough to count. Each frame goes
through the command's loop (:func:`ssdlite_runtime.stream.run_stream`): the Predictor (the ONNX Runtime file with
NMS inside, from ``--checkpoint``, else random weights; smoke: the eager backend, one short small sequence) at
ByteTrack's low-score floor, the default tracker, and the :class:`ssdlite_runtime.counting.Counter` with the
tracker's memory. The true counts apply the counter's rules to the ground-truth boxes
(:func:`ssdlite.evaluation.counting.true_counts`). Per sequence: the true and counted crossings in and out per
class on each line, the net error (counted - true, all classes) and the count error (the sum over classes and directions of
|counted - true|: a crossing missed or counted twice is 1, one counted under another class is 2). The figures mean
something with a trained shapes model (``--checkpoint runs/demo/last.ckpt``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .inputs import benchmark_model, model_facts
from .options import BenchmarkOptions
from .timing import use_threads

SEQUENCES, FRAMES, SIZE, SEED = 5, 300, 320, 0
"""The generated sequences counted (ssdlite-make-shapes --video's seed and size)."""
SMOKE_SEQUENCES, SMOKE_FRAMES, SMOKE_SIZE = 1, 12, 128


def measure_counting(options: BenchmarkOptions) -> dict[str, dict[str, Any]]:
    """True vs counted line crossings per sequence (see the module docstring)."""
    from ssdlite_runtime.plugins import missing_packages

    if missing_packages(["supervision"]):
        return {"info": {"counting": "not measured: supervision is not installed (pip install 'ssdlite[tracking]')"}}
    from ssdlite.data.synthetic import SHAPE_CLASSES
    from ssdlite.data.synthetic_video import make_shapes_videos
    from ssdlite.evaluation.counting import true_counts
    from ssdlite_runtime.counting import CountLine

    sequences, frames, size = (SMOKE_SEQUENCES, SMOKE_FRAMES, SMOKE_SIZE) if options.smoke else (SEQUENCES, FRAMES, SIZE)
    lines = {"horizontal": CountLine(0, size / 2, size, size / 2), "vertical": CountLine(size / 2, size, size / 2, 0)}
    use_threads(options.threads)
    model, class_names, model_info = _model(options)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="ssdlite_benchmark_") as scratch:
        make_predictor = _predictor_factory(model, class_names, Path(scratch), options)
        folders = make_shapes_videos(Path(scratch) / "videos", num_sequences=sequences, num_frames=frames, size=size,
                                     seed=SEED)
        for folder in folders:
            counted = _count(make_predictor(), folder / "video.mp4", list(lines.values()))
            truth = true_counts(folder / "gt" / "gt.txt", lines=list(lines.values()), class_names=SHAPE_CLASSES,
                                num_frames=frames)["lines"]
            for index, name in enumerate(lines):
                results[f"{folder.name} {name}"] = _compare(truth[index], counted[index])
    return {
        "info": {
            "counting": {
                **model_info,
                "videos": f"{sequences} generated shapes sequences (ssdlite-make-shapes --video, seed {SEED}) of "
                f"{frames} frames, {size} x {size}",
                "line": f"{lines['horizontal'].describe()} (in: upwards) and {lines['vertical'].describe()} (in: "
                "leftwards)",
                "sequences": results,
                "true_crossings": sum(result["true_total"] for result in results.values()),
                "count_error": sum(result["count_error"] for result in results.values()),
            }
        }
    }


def _model(options: BenchmarkOptions) -> tuple[Any, list[str] | None, dict[str, Any]]:
    """(model, its class names or None, the facts the report states)."""
    if options.checkpoint is None:
        model, info = benchmark_model(options)
        return model, None, info
    from ssdlite.deploy.model_files import load_checkpoint_for_inference

    model, meta = load_checkpoint_for_inference(options.checkpoint)
    return model, list(meta["class_names"]), {"model": str(options.checkpoint), **model_facts(model)}


def _predictor_factory(model: Any, class_names: list[str] | None, scratch: Path, options: BenchmarkOptions) -> Any:
    """A function making a Predictor as ``ssdlite-detect --track`` runs it (score > ByteTrack's low-score floor)."""
    from ssdlite_runtime.predictor import Predictor
    from ssdlite_runtime.tracking import SECOND_ASSOCIATION_MIN_SCORE

    if options.smoke:
        return lambda: Predictor.from_model(model, class_names=class_names, score_threshold=SECOND_ASSOCIATION_MIN_SCORE)
    from ssdlite.deploy.export import export_onnx

    path = export_onnx(model, scratch / "nms.onnx", class_names=class_names, with_nms=True)
    return lambda: Predictor(path, backend="ort", threads=options.threads, score_threshold=SECOND_ASSOCIATION_MIN_SCORE)


def _count(predictor: Any, video: Path, lines: list[Any]) -> list[dict[str, Any]]:
    """Each line's totals after ``ssdlite-detect``'s loop ran over ``video`` with a fresh tracker and counter."""
    from ssdlite_runtime.counting import Counter
    from ssdlite_runtime.stream import VideoFileSource, run_stream
    from ssdlite_runtime.tracking import Tracker

    tracker = Tracker()
    counter = Counter(lines, class_names=predictor.class_names, forget_after=tracker.lost_track_frames)
    with VideoFileSource(video) as source:
        summary = run_stream(predictor, source, tracker=tracker, counter=counter)
    return summary.counts["lines"]


def _compare(truth: dict[str, Any], counted: dict[str, Any]) -> dict[str, Any]:
    """True and counted crossings per direction and class, the net error and the count error."""
    differences = [
        counted[direction].get(name, 0) - truth[direction].get(name, 0)
        for direction in ("in", "out")
        for name in set(truth[direction]) | set(counted[direction])
    ]
    true_total = sum(sum(truth[direction].values()) for direction in ("in", "out"))
    counted_total = sum(sum(counted[direction].values()) for direction in ("in", "out"))
    return {
        "true": {"in": truth["in"], "out": truth["out"]},
        "counted": {"in": counted["in"], "out": counted["out"]},
        "true_total": true_total,
        "counted_total": counted_total,
        "net_error": counted_total - true_total,
        "count_error": sum(abs(difference) for difference in differences),
    }
