#!/usr/bin/env python
"""The demo `make demo` runs: synthetic shapes -> train a small SSDLite on the CPU -> evaluate -> draw.

    python tools/demo.py [--data data/shapes] [--runs-dir runs]

Writes runs/demo/ (checkpoints, metrics.json, detections.json, per_class_ap.csv, pr_curve.png, MODEL_CARD.md,
detections/*.jpg). See ssdlite/engine/demo.py for the steps and configs/shapes.yaml for the recipe.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Before torch loads: a short bounded OpenMP spin-wait instead of the default 300,000 spins, which makes
# training several times slower when anything else uses the cores (see ssdlite/openmp.py).
from ssdlite.openmp import bound_openmp_spin_wait  # noqa: E402

bound_openmp_spin_wait()

from ssdlite.engine.demo import run_demo  # noqa: E402
from ssdlite.errors import command  # noqa: E402

PROG = "demo.py"


@command(PROG)
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="data/shapes", help="shapes dataset folder (written when missing)")
    parser.add_argument("--runs-dir", default="runs", help="parent of the run folder runs/demo")
    args = parser.parse_args(argv)
    run_demo(data_root=args.data, runs_dir=args.runs_dir)


if __name__ == "__main__":
    sys.exit(main())
