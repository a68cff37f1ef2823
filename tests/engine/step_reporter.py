"""A callback for the tests that stop ``tools/train.py`` from outside: it prints every finished optimizer step.

Added on the command line (``--trainer.callbacks+=tests.engine.step_reporter.StepReporter``, with the repository on
``PYTHONPATH``), it lets a test read from the process's output how far training got before it kills it.
"""

from __future__ import annotations

import sys
import time

from lightning.pytorch.callbacks import Callback

STEP_PREFIX = "reporter: step"


class StepReporter(Callback):
    """Prints ``reporter: step <global step> epoch <epoch>`` to stdout after every optimizer step.

    Args:
        delay_s: seconds to sleep after each step, so a test can send a signal within a step.
    """

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        print(f"{STEP_PREFIX} {trainer.global_step} epoch {trainer.current_epoch}", file=sys.stdout, flush=True)
        if self.delay_s:
            time.sleep(self.delay_s)
