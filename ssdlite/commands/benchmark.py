"""``ssdlite-benchmark``: named measurements (``ssdlite/benchmarks/``, one module each) collected into one JSON
report.

Usage:
    ssdlite-benchmark                                  # every measurement but formats (minutes of converting)
    ssdlite-benchmark --only formats --checkpoint runs/demo/last.ckpt --val data/shapes/val --markdown
    ssdlite-benchmark --only data_pipeline --json runs/benchmark.json
    ssdlite-benchmark --only latency --markdown        # also the tables of docs/benchmarks.md
    ssdlite-benchmark --smoke                          # tiny inputs, seconds: checks every measurement runs

Report (printed, and written with --json)::

    {"latency_ms": {...}, "throughput": {...}, "ratios": {...}, "accuracy": {...}, "info": {measurement: {...}}}

From a checkout, ``python tools/benchmark.py`` is the same command.
"""

from __future__ import annotations

import argparse
import inspect
import json
from pathlib import Path

from ssdlite.benchmarks import (
    DEFAULT_MEASUREMENTS,
    INFERENCE_THREADS,
    MEASUREMENTS,
    ON_REQUEST,
    BenchmarkOptions,
    format_report,
    markdown_tables,
    run_benchmarks,
)
from ssdlite_runtime.errors import command

PROG = "ssdlite-benchmark"


RACCOON_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "raccoon"
"""The raccoon photos beside the checkout (``../shared/data/raccoon``); generated shapes where absent."""


def measurements_help() -> str:
    """One line per measurement: its name and the first line of its module's docstring."""
    lines = ["measurements (ratios are ours / reference):"]
    for name, measure in MEASUREMENTS.items():
        summary = inspect.getmodule(measure).__doc__.strip().splitlines()[0]
        lines.append(f"  {name}: {summary}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None, prog: str = PROG) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, epilog=measurements_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        default=None,
        help=f"measurements to run: {', '.join(MEASUREMENTS)} (default: all but {', '.join(ON_REQUEST)})",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny inputs and timings: checks that everything runs"
    )
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the report here")
    parser.add_argument(
        "--markdown", action="store_true", help="also print the comparison tables of docs/benchmarks.md (Markdown)"
    )
    parser.add_argument("--size", type=int, default=320, help="network input side (default 320)")
    parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds per pipeline (default 6)")
    parser.add_argument("--raccoon", type=Path, default=RACCOON_ROOT, help="VOC folder of real photos")
    parser.add_argument("--checkpoint", type=Path, help="trained model (default: random ssdlite_mobilenet_v2)")
    parser.add_argument("--val", type=Path, metavar="IMAGES_DIR", help="validation images for int8_accuracy")
    parser.add_argument(
        "--val-ann", type=Path, metavar="ANN.json", help="their COCO annotations (default: ../annotations/NAME.json)"
    )
    parser.add_argument("--calib", type=Path, metavar="DIR", help="INT8 calibration images")
    parser.add_argument(
        "--formats", nargs="+", metavar="FORMAT", default=None,
        help="formats measurement: only these export formats (default: every registered one)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"torch / ONNX Runtime intra-op threads (default {INFERENCE_THREADS}; --smoke: 1, so that a smoke run "
        "under pytest -n 2 does not oversubscribe a 2-core machine)",
    )
    return parser.parse_args(argv)


@command(PROG)
def main(argv: list[str] | None = None, *, prog: str = PROG) -> None:
    args = parse_args(argv, prog)
    options = BenchmarkOptions(
        smoke=args.smoke,
        image_size=args.size,
        seconds=args.seconds,
        raccoon_root=args.raccoon,
        checkpoint=args.checkpoint,
        val_images=args.val,
        val_annotations=args.val_ann,
        calibration_images=args.calib,
        formats=tuple(args.formats) if args.formats else None,
        threads=args.threads or (1 if args.smoke else INFERENCE_THREADS),
    )
    report = run_benchmarks(args.only or list(DEFAULT_MEASUREMENTS), options)
    print(format_report(report))
    if args.markdown:
        print("\n" + markdown_tables(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")

