"""How it learns: the LightningModule, its CLI (tools/train.py), EMA, schedules, evaluation during training.

``ssdlite.engine.cli.train(args)`` is what ``tools/train.py`` runs; ``ssdlite.engine.evaluate.evaluate`` is
``ssdlite-eval --model``; ``ssdlite.engine.demo.run_demo`` is ``make demo``.
"""

from ssdlite.engine.ema import ModelEMA
from ssdlite.engine.module import SSDLiteModule
from ssdlite.engine.schedule import WarmupCosineLR

__all__ = ["ModelEMA", "SSDLiteModule", "WarmupCosineLR"]
