"""End-to-end detector latency at batch 1: a uint8 RGB frame in, final detections in original pixels out.

Timed: our Predictor with the eager, ONNX Runtime and INT8 backends (and ONNX Runtime returning the raw outputs),
torchvision's ssdlite320_mobilenet_v3_large (random weights, nothing downloaded) and torchvision's SSD class
running our network (:mod:`ssdlite.benchmarks.torchvision_reference`), all with torchvision's evaluation
postprocessing (score 0.001, 300 per class, NMS 0.55, 300 per image); plus the raw network alone in ONNX Runtime
(``ort_raw_net``). Medians over many calls after warm-up, the calls alternating between the detectors in rounds.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .inputs import benchmark_model, camera_frames, write_images
from .options import BenchmarkOptions
from .timing import interleaved_latencies_ms, use_threads


def measure_latency(options: BenchmarkOptions) -> dict[str, dict[str, Any]]:
    """End-to-end batch-1 latency of our three backends and torchvision's detectors (see the module docstring)."""
    from ssdlite.models.complexity import profile

    use_threads(options.threads)
    model, model_info = benchmark_model(options)
    frames = camera_frames(2 if options.smoke else 16, seed=1)
    with tempfile.TemporaryDirectory(prefix="ssdlite_benchmark_") as scratch:
        scratch = Path(scratch)
        calibration = options.calibration_images or write_images(
            camera_frames(4 if options.smoke else 32, seed=2), scratch / "calibration"
        )
        predictors, raw_network = _our_predictors(model, scratch, calibration=calibration, threads=options.threads)
        references = torchvision_detectors(model)
        candidates = {
            **{f"ours_{name}": predictor.predict for name, predictor in predictors.items()},
            **{name: detect_with(detector) for name, detector in references.items()},
        }
        calls = {name: (lambda index, detect=detect: detect(frames[index])) for name, detect in candidates.items()}
        calls["ort_raw_net"] = _raw_network_call(raw_network, frames, int(model.image_size))
        with torch.inference_mode():
            latency = interleaved_latencies_ms(calls, list(range(len(frames))), rounds=2 if options.smoke else 10)
            detections = {name: len(candidates[name](frames[0])[0]["scores"]) for name in _COUNTED_DETECTIONS}
        complexity = {
            "ours": profile(model, int(model.image_size)),
            "tv_ssdlite_v3": profile(references["tv_ssdlite_v3"], 320),
        }
        backends = {name: predictor.describe() for name, predictor in predictors.items()}
    info = {
        **model_info,
        "frames": f"{len(frames)} generated shapes frames, 480 x 640 uint8 RGB",
        "threads": f"torch {options.threads}, ONNX Runtime intra-op {options.threads}",
        "backends": backends,
        "detections_on_frame_0": detections,
        "int8_calibration": str(calibration) if options.calibration_images else "generated shapes frames",
        "complexity": {name: {"params": result.params, "macs": result.macs, "image_size": result.image_size}
                       for name, result in complexity.items()},
    }
    return _latency_report(latency, info)


_COUNTED_DETECTIONS = ("ours_eager", "ours_ort", "ours_int8", "tv_ssdlite_v3", "tv_ssd_same_net")
"""The detectors whose number of detections on the first frame the report states."""


def _our_predictors(
    model: torch.nn.Module, scratch: Path, *, calibration: Path, threads: int
) -> tuple[dict[str, Any], Any]:
    """Our Predictors by backend (eager, ort, int8, ort_raw_outputs) and an ONNX Runtime session of the raw network.

    One torch -> ONNX export (batch 1) serves the raw network, the NMS graph and the INT8 quantization.
    """
    from ssdlite.deploy.evaluate import EVALUATION_SETTINGS
    from ssdlite.deploy.export import export_network_onnx, export_onnx
    from ssdlite.deploy.export.int8 import quantize_model
    from ssdlite_runtime.backends.onnx_runtime import load_onnx_session
    from ssdlite_runtime.predictor import Predictor

    settings = dict(EVALUATION_SETTINGS, batch_size=1)
    network = export_network_onnx(model, scratch / "network.onnx")
    raw_path = export_onnx(model, scratch / "raw.onnx", network_onnx=network)
    nms_path = export_onnx(model, scratch / "nms.onnx", with_nms=True, network_onnx=network)
    int8_path = quantize_model(
        model, scratch / "int8.onnx", calibration_images=calibration, with_nms=True, network_onnx=network
    )
    predictors = {
        "eager": Predictor(model, **settings),
        "ort": Predictor(nms_path, backend="ort", threads=threads, **settings),
        "int8": Predictor(int8_path, backend="int8", threads=threads, **settings),
        "ort_raw_outputs": Predictor(raw_path, backend="ort", threads=threads, **settings),
    }
    raw_session, _ = load_onnx_session(raw_path, threads=threads)
    return predictors, raw_session


def torchvision_detectors(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """torchvision's SSDLite320-MobileNetV3-Large (random weights) and its SSD class running our network."""
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large

    from .torchvision_reference import torchvision_ssd

    return {
        "tv_ssdlite_v3": ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).eval(),
        "tv_ssd_same_net": torchvision_ssd(model).eval(),
    }


def detect_with(detector: torch.nn.Module) -> Callable[[np.ndarray], Any]:
    """A torchvision detector called as torchvision expects: a list of float [3, H, W] images in [0, 1]."""

    def detect(frame: np.ndarray) -> Any:
        with torch.inference_mode():
            image = torch.from_numpy(frame).permute(2, 0, 1).float().div_(255.0)
            return detector([image])

    return detect


def _raw_network_call(session: Any, frames: list[np.ndarray], image_size: int) -> Callable[[int], Any]:
    """The ONNX Runtime session of the raw network on frame ``index``, preprocessed beforehand (not timed)."""
    from ssdlite.deploy.metadata import INPUT_SCALING
    from ssdlite_runtime.preprocess import preprocess_images

    inputs = [preprocess_images([frame], image_size, channels_last=False, **INPUT_SCALING) for frame in frames]
    return lambda index: session.run(None, {"images": inputs[index]})


def _latency_report(latency: dict[str, float], info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from ssdlite.deploy.evaluate import EVALUATION_SETTINGS

    reference = latency["tv_ssdlite_v3"]
    return {
        "latency_ms": latency,
        "ratios": {
            "ort_vs_tv_v3": latency["ours_ort"] / reference,
            "eager_vs_tv_v3": latency["ours_eager"] / reference,
            "int8_vs_tv_v3": latency["ours_int8"] / reference,
            "ort_vs_raw_net": latency["ours_ort"] / latency["ort_raw_net"],
            "eager_vs_tv_ssd_same_net": latency["ours_eager"] / latency["tv_ssd_same_net"],
            "ort_raw_outputs_vs_ort": latency["ours_ort_raw_outputs"] / latency["ours_ort"],
        },
        "info": {"latency": {**info, "postprocess": EVALUATION_SETTINGS}},
    }
