"""``ssdlite-make-shapes``: writes the synthetic shapes detection dataset (COCO format) used by the demo, tests
and smoke training.

Usage:
    ssdlite-make-shapes --out data/shapes --num-train 400 --num-val 100 --size 320 --seed 0
    ssdlite-make-shapes --out data/shapes --num-train 4000 --num-val 200 --size 256 --object-sizes 0.1 0.5

Layout: OUT/train/*.jpg, OUT/val/*.jpg, OUT/annotations/train.json, OUT/annotations/val.json. The same arguments
give identical files. See ssdlite/data/synthetic.py for what the images hold. From a checkout,
``python tools/make_shapes.py`` is the same command.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ssdlite.data.synthetic import DEFAULT_OBJECT_SIZES, make_shapes
from ssdlite_runtime.errors import command

PROG = "ssdlite-make-shapes"


def parse_args(argv: list[str] | None = None, prog: str = PROG) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="output folder (nothing is written outside it)"
    )
    parser.add_argument("--num-train", type=int, default=400, help="train images (default 400)")
    parser.add_argument("--num-val", type=int, default=100, help="validation images (default 100)")
    parser.add_argument("--size", type=int, default=320, help="image side in pixels (default 320)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--object-sizes",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        default=DEFAULT_OBJECT_SIZES,
        help="smallest and largest shape extent as fractions of the image side (default %(default)s)",
    )
    return parser.parse_args(argv)


@command(PROG)
def main(argv: list[str] | None = None, *, prog: str = PROG) -> None:
    args = parse_args(argv, prog)
    start = time.perf_counter()
    paths = make_shapes(
        args.out,
        num_train=args.num_train,
        num_val=args.num_val,
        size=args.size,
        seed=args.seed,
        object_sizes=tuple(args.object_sizes),
    )
    elapsed = time.perf_counter() - start
    print(
        f"wrote {args.num_train} train + {args.num_val} val images ({args.size}x{args.size}) in {elapsed:.1f} s"
    )
    for key in ("train_images", "train_annotations", "val_images", "val_annotations"):
        print(f"  {key}: {paths[key]}")

