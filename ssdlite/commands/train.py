"""``ssdlite-train``: train an SSDLite detector (LightningCLI; see ssdlite/engine/cli.py for every key).

    ssdlite-train --config configs/shapes.yaml
    ssdlite-train --config configs/shapes.yaml --trainer.max_epochs 3 --data.batch_size 16 \\
        --model.width_mult 0.5 --name shapes_small
    ssdlite-train --config configs/shapes.yaml --ckpt_path runs/shapes/last.ckpt      # resume
    ssdlite-train --config configs/raccoon.yaml --model.init_from runs/shapes/best.ckpt  # fine-tune
    ssdlite-train --config configs/ssdlite_mobilenet_v2_coco.yaml --trainer.devices 8 \\
        --trainer.strategy ddp                                                          # multi-GPU

From a checkout, ``python tools/train.py`` is the same command. Outputs go to runs/<name>/ (best.ckpt, last.ckpt,
config.yaml, metrics.csv, tensorboard/, MODEL_CARD.md). ``--help`` lists every key; ``--print_config`` prints the
resolved config. Errors are one line with exit status 2.
"""

from __future__ import annotations

from ssdlite.openmp import bound_openmp_spin_wait
from ssdlite_runtime.errors import command

PROG = "ssdlite-train"


@command(PROG)
def main(argv: list[str] | None = None, *, prog: str = PROG) -> None:
    # Before torch loads: a short bounded OpenMP spin-wait instead of the default 300,000 spins, which makes
    # training several times slower when anything else uses the cores (see ssdlite/openmp.py).
    bound_openmp_spin_wait()
    from ssdlite.engine.cli import train

    train(argv, prog=prog)
