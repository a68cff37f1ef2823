"""Every export format and precision side by side: file size, end-to-end latency, parity with eager, and AP.

For each exporter in the registry (``ssdlite-export --format``) whose package is installed: the model (--checkpoint,
else a random one) is exported (NMS inside where the format takes it; INT8 calibrated on --calib, else on generated
frames) and run through the ``Predictor`` the file's name selects, next to the eager model and torchvision's
ssdlite320_mobilenet_v3_large in the same alternating rounds (640 x 480 uint8 frame in, final detections out,
batch 1, the evaluation postprocessing). Parity: on those frames, the detections at score >= 0.3 against eager's
(same count, largest box difference in pixels). AP: COCO AP on --val (the shapes validation set) with the
evaluation postprocessing. A format without a runtime on this machine (Core ML) gets its size only; a format
whose package is missing is listed with the extra that installs it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .inputs import benchmark_model, camera_frames, write_images
from .int8_accuracy import _default_annotations, _default_calibration
from .latency import detect_with, torchvision_detectors
from .options import BenchmarkOptions
from .timing import interleaved_latencies_ms, use_threads

PARITY_SCORE = 0.3
"""Detections at or above this score are compared with eager's (the issue's parity criterion)."""


def measure_formats(options: BenchmarkOptions) -> dict[str, dict[str, Any]]:
    """Size, latency, parity and AP of every format and precision (see the module docstring)."""
    from ssdlite.deploy.evaluate import EVALUATION_SETTINGS
    from ssdlite_runtime.predictor import Predictor

    use_threads(options.threads)
    model, model_info = benchmark_model(options)
    names = _label_names(options)
    frames = camera_frames(2 if options.smoke else 16, seed=1)
    settings = dict(EVALUATION_SETTINGS, batch_size=1)
    with tempfile.TemporaryDirectory(prefix="ssdlite_formats_") as scratch:
        scratch = Path(scratch)
        calibration = options.calibration_images or (
            _default_calibration(options.val_images) if options.val_images is not None
            else write_images(camera_frames(4 if options.smoke else 32, seed=2), scratch / "calibration")
        )
        files, notes = _export_every_format(model, names, scratch, calibration, options.formats)
        predictors = {"eager": Predictor(model, **names, **settings)}
        for key, path in files.items():
            try:
                predictors[key] = Predictor(path, threads=options.threads, **settings)
            except (ValueError, ImportError, OSError) as error:  # e.g. Core ML: no runtime off Apple platforms
                notes[key] = f"exported, not run here: {error}"
        references = torchvision_detectors(model)
        calls = {key: (lambda index, predict=predictor.predict: predict(frames[index]))
                 for key, predictor in predictors.items()}
        detect_tv = detect_with(references["tv_ssdlite_v3"])
        calls["tv_ssdlite_v3"] = lambda index: detect_tv(frames[index])
        with torch.inference_mode():
            latency = interleaved_latencies_ms(calls, list(range(len(frames))), rounds=2 if options.smoke else 10)
        parity = {key: _parity(predictors["eager"], predictor, frames)
                  for key, predictor in predictors.items() if key != "eager"}
        accuracy = _average_precisions(predictors, options)
        sizes = {key: _size_mb(path) for key, path in files.items()}
        backends = {key: predictor.describe() for key, predictor in predictors.items()}
    reference = latency["tv_ssdlite_v3"]
    return {
        "latency_ms": {f"formats_{key}": value for key, value in latency.items()},
        "ratios": {f"formats_{key}_vs_tv_v3": value / reference for key, value in latency.items()
                   if key != "tv_ssdlite_v3"},
        "accuracy": {f"formats_ap_{key}": value for key, value in accuracy.items()},
        "info": {
            "formats": {
                **model_info,
                "size_mb": sizes,
                "parity_vs_eager": parity,
                "not_measured": notes,
                "backends": backends,
                "frames": f"{len(frames)} generated shapes frames, 480 x 640 uint8 RGB",
                "threads": options.threads,
                "int8_calibration": str(calibration),
                "ap": ("COCO AP@[.5:.95] x 100 on " + str(options.val_images)) if accuracy
                else "not measured: pass --checkpoint and --val IMAGES_DIR",
            }
        },
    }


def _label_names(options: BenchmarkOptions) -> dict[str, Any]:
    if options.checkpoint is None:
        return {}
    from ssdlite.deploy.model_files import load_checkpoint_for_inference

    _, meta = load_checkpoint_for_inference(options.checkpoint)
    return {"class_names": meta["class_names"], "category_ids": meta["category_ids"]}


def _export_every_format(model: torch.nn.Module, names: dict[str, Any], scratch: Path, calibration: Path,
                         formats: tuple[str, ...] | None) -> tuple[dict[str, Path], dict[str, str]]:
    """``{"onnx": path, "onnx_int8": path, "openvino": ...}`` for every registered exporter (of ``formats``, if
    given) that ran, and a note for each that did not (missing package, converter failure). TorchScript is left out: it has no runtime here but
    PyTorch itself, which the eager row measures."""
    from ssdlite.deploy.export import available_formats, export_model
    from ssdlite.deploy.export.base import registered_exporters
    from ssdlite_runtime.plugins import MissingPackageError

    unknown = sorted(set(formats or ()) - set(available_formats()))
    if unknown:
        raise ValueError(f"--formats {' '.join(unknown)}: no such export format; choose from "
                         f"{', '.join(available_formats())}")
    files, notes = {}, {}
    for exporter in registered_exporters():
        if exporter.format == "torchscript" or (formats is not None and exporter.format not in formats):
            continue
        key = exporter.format if exporter.precision == "float" else f"{exporter.format}_int8"
        folder = scratch / key
        folder.mkdir()
        try:
            files[key] = export_model(
                model, folder / f"model{exporter.suffix}", format=exporter.format, **names,
                with_nms="with_nms" in exporter.flags, int8=exporter.precision == "int8",
                calibration_images=calibration if exporter.precision == "int8" else None,
            )
        except MissingPackageError as error:
            notes[key] = str(error)
        except Exception as error:  # a converter failing is a finding of the benchmark, not its end
            notes[key] = f"export failed: {type(error).__name__}: {error}"
    return files, notes


def _parity(eager: Any, other: Any, frames: list[np.ndarray]) -> dict[str, Any]:
    """On each frame, detections at score >= PARITY_SCORE: do the counts agree, and how far (px) is each of eager's
    boxes from the nearest box of the same class in ``other``'s."""
    same_count, largest = 0, 0.0
    for frame in frames:
        [expected], [got] = eager.predict(frame), other.predict(frame)
        keep_e, keep_g = expected["scores"] >= PARITY_SCORE, got["scores"] >= PARITY_SCORE
        boxes_e, labels_e = np.asarray(expected["boxes"])[keep_e], np.asarray(expected["labels"])[keep_e]
        boxes_g, labels_g = np.asarray(got["boxes"])[keep_g], np.asarray(got["labels"])[keep_g]
        same_count += int(len(boxes_e) == len(boxes_g))
        for box, label in zip(boxes_e, labels_e):
            candidates = boxes_g[labels_g == label]
            distance = np.abs(candidates - box).max(axis=1).min() if len(candidates) else np.inf
            largest = max(largest, float(distance))
    return {"frames_with_same_count": f"{same_count}/{len(frames)}", "max_box_difference_px": round(largest, 3)}


def _average_precisions(predictors: dict[str, Any], options: BenchmarkOptions) -> dict[str, float]:
    if options.checkpoint is None or options.val_images is None:
        return {}
    from ssdlite.engine.evaluate import evaluate

    annotations = options.val_annotations or _default_annotations(options.val_images)
    return {
        key: 100.0 * evaluate(predictor, annotations=annotations, images=options.val_images, evaluator="faster")["AP"]
        for key, predictor in predictors.items()
    }


def _size_mb(path: Path) -> float:
    """Megabytes of everything the export wrote (an IR's .xml + .bin, NCNN's .param + .bin + sidecar, a package)."""
    from ssdlite.deploy.export.base import exported_files

    return sum(file.stat().st_size for file in exported_files(path)) / 1e6
