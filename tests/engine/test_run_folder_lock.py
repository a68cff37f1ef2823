"""A run folder belongs to one training run at a time: a second run with the same ``--name`` is refused with the
other run's pid, and the lock of a run killed with ``kill -9`` is not mistaken for a live one."""

from __future__ import annotations

import os
import signal

import pytest

from ssdlite.commands.train import main as train_main
from ssdlite.engine.callbacks import LOCK_FILE, RunFolderLock

from .training_process import REPORTER, TrainingProcess


def test_a_locked_run_folder_is_refused_naming_the_holder_and_free_again_after_release(tmp_path):
    first = RunFolderLock(tmp_path / "run")
    assert (tmp_path / "run" / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    with pytest.raises(ValueError, match=rf"run is in use by another training run \(pid {os.getpid()}\); .*--name"):
        RunFolderLock(tmp_path / "run")
    first.release()
    second = RunFolderLock(tmp_path / "run")
    assert second.held
    second.release()


@pytest.mark.slow
def test_a_second_run_with_the_same_name_is_refused_and_a_killed_runs_lock_is_stale(config_factory, tmp_path, capsys):
    config = config_factory(trainer={"max_epochs": 1000})
    arguments = ["--config", str(config), "--name", "dup"]
    # Without checkpoints the first run's folder stays one a fresh run would pick (one holding checkpoints sends a
    # fresh run to dup-2): the two started together, as the issue's.
    first = TrainingProcess([*arguments, "--trainer.enable_checkpointing", "false", REPORTER], cwd=tmp_path)
    first.wait_for_step(1)  # it holds runs/dup

    assert train_main([*arguments, "--trainer.max_steps", "1"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1, error
    assert f"runs/dup is in use by another training run (pid {first.process.pid})" in error[0]
    assert not list((tmp_path / "runs").glob("dup-*"))  # nothing written elsewhere either

    assert first.kill(signal.SIGKILL) == -signal.SIGKILL
    lock = RunFolderLock(tmp_path / "runs" / "dup")  # the killed run's lock is gone with its process
    lock.release()
