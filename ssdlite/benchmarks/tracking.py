"""What tracking adds to the live loop: per-frame time of ``Predictor.predict`` alone (``detect.py webcam``) and of
``predict`` + ``Tracker.update`` (``detect.py webcam --track``), on a 480 x 640 frame sequence where the objects
move (a camera panning 4 px per frame over a generated shapes scene), the calls alternating in rounds as in
:mod:`ssdlite.benchmarks.latency`.

Each side runs as the command does: without tracking the Predictor keeps detections scoring 0.4 (the display
default); with tracking 0.1 (ByteTrack's low-score floor, ``ssdlite_runtime.tracking``), and the tracker starts
again at the first frame of each round. The model is the ONNX Runtime file with NMS inside (``--checkpoint``, else
random weights; smoke: the eager backend, no export). ByteTrack's cost grows with the detections it gets, so the
figure means something with a trained model (``--checkpoint runs/demo/...``), whose detections are few and real.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .inputs import benchmark_model
from .options import BenchmarkOptions
from .timing import interleaved_latencies_ms, use_threads

PAN_PX_PER_FRAME = 4
FRAME_HEIGHT, FRAME_WIDTH = 480, 640


def measure_tracking(options: BenchmarkOptions) -> dict[str, dict[str, Any]]:
    """Live-loop time per frame with and without tracking (see the module docstring)."""
    from ssdlite_runtime.plugins import missing_packages
    from ssdlite_runtime.predictor import DISPLAY_SCORE_THRESHOLD, Predictor
    from ssdlite_runtime.tracking import SECOND_ASSOCIATION_MIN_SCORE, Tracker

    if missing_packages(["supervision"]):
        return {"info": {"tracking": "not measured: supervision is not installed (pip install 'ssdlite[tracking]')"}}
    use_threads(options.threads)
    model, model_info = benchmark_model(options)
    frames = panning_frames(6 if options.smoke else 60, seed=3)
    with tempfile.TemporaryDirectory(prefix="ssdlite_benchmark_") as scratch:
        if options.smoke:
            source, backend = model, {}
        else:
            from ssdlite.deploy.export import export_onnx

            source = export_onnx(model, Path(scratch) / "nms.onnx", with_nms=True)
            backend = {"backend": "ort", "threads": options.threads}
        plain = Predictor(source, score_threshold=DISPLAY_SCORE_THRESHOLD, **backend)
        tracking = Predictor(source, score_threshold=SECOND_ASSOCIATION_MIN_SCORE, **backend)
        tracker, alone = Tracker(), Tracker()
        low_score = [tracking.predict(frame)[0] for frame in frames]  # for timing the tracker alone

        def detect(index: int) -> Any:
            return plain.predict(frames[index])

        def detect_and_track(index: int) -> Any:
            if index == 0:
                tracker.reset()
            return tracker.update(tracking.predict(frames[index])[0])

        def track_only(index: int) -> Any:
            if index == 0:
                alone.reset()
            return alone.update(low_score[index])

        latency = interleaved_latencies_ms(
            {"tracking_live_detect": detect, "tracking_live_detect_track": detect_and_track,
             "tracking_tracker_update": track_only},
            list(range(len(frames))),
            rounds=2 if options.smoke else 6,
        )
        counts = _counts(plain, frames, low_score)
        described = {"detect": plain.describe(), "detect_track": tracking.describe(), "tracker": alone.describe()}
    overhead = latency["tracking_live_detect_track"] / latency["tracking_live_detect"]
    return {
        "latency_ms": latency,
        "ratios": {"tracking_detect_track_vs_detect": overhead},
        "info": {
            "tracking": {
                **model_info,
                "frames": f"{len(frames)} frames, {FRAME_HEIGHT} x {FRAME_WIDTH} uint8 RGB, a camera panning "
                f"{PAN_PX_PER_FRAME} px per frame over a generated shapes scene",
                "threads": options.threads,
                "predictors": described,
                **counts,
            }
        },
    }


def panning_frames(count: int, *, seed: int) -> list[np.ndarray]:
    """``count`` 480 x 640 crops of one generated shapes scene, the window moving 4 px right per frame: every
    object moves left at a constant speed; some leave the frame, some enter."""
    from ssdlite.data.synthetic import render_shapes_image

    side = max(FRAME_WIDTH + PAN_PX_PER_FRAME * count, FRAME_HEIGHT)
    scene, _, _ = render_shapes_image(np.random.default_rng(seed), size=side)
    top = (side - FRAME_HEIGHT) // 2
    return [
        np.ascontiguousarray(scene[top:top + FRAME_HEIGHT, step * PAN_PX_PER_FRAME:step * PAN_PX_PER_FRAME + FRAME_WIDTH])
        for step in range(count)
    ]


def _counts(plain: Any, frames: list[np.ndarray], low_score: list[dict[str, np.ndarray]]) -> dict[str, float]:
    from ssdlite_runtime.tracking import Tracker

    tracker = Tracker()
    tracked = [tracker.update(detections)["track_ids"] for detections in low_score]
    return {
        "detections_per_frame_at_0.4": statistics.mean(len(plain.predict(frame)[0]["scores"]) for frame in frames),
        "detections_per_frame_at_0.1": statistics.mean(len(detections["scores"]) for detections in low_score),
        "tracks_per_frame": statistics.mean(len(ids) for ids in tracked),
        "track_ids": len(set(np.concatenate(tracked).tolist())),
    }
