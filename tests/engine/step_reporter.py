"""A callback for the tests that stop ``tools/train.py`` from outside: it prints every finished optimizer step.

Added on the command line (``--trainer.callbacks+=tests.engine.step_reporter.StepReporter``, with the repository on
``PYTHONPATH``), it lets a test read from the process's output how far training got before it kills it.
"""

from __future__ import annotations

import sys
import time

import torch
from lightning.pytorch.callbacks import Callback

from ssdlite.engine.checkpointing import AtomicCheckpointIO, write_atomically

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


WRITE_STARTED = "reporter: checkpoint write started"


class SlowCheckpointIO(AtomicCheckpointIO):
    """The atomic checkpoint IO with a slow ``torch.save``: its first writes pass through a file object that sleeps,
    and a line is printed as each checkpoint write starts, so that a test can send a signal while torch's writer is
    in the middle of a file (``--trainer.plugins tests.engine.step_reporter.SlowCheckpointIO``)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        def write(file) -> None:
            print(WRITE_STARTED, file=sys.stdout, flush=True)
            torch.save(checkpoint, _SlowFile(file, slow_writes=40, delay_s=0.05))

        write_atomically(path, write)


class _SlowFile:
    def __init__(self, file, *, slow_writes: int, delay_s: float) -> None:
        self._file, self._slow_writes, self._delay_s = file, slow_writes, delay_s

    def write(self, data) -> int:
        if self._slow_writes > 0:
            self._slow_writes -= 1
            time.sleep(self._delay_s)
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)
