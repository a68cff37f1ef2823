#!/usr/bin/env python
"""Train an SSDLite detector.

    python tools/train.py --config configs/shapes.yaml
    python tools/train.py --config configs/shapes.yaml --trainer.max_epochs 3 --data.batch_size 16 \\
        --model.width_mult 0.5 --name shapes_small
    python tools/train.py --config configs/shapes.yaml --ckpt_path runs/shapes/last.ckpt      # resume
    python tools/train.py --config configs/raccoon.yaml --model.init_from runs/shapes/best.ckpt  # fine-tune
    python tools/train.py --config configs/ssdlite_mobilenet_v2_coco.yaml --trainer.devices 8 \\
        --trainer.strategy ddp                                                                  # multi-GPU

Outputs go to runs/<name>/ (best.ckpt, last.ckpt, config.yaml, metrics.csv, tensorboard/, MODEL_CARD.md).
`--help` lists every key; `--print_config` prints the resolved config. Errors are one line with exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Before torch loads: a short bounded OpenMP spin-wait instead of the default 300,000 spins, which makes
# training several times slower when anything else uses the cores (see ssdlite/openmp.py).
from ssdlite.openmp import bound_openmp_spin_wait  # noqa: E402

bound_openmp_spin_wait()

from ssdlite.engine.cli import train  # noqa: E402
from ssdlite.errors import command  # noqa: E402


@command("train.py")
def main(argv: list[str] | None = None) -> None:
    train(argv)


if __name__ == "__main__":
    sys.exit(main())
