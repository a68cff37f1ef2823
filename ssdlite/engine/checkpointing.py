"""How a training run keeps its work: ``last.ckpt`` after every epoch and every few minutes, written atomically in
the run folder, and once more when a scheduler (SIGTERM) or the user (Ctrl+C, SIGINT) stops the run.

What each way of stopping leaves behind (``runs/<name>/last.ckpt``, resumed with ``--ckpt_path``):

* ``kill -9``, a lost machine: the last epoch end or the last timed save (``checkpoint_every_minutes``), whichever
  is later; at most one epoch or those minutes of steps are redone. A save cut short leaves the previous
  ``last.ckpt`` whole: the new one is written to a temporary file in the same folder, flushed to disk, then renamed
  over it (:class:`AtomicCheckpointIO`), so the rename is atomic and never a cross-filesystem copy.
* SIGTERM (a scheduler's stop) and the first Ctrl+C: Lightning's graceful stop (``SIGTERMException``) ends the
  current step, :class:`LastCheckpoint` saves the state after it, and ``ssdlite-train`` reports where it is with
  the resume command and exits with 128 + the signal number (143 for SIGTERM, 130 for SIGINT), so that a scheduler
  never reads a stopped job as finished. A second Ctrl+C stops at once (Python's KeyboardInterrupt) without saving:
  the state in the middle of a step is not one to resume from; the last saved ``last.ckpt`` stays. A second Ctrl+C
  that comes while ``last.ckpt`` is being written waits for the write (:func:`signals_deferred`): a KeyboardInterrupt
  inside ``torch.save`` would surface as a RuntimeError of torch's writer; during the stop's own save it is the
  stop already under way, so it is only acknowledged.
* SIGUSR1 (SLURM's requeue signal when Lightning's auto-requeue is on) is Lightning's own and left to it.

A checkpoint saved in the middle of an epoch resumes at its step, so the run still ends at its planned step count;
the rest of that epoch is drawn afresh (the loader's position within an epoch is not saved), so only runs resumed
from an epoch end reproduce an uninterrupted run exactly.

A checkpoint saved at an epoch end (in ``on_train_epoch_end``, as ``last.ckpt`` and Lightning's ``best.ckpt`` are)
holds loop counters that say "epoch N has run its batches but is not yet complete". Lightning 2.6 resumes that
state correctly only for a schedule in epochs: with ``max_steps`` set it forces a restart of epoch N at its last
batch, runs one batch, and counts epoch N a second time, so the run ends an epoch short of its plan (233 of 240
steps with 8-step epochs). :func:`as_next_epoch_start` rewrites those counters, when such a checkpoint is loaded, to
the state at the start of epoch N + 1, which both kinds of schedule resume exactly.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ssdlite_runtime.signals import signals_deferred

logger = logging.getLogger(__name__)

LAST_CHECKPOINT_FILE = "last.ckpt"
DEFAULT_CHECKPOINT_EVERY_MINUTES = 10.0
_TEMPORARY_SUFFIX = ".tmp"


# ------------------------------------------------------------------------------------------------ atomic writes


def write_atomically(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Writes ``path`` through ``write(file)`` so that ``path`` is always either the old file or the whole new one.

    The bytes go to a temporary file in the same folder (``.NAME.PID.tmp``), are flushed to disk, and the file is
    renamed over ``path`` (atomic on POSIX within one filesystem); the folder entry is then flushed too. A failed
    write removes its temporary file; a killed one leaves it for :func:`remove_stale_temporaries`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}{_TEMPORARY_SUFFIX}")
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Deletes the temporary files that killed writes of :func:`write_atomically` left in ``folder``.

    Only files of processes that are gone are removed (a live process may be writing its own). Returns them.
    """
    removed = []
    for candidate in Path(folder).glob(f".*{_TEMPORARY_SUFFIX}"):
        pid = candidate.name.removesuffix(_TEMPORARY_SUFFIX).rsplit(".", 1)[-1]
        if pid.isdigit() and not _process_alive(int(pid)):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``torch.save`` checkpoint IO, writing local files with :func:`write_atomically`.

    Lightning's own writes go through an fsspec transaction whose temporary file lies in ``$TMPDIR``: a kill leaves
    it there, and when ``runs/`` is on another filesystem the final move is a copy, which a kill can cut short.
    Remote paths (``s3://...``) keep Lightning's behaviour.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        write_atomically(path, lambda file: torch.save(checkpoint, file))


def as_next_epoch_start(checkpoint: dict[str, Any]) -> bool:
    """Rewrites the fit-loop counters of a checkpoint saved at an epoch end to the start of the next epoch.

    Recognised by the epoch counters (the last epoch processed, not completed) and the batch counters (its last
    batch completed). The epoch is then marked completed and the per-epoch counters of batches, scheduler and
    optimizer steps are reset as Lightning resets them when an epoch starts; totals and ``global_step`` stay. Any
    other checkpoint (mid-epoch, after a stop signal, a finished run) is left as it is.

    Returns:
        whether the checkpoint was rewritten.
    """
    fit_loop = (checkpoint.get("loops") or {}).get("fit_loop")
    if not isinstance(fit_loop, dict) or "epoch_progress" not in fit_loop:
        return False
    epochs = fit_loop["epoch_progress"]["total"]
    batches = fit_loop.get("epoch_loop.batch_progress", {})
    epoch_ran_but_not_completed = (
        epochs["ready"] == epochs["started"] == epochs["processed"] == epochs["completed"] + 1
    )
    batch = batches.get("current", {})
    last_batch_done = bool(batches.get("is_last_batch")) and batch.get("completed") == batch.get("ready")
    if not (epoch_ran_but_not_completed and last_batch_done):
        return False
    for counters in fit_loop["epoch_progress"].values():
        counters["completed"] = counters["processed"]
    for key in (
        "epoch_loop.batch_progress",
        "epoch_loop.scheduler_progress",
        "epoch_loop.automatic_optimization.optim_progress",
        "epoch_loop.manual_optimization.optim_step_progress",
    ):
        if key in fit_loop:
            _zero_current_counters(fit_loop[key])
    fit_loop["epoch_loop.batch_progress"]["is_last_batch"] = False
    return True


def _zero_current_counters(progress: dict[str, Any]) -> None:
    """Sets every counter under a ``current`` key of a Lightning progress state (nested for the optimizer's) to 0."""
    for key, value in progress.items():
        if key == "current" and isinstance(value, dict):
            for counter in value:
                value[counter] = 0
        elif isinstance(value, dict):
            _zero_current_counters(value)


# ------------------------------------------------------------------------------------------------ stopping


class TrainingStopped(SystemExit):
    """A signal stopped training; ``checkpoint`` holds the state to resume from.

    A ``SystemExit`` (as Lightning's own ``SIGTERMException``) whose ``code`` is 128 + the signal number, the shell's
    status of a process a signal ended (143 SIGTERM, 130 SIGINT): unless caught, the process exits with it, and a
    scheduler never reads a stopped job as finished.

    Attributes:
        signal_number: the signal (``signal.SIGTERM``, ``signal.SIGINT``).
        checkpoint: the saved ``last.ckpt`` (None when nothing was saved yet).
        step: the optimizer step the checkpoint holds.
        resume_command: the command that resumes the run.
    """

    def __init__(self, signal_number: int, checkpoint: Path | None, step: int | None, resume_command: str) -> None:
        self.signal_number = int(signal_number)
        self.checkpoint = checkpoint
        self.step = step
        self.resume_command = resume_command
        super().__init__(128 + self.signal_number)

    def describe(self) -> str:
        name = signal.Signals(self.signal_number).name
        if self.checkpoint is None:
            return f"training stopped by {name} before its first step; nothing to resume"
        return (
            f"training stopped by {name}; {self.checkpoint} holds step {self.step}.\n"
            f"resume with: {self.resume_command}"
        )


class StopSignals(Callback):
    """Makes Ctrl+C (SIGINT) stop training the way SIGTERM does, and remembers which signal stopped it.

    Lightning turns SIGTERM into a stop at the end of the current step (``trainer.received_sigterm``, broadcast to
    every rank, then ``SIGTERMException``). From ``on_train_start`` (Lightning installs its handler just before)
    until teardown, the first SIGINT is handed to that same handler, so Ctrl+C stops at a step boundary too; the
    second SIGINT raises KeyboardInterrupt at once, except once the stop is being carried out (Lightning's
    ``on_exception`` with its ``SIGTERMException``: what is left is saving ``last.ckpt``), when it is only
    acknowledged. Processes forked from this one (data loader workers) ignore the inherited handlers: the main
    process stops them.

    Attributes:
        received (int | None): the first stop signal received (None: none).
        finishing (bool): the stop is being carried out.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self.finishing = False
        self._owner_pid: int | None = None
        self._previous: dict[int, Any] = {}
        self._handler: Callable[[int, FrameType | None], None] | None = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.received = None
        self.finishing = False
        self._owner_pid = os.getpid()
        lightning_stop = signal.getsignal(signal.SIGTERM)
        if not callable(lightning_stop):
            return  # no graceful stop to hand signals to (Lightning registers none on Windows)

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if os.getpid() != self._owner_pid:
                return  # a forked data loader worker: the main process stops it
            if signum == signal.SIGINT and self.received is not None:
                if self.finishing:
                    logger.info("Ctrl+C: already stopping; last.ckpt is being saved")
                    return
                raise KeyboardInterrupt  # the second Ctrl+C: stop at once
            if self.received is None:
                self.received = signum
                if trainer.is_global_zero:
                    what = "Ctrl+C" if signum == signal.SIGINT else signal.Signals(signum).name
                    again = " (Ctrl+C again stops at once, unsaved)" if signum == signal.SIGINT else ""
                    logger.info(f"\n{what}: stopping after this step and saving last.ckpt{again}")
            lightning_stop(signum, frame)

        self._handler = on_signal
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, on_signal)
        _LIGHTNING_SIGNAL_LOG.addFilter(_drop_received_sigterm)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """Runs before :class:`LastCheckpoint`'s (it comes first in the callbacks): a graceful stop is under way."""
        if isinstance(exception, SIGTERMException):
            self.finishing = True

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Puts back the handlers found at ``on_train_start`` where ours are still installed (Lightning's teardown
        may have restored its own originals already)."""
        if os.getpid() != self._owner_pid:
            return
        for signum, handler in self._previous.items():
            if signal.getsignal(signum) is self._handler and handler is not None:
                signal.signal(signum, handler)
        self._previous = {}
        self._handler = None


class LastCheckpoint(Callback):
    """Writes ``run_dir/last.ckpt`` after every training epoch, every ``every_minutes`` within one, and when a stop
    signal ends training (see the module docstring).

    Args:
        run_dir: the run folder.
        every_minutes: minutes between saves within an epoch (0 or None: only at epoch ends and stops).
        stop_signals: the :class:`StopSignals` of the same Trainer, which says what stopped the run.

    Attributes:
        last_model_path (str): the file ("" until the first save; ``ModelCheckpoint``'s name for it).
        saved_step (int | None): the optimizer step of the latest save.
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        every_minutes: float | None = DEFAULT_CHECKPOINT_EVERY_MINUTES,
        stop_signals: StopSignals | None = None,
    ) -> None:
        if every_minutes is not None and not every_minutes >= 0:
            raise ValueError(
                f"checkpoint_every_minutes must be >= 0 (0: only at epoch ends), got {every_minutes}"
            )
        self.path = Path(run_dir) / LAST_CHECKPOINT_FILE
        self.every_s = 60.0 * every_minutes if every_minutes else None
        self.stop_signals = stop_signals
        self.last_model_path = ""
        self.saved_step: int | None = None
        self._last_save_time = time.monotonic()

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if trainer.is_global_zero and self.path.parent.is_dir():
            for stale in remove_stale_temporaries(self.path.parent):
                logger.info("removed %s, left by a write that was killed", stale)
        if self.path.is_file():
            self.last_model_path = str(self.path)

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        """Called before Lightning restores its loops from ``checkpoint``: see :func:`as_next_epoch_start`."""
        as_next_epoch_start(checkpoint)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._last_save_time = time.monotonic()
        batches = trainer.num_training_batches
        if trainer.global_step and isinstance(batches, int) and batches > 0:
            steps_per_epoch = max(1, math.ceil(batches / trainer.accumulate_grad_batches))
            if trainer.global_step % steps_per_epoch and trainer.is_global_zero:
                logger.info(
                    f"resuming at step {trainer.global_step}, within epoch {trainer.current_epoch}: a mid-epoch save, "
                    "so the rest of this epoch is drawn afresh (the loader's position within an epoch is not saved)"
                )

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.every_s is None:
            return
        due = time.monotonic() - self._last_save_time >= self.every_s
        if trainer.world_size > 1:
            due = trainer.strategy.broadcast(due, src=0)  # the ranks' clocks differ; saving is collective
        if due:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.save(trainer)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """Saves when a stop signal ended training at a step boundary (``SIGTERMException``), not after a crash or
        a second Ctrl+C (the state may be half-way through a step)."""
        if isinstance(exception, SIGTERMException) and trainer.global_step > 0:
            if self.saved_step != trainer.global_step:
                self.save(trainer)

    def save(self, trainer: Any) -> None:
        """Writes ``last.ckpt``; SIGINT and SIGTERM that come meanwhile are delivered once it is written."""
        with signals_deferred():
            trainer.save_checkpoint(self.path, weights_only=False)
            self.last_model_path = str(self.path)
            self.saved_step = trainer.global_step
            self._last_save_time = time.monotonic()


_LIGHTNING_SIGNAL_LOG = logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector")


def _drop_received_sigterm(record: logging.LogRecord) -> bool:
    """Drops Lightning's "Received SIGTERM: N" (N is 2 for our Ctrl+C): :class:`StopSignals` says what happens."""
    return not str(record.msg).endswith(("Received SIGTERM: 2", "Received SIGTERM: 15"))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not supported here (e.g. Windows); the rename itself is done
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


__all__ = [
    "DEFAULT_CHECKPOINT_EVERY_MINUTES",
    "LAST_CHECKPOINT_FILE",
    "AtomicCheckpointIO",
    "LastCheckpoint",
    "StopSignals",
    "TrainingStopped",
    "as_next_epoch_start",
    "remove_stale_temporaries",
    "write_atomically",
]
