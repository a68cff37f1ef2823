"""The measurements ``tools/benchmark.py`` prints, one module per measurement.

A measurement is a function ``measure_<name>(options: BenchmarkOptions) -> dict`` returning a partial report:
any of the sections ``latency_ms``, ``throughput``, ``ratios``, ``accuracy`` and ``info``, its keys prefixed with
its name. :func:`run_benchmarks` runs the named ones and merges their reports; to add one, write its module and
add it to :data:`MEASUREMENTS`. The ratios are time ratios ours / reference, lower is better, except the
throughput ratios ``train_vs_tv_ssd``, ``data_pipeline_ssdlite_vs_torchvision_v2`` and
``serve_c16_vs_predictor_best``, higher is better.

Modules:
    latency, classifiers, train_step, postprocess, evaluator, data_pipeline, int8_accuracy, formats, tracking,
    counting, serve, slicing: the measurements
    options               BenchmarkOptions, what every measurement may read
    timing                alternating rounds, medians, thread settings
    inputs                our detector and camera-like frames
    runner, report        running and merging; the report as text and Markdown tables
    torchvision_reference torchvision's SSD class around our network, for like-for-like comparisons
"""

from .options import INFERENCE_THREADS, BenchmarkOptions
from .report import format_report, markdown_tables
from .runner import (
    DEFAULT_MEASUREMENTS,
    MEASUREMENTS,
    ON_REQUEST,
    REPORT_SECTIONS,
    check_measurement_names,
    run_benchmarks,
)

__all__ = [
    "DEFAULT_MEASUREMENTS",
    "ON_REQUEST",
    "INFERENCE_THREADS",
    "MEASUREMENTS",
    "REPORT_SECTIONS",
    "BenchmarkOptions",
    "check_measurement_names",
    "format_report",
    "markdown_tables",
    "run_benchmarks",
]
