"""``ssdlite-demo``, what ``make demo`` runs: synthetic shapes -> train a small SSDLite on the CPU -> evaluate
-> draw.

    ssdlite-demo [--data data/shapes] [--runs-dir runs]

From a checkout, ``python tools/demo.py`` is the same command. Writes runs/demo/ (checkpoints, metrics.json,
detections.json, per_class_ap.csv, pr_curve.png, MODEL_CARD.md, detections/*.jpg). See ssdlite/engine/demo.py for
the steps and configs/shapes.yaml for the recipe.
"""

from __future__ import annotations

import argparse

from ssdlite.openmp import bound_openmp_spin_wait
from ssdlite_runtime.errors import command

PROG = "ssdlite-demo"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="data/shapes", help="shapes dataset folder (written when missing)")
    parser.add_argument("--runs-dir", default="runs", help="parent of the run folder runs/demo")
    return parser


@command(PROG)
def main(argv: list[str] | None = None, *, prog: str = PROG) -> None:
    args = build_parser(prog).parse_args(argv)
    # Before torch loads: a short bounded OpenMP spin-wait instead of the default 300,000 spins, which makes
    # training several times slower when anything else uses the cores (see ssdlite/openmp.py).
    bound_openmp_spin_wait()
    from ssdlite.engine.demo import run_demo

    run_demo(data_root=args.data, runs_dir=args.runs_dir)
