"""``ssdlite-summary``: parameters and multiply-adds of a model, layer by layer (MobileNets Table 1 style).

Usage:
    ssdlite-summary ssdlite_mobilenet_v2 --size 320 --num-classes 90
    ssdlite-summary mobilenet_v1 --width 0.5 --size 160 --json

From a checkout, ``python tools/summary.py`` is the same command.
"""

from __future__ import annotations

import argparse

from ssdlite.models import CLASSIFIERS, list_models
from ssdlite.models.complexity import summarize
from ssdlite_runtime.errors import command

PROG = "ssdlite-summary"


def parse_args(argv: list[str] | None = None, prog: str = PROG) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help=f"one of: {', '.join(list_models() + list(CLASSIFIERS))}")
    parser.add_argument(
        "--size", type=int, default=None, help="input side (default: preset's, 224 for classifiers)"
    )
    parser.add_argument("--width", type=float, default=None, help="width multiplier alpha (default 1.0)")
    parser.add_argument(
        "--num-classes", type=int, default=None, help="object classes K (detectors; K+1 outputs)"
    )
    parser.add_argument(
        "--shallow", action="store_true", help="MobileNetV1 without the five 14x14x512 blocks"
    )
    parser.add_argument("--fold-bn", action="store_true", help="fold BatchNorm into the convolutions first")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return parser.parse_args(argv)


@command(PROG)
def main(argv: list[str] | None = None, *, prog: str = PROG) -> None:
    args = parse_args(argv, prog)
    text = summarize(
        args.model,
        image_size=args.size,
        width_mult=args.width,
        num_classes=args.num_classes,
        shallow=args.shallow,
        fold_bn=args.fold_bn,
        as_json=args.json,
    )
    print(text)

