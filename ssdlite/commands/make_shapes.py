"""``ssdlite-make-shapes``: writes the synthetic shapes detection dataset (COCO format) used by the demo, tests
and smoke training, or with ``--video`` moving-shapes sequences with ground-truth tracks (MOT format).

Usage:
    ssdlite-make-shapes --out data/shapes --num-train 400 --num-val 100 --size 320 --seed 0
    ssdlite-make-shapes --out data/shapes --num-train 4000 --num-val 200 --size 256 --object-sizes 0.1 0.5
    ssdlite-make-shapes --out data/small_shapes --num-train 0 --num-val 20 --width 1920 --height 1080 \
        --object-pixels 12 40 --max-shapes 30       # small objects in large frames (sliced inference)
    ssdlite-make-shapes --video --out data/shapes_video --num-sequences 5 --num-frames 300 --size 320

Layout: OUT/train/*.jpg, OUT/val/*.jpg, OUT/annotations/train.json, OUT/annotations/val.json; with --video
OUT/seq_000/{video.mp4,gt/gt.txt,seqinfo.ini}, ... The same arguments give identical files. See
ssdlite/data/synthetic.py and synthetic_video.py for what the images and sequences hold. From a checkout,
``python tools/make_shapes.py`` is the same command.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ssdlite.data.synthetic import DEFAULT_MAX_SHAPES, DEFAULT_OBJECT_SIZES, make_shapes
from ssdlite.data.synthetic_video import (
    DEFAULT_MIN_VISIBILITY,
    DEFAULT_VIDEO_OBJECT_SIZES,
    make_shapes_videos,
)
from ssdlite_runtime.errors import command

PROG = "ssdlite-make-shapes"


def parse_args(argv: list[str] | None = None, prog: str = PROG) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="output folder (nothing is written outside it)"
    )
    parser.add_argument("--num-train", type=int, help="train images (default 400)")
    parser.add_argument("--num-val", type=int, help="validation images (default 100)")
    parser.add_argument("--size", type=int, default=320, help="image side in pixels (default 320)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--object-sizes",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="smallest and largest shape extent as fractions of the image's (shorter) side "
        f"(default {DEFAULT_OBJECT_SIZES}; with --video {DEFAULT_VIDEO_OBJECT_SIZES})",
    )
    still = parser.add_argument_group("large images with small objects (still images)")
    still.add_argument("--width", type=int, help="image width in pixels (default: --size)")
    still.add_argument("--height", type=int, help="image height in pixels (default: --size)")
    still.add_argument("--object-pixels", type=float, nargs=2, metavar=("MIN", "MAX"),
                       help="smallest and largest shape extent in pixels, instead of --object-sizes")
    still.add_argument("--max-shapes", type=int,
                       help=f"shapes per image at most, 1 to it drawn uniformly (default {DEFAULT_MAX_SHAPES})")
    video = parser.add_argument_group("video sequences (--video)")
    video.add_argument("--video", action="store_true",
                       help="write moving-shapes videos with MOT ground truth instead of still images")
    video.add_argument("--num-sequences", type=int, help="sequences (default 5)")
    video.add_argument("--num-frames", type=int, help="frames per sequence, 30 per second (default 300)")
    video.add_argument("--min-visibility", type=float,
                       help="shapes less visible than this fraction are don't-care (0 in gt.txt's column 7; "
                       f"default {DEFAULT_MIN_VISIBILITY})")
    args = parser.parse_args(argv)
    still_only = ("num_train", "num_val", "width", "height", "object_pixels", "max_shapes")
    video_only = ("num_sequences", "num_frames", "min_visibility")
    wrong = still_only if args.video else video_only
    given = [f"--{name.replace('_', '-')}" for name in wrong if getattr(args, name) is not None]
    if given:
        parser.error(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for "
                     f"{'still images, not --video' if args.video else '--video only'}")
    if args.object_pixels is not None and args.object_sizes is not None:
        parser.error("give --object-sizes (fractions of the side) or --object-pixels (pixels), not both")
    return args


@command(PROG)
def main(argv: list[str] | None = None, *, prog: str = PROG) -> None:
    args = parse_args(argv, prog)
    start = time.perf_counter()
    if args.video:
        make_videos(args, start)
        return
    num_train = 400 if args.num_train is None else args.num_train
    num_val = 100 if args.num_val is None else args.num_val
    paths = make_shapes(
        args.out,
        num_train=num_train,
        num_val=num_val,
        size=args.size,
        seed=args.seed,
        object_sizes=tuple(args.object_sizes or DEFAULT_OBJECT_SIZES),
        width=args.width,
        height=args.height,
        object_pixels=None if args.object_pixels is None else tuple(args.object_pixels),
        max_shapes=DEFAULT_MAX_SHAPES if args.max_shapes is None else args.max_shapes,
    )
    elapsed = time.perf_counter() - start
    width, height = args.width or args.size, args.height or args.size
    print(f"wrote {num_train} train + {num_val} val images ({width}x{height}) in {elapsed:.1f} s")
    for key in ("train_images", "train_annotations", "val_images", "val_annotations"):
        print(f"  {key}: {paths[key]}")



def make_videos(args: argparse.Namespace, start: float) -> None:
    num_sequences = 5 if args.num_sequences is None else args.num_sequences
    num_frames = 300 if args.num_frames is None else args.num_frames
    folders = make_shapes_videos(
        args.out,
        num_sequences=num_sequences,
        num_frames=num_frames,
        size=args.size,
        seed=args.seed,
        object_sizes=tuple(args.object_sizes or DEFAULT_VIDEO_OBJECT_SIZES),
        min_visibility=DEFAULT_MIN_VISIBILITY if args.min_visibility is None else args.min_visibility,
    )
    elapsed = time.perf_counter() - start
    print(f"wrote {num_sequences} sequences x {num_frames} frames ({args.size}x{args.size}) in {elapsed:.1f} s")
    for folder in folders:
        print(f"  {folder}: video.mp4, gt/gt.txt")
