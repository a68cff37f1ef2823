"""``ssdlite-demo``, what ``make demo`` runs: synthetic shapes -> train a small SSDLite on the CPU -> evaluate
-> draw.

    ssdlite-demo [--data data/shapes] [--runs-dir runs]
    ssdlite-demo --num-train 48 --num-val 8 --size 128 --steps 2     # a quick check that everything runs

From a checkout, ``python tools/demo.py`` is the same command; it runs from any folder (the recipe, shapes, is
packaged: ssdlite/configs/shapes.yaml). Writes runs/demo/ (checkpoints, metrics.json, detections.json,
per_class_ap.csv, pr_curve.png, MODEL_CARD.md, detections/*.jpg). See ssdlite/engine/demo.py for the steps.
"""

from __future__ import annotations

import argparse

from ssdlite.commands import positive_int
from ssdlite.openmp import bound_openmp_spin_wait
from ssdlite_runtime.errors import command

PROG = "ssdlite-demo"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="data/shapes", help="shapes dataset folder (written when missing)")
    parser.add_argument("--runs-dir", default="runs", help="parent of the run folder runs/demo")
    quick = parser.add_argument_group(
        "a smaller demo", "fewer or smaller images and fewer steps, to check quickly that everything runs (the "
        "model learns little); without them, the demo's (ssdlite/engine/demo.py: SHAPES_TRAIN_IMAGES, ...)"
    )
    quick.add_argument("--num-train", type=positive_int, metavar="N",
                       help="training images of the shapes set (default: the demo's)")
    quick.add_argument("--num-val", type=positive_int, metavar="N",
                       help="validation images (default: the demo's)")
    quick.add_argument("--size", type=positive_int, metavar="PX",
                       help="image side in pixels, also the network's input size (default: the recipe's)")
    quick.add_argument("--steps", type=positive_int, metavar="N",
                       help="optimizer steps (default: the recipe's trainer.max_steps)")
    return parser


@command(PROG)
def main(argv: list[str] | None = None, *, prog: str = PROG) -> None:
    args = build_parser(prog).parse_args(argv)
    # Before torch loads: a short bounded OpenMP spin-wait instead of the default 300,000 spins, which makes
    # training several times slower when anything else uses the cores (see ssdlite/openmp.py).
    bound_openmp_spin_wait()
    from ssdlite.engine.demo import run_demo

    run_demo(
        data_root=args.data,
        runs_dir=args.runs_dir,
        num_train=args.num_train,
        num_val=args.num_val,
        size=args.size,
        steps=args.steps,
        detect_command="ssdlite-detect" if prog == PROG else "python detect.py",
    )
