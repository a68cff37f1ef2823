"""The callbacks and loggers every training run gets, writing into its run folder ``runs/<name>/``.

Layout of a run folder::

    runs/<name>/best.ckpt        best validation AP (ModelCheckpoint monitor val/AP, mode max)
    runs/<name>/last.ckpt        latest epoch end, timed save or stop (what --ckpt_path resumes from)
    runs/<name>/config.yaml      the resolved config (LightningCLI's SaveConfigCallback)
    runs/<name>/metrics.csv      losses, lr and AP per step / epoch (CSVLogger; a resumed run keeps the rows
                                 logged before the interruption in metrics.1.csv, metrics.2.csv, ...)
    runs/<name>/hparams.yaml
    runs/<name>/tensorboard/     TensorBoard events (``tensorboard --logdir runs``)
    runs/<name>/MODEL_CARD.md    written after training
    runs/<name>/.lock            held by the run writing the folder (:class:`RunFolderLock`)
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

from ssdlite.engine.checkpointing import DEFAULT_CHECKPOINT_EVERY_MINUTES, LastCheckpoint, StopSignals

BEST_CHECKPOINT = "best"
RUN_DIR_ENV = "SSDLITE_RUN_DIR"
"""Set for the processes the DDP launcher starts, so that every rank writes to the run folder rank 0 chose."""


def checkpoint_callbacks(
    run_dir: str | Path, *, every_minutes: float | None = DEFAULT_CHECKPOINT_EVERY_MINUTES
) -> list[Callback]:
    """``best.ckpt`` (highest ``val/AP``) and ``last.ckpt`` (every epoch end, every ``every_minutes`` and when a
    stop signal ends the run; see :mod:`ssdlite.engine.checkpointing`), both in ``run_dir``.

    ``last.ckpt`` has a callback of its own: Lightning's ``ModelCheckpoint(save_top_k=0, save_last=True)`` writes
    "last" only in a step where it also saves a top-k checkpoint, which with top-k 0 is never. Files are overwritten
    in place (no ``-v1`` versions): a fresh run gets a fresh folder (see :func:`resolve_run_dir`) and a resumed run
    continues its own files.
    """
    best = ModelCheckpoint(
        dirpath=run_dir,
        filename=BEST_CHECKPOINT,
        monitor="val/AP",
        mode="max",
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    stop_signals = StopSignals()
    return [best, stop_signals, LastCheckpoint(run_dir, every_minutes=every_minutes, stop_signals=stop_signals)]


class RandomStateCheckpoint(Callback):
    """Saves the random number generators with every checkpoint and restores them when training resumes.

    Lightning restores the model, optimizer, schedulers, callbacks and loop counters but not the random generators,
    so a resumed run would shuffle and augment its next epoch differently from an uninterrupted one. Saved: Python's
    ``random``, numpy's global and torch's CPU / CUDA generators, and the generators of the training augmentation
    (``datamodule.train_dataset.transform.augmentation``, albumentations). They are put back when the checkpoint is
    restored, before the data loader of the first resumed epoch draws its shuffle order. Exact for ``num_workers: 0``
    and for non-persistent workers (whose seeds come from torch's generator); persistent workers keep generator
    states of their own.

    The state holds plain Python types and tensors only, so checkpoints stay loadable with
    ``torch.load(weights_only=True)``.
    """

    def __init__(self) -> None:
        self._trainer: Any = None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        numpy_state = np.random.get_state()
        state: dict[str, Any] = {
            "python": random.getstate(),
            "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        augmentation = self._augmentation()
        if augmentation is not None:
            state["augmentation_numpy"] = augmentation.random_generator.bit_generator.state
            state["augmentation_python"] = augmentation.py_random.getstate()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Puts the generators back at once: Lightning restores callbacks before it creates the data iterator of
        the first resumed epoch (in ``configure_optimizers``' step estimate), and draws nothing in between."""
        state = dict(state_dict)
        random.setstate(_as_tuples(state["python"]))
        name, keys, *rest = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        augmentation = self._augmentation()
        if augmentation is not None and "augmentation_numpy" in state:
            generator = np.random.default_rng()
            generator.bit_generator.state = state["augmentation_numpy"]
            py_random = random.Random()
            py_random.setstate(_as_tuples(state["augmentation_python"]))
            augmentation.set_random_state(generator, py_random)

    def _augmentation(self) -> Any:
        """The albumentations pipeline of the training set, when it exposes its generators."""
        datamodule = getattr(self._trainer, "datamodule", None)
        dataset = getattr(datamodule, "train_dataset", None)
        augmentation = getattr(getattr(dataset, "transform", None), "augmentation", None)
        if all(hasattr(augmentation, name) for name in ("random_generator", "py_random", "set_random_state")):
            return augmentation
        return None


def _as_tuples(value: Any) -> Any:
    """Lists back to tuples (``random.setstate`` wants the tuple that ``getstate`` gave)."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(item) for item in value)
    return value


class ProgressBar(TQDMProgressBar):
    """Lightning's progress bar without the logger version (``v_num``), which names no version in our layout."""

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


def run_loggers(run_dir: str | Path, *, resume: bool = False) -> list[Logger]:
    """CSV (``run_dir/metrics.csv``, first: it sets ``trainer.log_dir`` = ``run_dir``) and TensorBoard
    (``run_dir/tensorboard``) loggers.

    Lightning's CSV logger deletes an existing ``metrics.csv``; when resuming, the earlier rows are kept by
    renaming the file to ``metrics.N.csv`` (first free N) first.
    """
    run_dir = Path(run_dir)
    metrics_file = run_dir / "metrics.csv"
    if resume and metrics_file.is_file():
        index = 1
        while (run_dir / f"metrics.{index}.csv").exists():
            index += 1
        metrics_file.rename(run_dir / f"metrics.{index}.csv")
    return [
        CSVLogger(save_dir=str(run_dir.parent), name=run_dir.name, version=""),
        TensorBoardLogger(save_dir=str(run_dir.parent), name=run_dir.name, version="tensorboard",
                          default_hp_metric=False),
    ]


def resolve_run_dir(runs_dir: str | Path, name: str, *, resume_from: str | Path | None = None) -> Path:
    """The folder a run writes to: ``runs_dir/name``, or the folder of the run it resumes.

    A fresh run never writes into a folder that holds another run's checkpoints: when ``runs_dir/name`` has some,
    ``name-2``, ``name-3``, ... is used instead. A resumed run (``resume_from``, the checkpoint) continues in the
    checkpoint's own folder when that is a run folder under ``runs_dir`` (so ``--name`` may differ, e.g. ``name``
    for a run that went to ``name-2``), else in ``runs_dir/name``.

    Processes started by the DDP launcher take the folder their rank 0 chose, passed in the environment
    (``SSDLITE_RUN_DIR``); the variable is honoured only for a folder of this run (``runs_dir/name`` or
    ``runs_dir/name-N``) that holds no checkpoints yet, or when resuming, so a stale or hand-set value can neither
    override ``--name`` nor send a run into another run's files.

    Raises:
        ValueError: an empty name or one with a path separator.
    """
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise ValueError(f"--name {name!r} must be a plain folder name (it becomes {runs_dir}/<name>)")
    runs_dir = Path(runs_dir)
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and _is_folder_of(Path(inherited), runs_dir, name):
        if resume_from is not None or not _holds_checkpoints(Path(inherited)):
            return Path(inherited)
    if resume_from is not None:
        folder = Path(resume_from).parent
        if folder.parent.resolve() == runs_dir.resolve() and folder.is_dir():
            return runs_dir / folder.name
        return runs_dir / name
    run_dir = runs_dir / name
    index = 2
    while _holds_checkpoints(run_dir):
        run_dir = runs_dir / f"{name}-{index}"
        index += 1
    return run_dir


LOCK_FILE = ".lock"


class RunFolderLock:
    """An exclusive lock on a run folder, so that two training runs never write into one folder.

    The lock is the operating system's advisory lock on ``run_dir/.lock`` (``flock``; ``msvcrt.locking`` on
    Windows), which holds the owner's pid for the error message. The system drops it when the owner's process
    ends in any way, ``kill -9`` included, so a lock left by a killed run is never mistaken for a live one, and
    pid reuse cannot fool it. Only global rank 0 takes it: the other ranks of a multi-process run write into the
    folder that rank 0 chose and holds (see :func:`lock_run_dir`).

    Raises (from the constructor):
        ValueError: another live process holds the folder (the message names its pid and the fix).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: Any = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            _lock_exclusively(self._file)
        except OSError:
            self._file.seek(0)
            holder = self._file.read().strip() or "unknown"
            self._file.close()
            self._file = None
            raise ValueError(
                f"{self.path.parent} is in use by another training run (pid {holder}); wait for it to end, stop it, "
                "or give this run another --name"
            ) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()

    @property
    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        """Releases the lock (closing the file does); the file stays, so that a waiting process cannot lock a
        file that is being deleted."""
        if self._file is not None:
            self._file.close()
            self._file = None


def lock_run_dir(run_dir: str | Path) -> RunFolderLock | None:
    """Takes the run folder's :class:`RunFolderLock` on global rank 0; returns None on the other ranks."""
    return RunFolderLock(run_dir) if rank_zero_only.rank == 0 else None


def _lock_exclusively(file: Any) -> None:
    """Locks ``file`` without waiting; raises OSError when another open file holds the lock."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        file.seek(0)
        msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _holds_checkpoints(folder: Path) -> bool:
    return any(folder.glob("*.ckpt"))


def _is_folder_of(folder: Path, runs_dir: Path, name: str) -> bool:
    """Whether ``folder`` is ``runs_dir/name`` or ``runs_dir/name-N``."""
    if folder.parent.resolve() != runs_dir.resolve():
        return False
    suffix = folder.name.removeprefix(name)
    return folder.name.startswith(name) and (suffix == "" or (suffix[:1] == "-" and suffix[1:].isdigit()))
