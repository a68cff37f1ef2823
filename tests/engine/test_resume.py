"""Acceptance: a training run stopped the ways runs are stopped (``kill -9``, a scheduler's SIGTERM, Ctrl+C in a
terminal) resumes with the README's command and ends at its planned step count, losing at most an epoch to a
``kill -9`` (or the steps since the last timed save) and nothing to a signal; resumed from an epoch end it ends
with the uninterrupted run's weights.

A stop from outside needs a process of its own (``tools/train.py``, stopped at steps drawn with a fixed seed): one
chain of them is killed twice and resumed, and one is stopped by SIGTERM and twice by Ctrl+C. What a kill leaves
behind otherwise is the run folder as it is on disk after a step, so the other tests copy it from a run in the test's
own process at that step and resume from the copy; the timed saves run on a clock of the test's.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from ssdlite.engine import checkpointing
from ssdlite.engine.cli import train

from .conftest import ROOT
from .step_reporter import WRITE_STARTED
from .training_process import (
    REPORTER,
    RunFolderCopy,
    TrainingProcess,
    checkpoint_step,
    kill_steps,
    load,
    train_here,
)

pytestmark = pytest.mark.slow

# 16 training images in batches of 2: 8 steps an epoch, 4 epochs, validation after epochs 2 and 4.
STEPS_PER_EPOCH = 8
EPOCHS = 4
TOTAL_STEPS = STEPS_PER_EPOCH * EPOCHS


def resume_config(config_factory, schedule: str = "steps", **data) -> Path:
    """The tiny run, its length fixed in optimizer steps (``trainer.max_steps``, as configs/shapes.yaml) or in epochs
    (``trainer.max_epochs``, as the COCO recipes): Lightning restores the two differently."""
    length = {"max_steps": TOTAL_STEPS} if schedule == "steps" else {"max_epochs": EPOCHS}
    return config_factory(
        trainer={"max_epochs": None, **length, "check_val_every_n_epoch": 2},
        model={"bn_calibration_batches": 1},
        data={"batch_size": 2, **data},
    )


def assert_finished(run_dir: Path) -> None:
    final = load(run_dir / "last.ckpt")
    assert (final["global_step"], final["epoch"]) == (TOTAL_STEPS, EPOCHS)
    assert (run_dir / "best.ckpt").is_file() and (run_dir / "MODEL_CARD.md").is_file()
    assert not list(run_dir.glob(".*.tmp"))  # no temporary file of a killed write left behind


def mid_epoch_kill_steps(seed: int, count: int) -> list[int]:
    """``count`` steps in different epochs after the first, each 2 to 6 steps into its epoch: past the epoch-end
    save, short of the next."""
    epochs = kill_steps(seed, first=1, last=EPOCHS - 1, count=count)
    return [
        epoch * STEPS_PER_EPOCH + kill_steps(seed + epoch, first=2, last=STEPS_PER_EPOCH - 2, count=1)[0]
        for epoch in epochs
    ]


def run_keeping_the_folder_at(step: int, arguments: list[str], runs: Path, name: str, callbacks=()) -> Path:
    """Trains ``--name NAME`` here to its end, then puts in its place the run folder as it was on disk after optimizer
    step ``step`` (what a ``kill -9`` then would have left); the finished run goes to ``runs/straight``. Returns the
    finished run's last.ckpt."""
    at_step = runs.parent / "at_step"
    train([*arguments, "--name", name], extra_callbacks=[*callbacks, RunFolderCopy(step, at_step)])
    (runs / name).rename(runs / "straight")
    at_step.rename(runs / name)
    return runs / "straight" / "last.ckpt"


class StepRecorder(Callback):
    """Records the optimizer step reached after each training batch."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append(trainer.global_step)


class StepClock(Callback):
    """A clock for ``ssdlite.engine.checkpointing`` (its ``time``) on which every optimizer step takes ``step_s``."""

    def __init__(self, step_s: float) -> None:
        self.step_s = step_s
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.now += self.step_s


def test_kill_9_in_the_middle_of_an_epoch_twice_resumes_to_the_planned_steps_and_the_uninterrupted_weights(
    config_factory, tmp_path, monkeypatch, capsys
):
    """``kill -9`` in the middle of an epoch (timed saves off, so last.ckpt is the last epoch end), then the README's
    resume command, twice: the run ends at its planned step count (``trainer.max_steps``, whose restore from an
    epoch-end checkpoint Lightning gets wrong without ``as_next_epoch_start``) with the final state of an
    uninterrupted run with the same seed. Exact up to float rounding: the data order and augmentation are restored
    with the random generators (``RandomStateCheckpoint``), and one loader process draws them (num_workers 0).

    The killed runs are processes; the uninterrupted run and the last resume, which nothing stops, run here."""
    config = resume_config(config_factory, "steps")
    monkeypatch.chdir(tmp_path)
    train(["--config", str(config), "--name", "straight"])

    arguments = ["--config", str(config), "--name", "crash", "--checkpoint_every_minutes", "0", REPORTER]
    resume = ["--ckpt_path", "runs/crash/last.ckpt"]
    run_dir = tmp_path / "runs" / "crash"
    process = TrainingProcess(arguments, cwd=tmp_path)
    lost = []
    for kill, point in enumerate(mid_epoch_kill_steps(15, 2)):
        process.wait_for_step(point)
        assert process.kill(signal.SIGKILL) == -signal.SIGKILL
        reached, saved = process.steps[-1], checkpoint_step(run_dir / "last.ckpt")
        assert saved == reached // STEPS_PER_EPOCH * STEPS_PER_EPOCH  # the last epoch end
        lost.append(reached - saved)
        if kill == 0:
            process = TrainingProcess(arguments + resume, cwd=tmp_path)
            process.wait_for_step(saved + 1)
            assert process.steps[0] == saved + 1  # it goes on from the checkpoint's step
    steps = train_here(arguments + resume, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert steps[0] == saved + 1 and steps[-1] == TOTAL_STEPS, steps
    print(f"steps lost per kill -9: {lost} (an epoch is {STEPS_PER_EPOCH})")
    assert_finished(run_dir)
    assert_same_final_state(load(tmp_path / "runs" / "straight" / "last.ckpt"), load(run_dir / "last.ckpt"))


def test_what_a_kill_9_leaves_in_the_middle_of_an_epoch_resumes_an_epoch_schedule_to_the_uninterrupted_weights(
    config_factory, tmp_path, monkeypatch, capsys
):
    """The same for a run whose length is in epochs (``trainer.max_epochs``): the run folder as a ``kill -9`` in the
    middle of an epoch leaves it (copied from the uninterrupted run at that step; last.ckpt holds the last epoch
    end) resumes with the README's command to the planned step count and the uninterrupted run's final state."""
    config = resume_config(config_factory, "epochs")
    monkeypatch.chdir(tmp_path)
    [point] = mid_epoch_kill_steps(15, 1)
    run_dir = tmp_path / "runs" / "crash"
    arguments = ["--config", str(config), "--checkpoint_every_minutes", "0"]
    straight = run_keeping_the_folder_at(point, arguments, run_dir.parent, "crash")
    saved = checkpoint_step(run_dir / "last.ckpt")
    assert saved == point // STEPS_PER_EPOCH * STEPS_PER_EPOCH  # the last epoch end

    resume = [*arguments, "--name", "crash", "--ckpt_path", "runs/crash/last.ckpt", REPORTER]
    steps = train_here(resume, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert steps[0] == saved + 1 and steps[-1] == TOTAL_STEPS, steps
    assert_finished(run_dir)
    assert_same_final_state(load(straight), load(run_dir / "last.ckpt"))


def test_timed_saves_below_a_steps_time_save_every_step_and_a_kill_9_loses_at_most_one(
    config_factory, tmp_path, monkeypatch
):
    """``--checkpoint_every_minutes 1`` with steps of 90 s (on the test's clock): last.ckpt is saved after every
    step, so a kill loses at most one. The run folder as a kill leaves it right after a step, before that step's save
    (a mid-epoch save in last.ckpt), resumes to the planned step count."""
    clock = StepClock(step_s=90.0)
    monkeypatch.setattr(checkpointing, "time", clock)
    saves: list[int] = []
    save = checkpointing.LastCheckpoint.save

    def recorded_save(self, trainer) -> None:
        saves.append(trainer.global_step)
        save(self, trainer)

    monkeypatch.setattr(checkpointing.LastCheckpoint, "save", recorded_save)
    monkeypatch.chdir(tmp_path)
    config = resume_config(config_factory)
    arguments = ["--config", str(config), "--checkpoint_every_minutes", "1"]
    [point] = kill_steps(17, first=STEPS_PER_EPOCH + 1, last=TOTAL_STEPS - 1, count=1)
    run_dir = tmp_path / "runs" / "timed"
    run_keeping_the_folder_at(point, arguments, run_dir.parent, "timed", callbacks=[clock])
    assert sorted(set(saves)) == list(range(1, TOTAL_STEPS + 1))  # after every step
    saved = checkpoint_step(run_dir / "last.ckpt")
    assert point - saved <= 1, (point, saved)

    resumed = StepRecorder()
    train([*arguments, "--name", "timed", "--ckpt_path", "runs/timed/last.ckpt"], extra_callbacks=[clock, resumed])
    assert resumed.steps[0] == saved + 1 and resumed.steps[-1] == TOTAL_STEPS, resumed.steps
    assert_finished(run_dir)


def test_sigterm_and_ctrl_c_save_the_step_they_stop_at_exit_non_zero_and_print_the_resume_command(
    config_factory, tmp_path, monkeypatch, capsys
):
    """SIGTERM during the validation after epoch 2, then Ctrl+C (SIGINT to the process group, the loader worker
    included) at a random step and Ctrl+C again while torch is writing the stop's last.ckpt (a slowed writer);
    each time the printed command resumes with no step redone (the last one run here, by the script's main)."""
    config = resume_config(config_factory)
    run_dir = tmp_path / "runs" / "stopped"
    last = run_dir / "last.ckpt"
    process = TrainingProcess(["--config", str(config), "--name", "stopped", REPORTER], cwd=tmp_path)
    process.wait_for_step(2 * STEPS_PER_EPOCH)  # its validation starts now
    assert process.kill(signal.SIGTERM) == 128 + signal.SIGTERM, process.output()
    saved = checkpoint_step(last)
    assert saved == process.steps[-1] >= 2 * STEPS_PER_EPOCH
    assert f"training stopped by SIGTERM; {last} holds step {saved}." in process.stderr
    command = process.resume_command()
    assert command[-4:] == ["--name", "stopped", "--ckpt_path", str(last)]

    # Two to four steps into the last epoch: the stop's save is the only write after the signal.
    point = (EPOCHS - 1) * STEPS_PER_EPOCH + kill_steps(16, first=2, last=4, count=1)[0]
    slow_writer = ["--trainer.plugins", "tests.engine.step_reporter.SlowCheckpointIO"]
    process = TrainingProcess([], cwd=tmp_path, command=[*command, "--data.num_workers", "1", *slow_writer])
    process.wait_for_step(point)
    assert process.steps[0] == saved + 1
    writes = process.lines.count(WRITE_STARTED)
    os.killpg(process.process.pid, signal.SIGINT)
    process.wait_for_line(WRITE_STARTED, after=writes)  # the stop's save has begun
    assert process.kill(signal.SIGINT, group=True) == 128 + signal.SIGINT, process.output()
    saved = checkpoint_step(last)
    assert saved == process.steps[-1] >= point
    assert f"training stopped by SIGINT; {last} holds step {saved}." in process.stderr
    assert "already stopping; last.ckpt is being saved" in "\n".join(process.lines)  # the log's info is on stdout
    assert "Traceback" not in process.stderr

    python, script, *arguments = process.resume_command()
    assert Path(python).name.startswith("python") and Path(script) == ROOT / "tools" / "train.py", (python, script)
    steps = train_here(arguments, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert steps[0] == saved + 1 and steps[-1] == TOTAL_STEPS, steps
    assert_finished(run_dir)


def assert_same_tensors(first, second, what):
    assert first.keys() == second.keys(), what
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=1e-5, atol=1e-6, msg=f"{what}: {key}")


def assert_same_final_state(expected: dict, actual: dict) -> None:
    """Model, EMA and BatchNorm statistics, optimizer moments and step counts, scheduler: equal up to rounding."""
    assert (actual["epoch"], actual["global_step"]) == (expected["epoch"], expected["global_step"])
    assert any(key.startswith("ema_model.module.") for key in actual["state_dict"])
    assert_same_tensors(expected["state_dict"], actual["state_dict"], "state_dict")
    for expected_state, actual_state in zip(expected["optimizer_states"], actual["optimizer_states"]):
        assert expected_state["param_groups"] == actual_state["param_groups"]
        for index, moments in expected_state["state"].items():
            assert_same_tensors(moments, actual_state["state"][index], f"optimizer state {index}")
    assert expected["lr_schedulers"] == actual["lr_schedulers"]
    assert expected["state_dict"]["ema_model.n_averaged"] == TOTAL_STEPS
