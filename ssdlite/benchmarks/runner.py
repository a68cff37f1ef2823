"""Running named measurements and merging their partial reports, with the versions and the machine's load."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from .classifiers import measure_classifiers
from .counting import measure_counting
from .data_pipeline import measure_data_pipeline
from .evaluator import measure_evaluator
from .formats import measure_formats
from .int8_accuracy import measure_int8_accuracy
from .latency import measure_latency
from .options import BenchmarkOptions
from .postprocess import measure_postprocess
from .serve import measure_serve
from .slicing import measure_slicing
from .tracking import measure_tracking
from .train_step import measure_train_step

Report = dict[str, dict[str, Any]]

REPORT_SECTIONS = ("latency_ms", "throughput", "ratios", "accuracy", "info")

MEASUREMENTS: dict[str, Callable[[BenchmarkOptions], Report]] = {
    "latency": measure_latency,
    "train_step": measure_train_step,
    "postprocess": measure_postprocess,
    "evaluator": measure_evaluator,
    "int8_accuracy": measure_int8_accuracy,
    "data_pipeline": measure_data_pipeline,
    "classifiers": measure_classifiers,
    "formats": measure_formats,
    "tracking": measure_tracking,
    "serve": measure_serve,
    "counting": measure_counting,
    "slicing": measure_slicing,
}
"""Every measurement by name, in the order a full run takes them; each returns a partial report."""

ON_REQUEST = ("formats", "serve", "slicing")
"""Measurements a run without ``--only`` leaves out: ``formats`` converts the model to every format (minutes);
``serve`` starts an HTTP server and loads it (a few hundred requests per level); ``slicing`` runs hundreds of tiles
per frame and wants a trained shapes model (``--checkpoint``)."""

DEFAULT_MEASUREMENTS = tuple(name for name in MEASUREMENTS if name not in ON_REQUEST)
"""What ``ssdlite-benchmark`` measures without ``--only``."""


def check_measurement_names(names: Sequence[str]) -> None:
    """Raises ValueError naming the unknown measurements and the choices."""
    unknown = sorted(set(names) - set(MEASUREMENTS))
    if unknown:
        raise ValueError(f"unknown measurement(s) {unknown}; choose from {sorted(MEASUREMENTS)}")


def run_benchmarks(names: Sequence[str], options: BenchmarkOptions) -> Report:
    """Runs the named measurements and merges their partial reports into one.

    Returns:
        ``{"latency_ms", "throughput", "ratios", "accuracy", "info"}``; ``info`` also holds the package versions,
        whether it was a smoke run, and the machine's CPUs and load average before, during and after.
    """
    check_measurement_names(names)
    report: Report = {section: {} for section in REPORT_SECTIONS}
    load_before = os.getloadavg()
    load_by_measurement = {}
    for name in names:
        started, load_at_start = time.perf_counter(), os.getloadavg()[0]
        for section, values in MEASUREMENTS[name](options).items():
            if section not in report:
                raise ValueError(
                    f"measurement {name} returned section {section!r}; use one of {REPORT_SECTIONS}"
                )
            report[section].update(values)
        load_by_measurement[name] = {
            "seconds": round(time.perf_counter() - started, 1),
            "load_1_min_at_start": round(load_at_start, 2),
            "load_1_min_at_end": round(os.getloadavg()[0], 2),
        }
    report["info"]["versions"] = _versions()
    report["info"]["smoke"] = options.smoke
    report["info"]["machine"] = {
        "cpus": os.cpu_count(),
        "load_average_1_5_15_min_before": [round(value, 2) for value in load_before],
        "load_average_1_5_15_min_after": [round(value, 2) for value in os.getloadavg()],
        "load_by_measurement": load_by_measurement,
    }
    return report


def _versions() -> dict[str, str]:
    import albumentations
    import cv2
    import numpy as np
    import onnxruntime
    import torch
    import torchvision

    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "onnxruntime": onnxruntime.__version__,
        "albumentations": albumentations.__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
    }
