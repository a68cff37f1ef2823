"""Acceptance: a training run stopped the ways runs are stopped (``kill -9``, a scheduler's SIGTERM, Ctrl+C in a
terminal) resumes with the README's command and ends at its planned step count, losing at most an epoch to a
``kill -9`` and nothing to a signal; resumed from an epoch end it ends with the uninterrupted run's weights.

Each run is ``tools/train.py`` in a process of its own, stopped from outside at steps drawn with a fixed seed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import ROOT
from .step_reporter import WRITE_STARTED
from .training_process import REPORTER, TrainingProcess, checkpoint_step, environment, kill_steps, load

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("engine_runs")]

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


@pytest.mark.parametrize("schedule, kills", [("steps", 2), ("epochs", 1)])
def test_kill_9_in_the_middle_of_an_epoch_resumes_to_the_planned_steps_and_the_uninterrupted_weights(
    config_factory, tmp_path, schedule, kills
):
    """``kill -9`` in the middle of an epoch (timed saves off, so last.ckpt is the last epoch end), then the README's
    resume command, ``kills`` times: the run ends at its planned step count with the final state of an
    uninterrupted run with the same seed. Exact up to float rounding: the data order and augmentation are restored
    with the random generators (``RandomStateCheckpoint``), and one loader process draws them (num_workers 0)."""
    config = resume_config(config_factory, schedule)
    run_to_the_end(["--config", str(config), "--name", "straight"], tmp_path)

    arguments = ["--config", str(config), "--name", "crash", "--checkpoint_every_minutes", "0", REPORTER]
    run_dir = tmp_path / "runs" / "crash"
    process = TrainingProcess(arguments, cwd=tmp_path)
    lost = []
    for point in mid_epoch_kill_steps(15, kills):
        process.wait_for_step(point)
        assert process.kill(signal.SIGKILL) == -signal.SIGKILL
        reached, saved = process.steps[-1], checkpoint_step(run_dir / "last.ckpt")
        assert saved == reached // STEPS_PER_EPOCH * STEPS_PER_EPOCH  # the last epoch end
        lost.append(reached - saved)
        process = TrainingProcess(arguments + ["--ckpt_path", "runs/crash/last.ckpt"], cwd=tmp_path)
        process.wait_for_step(saved + 1)
        assert process.steps[0] == saved + 1  # it goes on from the checkpoint's step
    assert process.wait() == 0, process.output()
    assert process.steps[-1] == TOTAL_STEPS, process.steps
    print(f"{schedule} schedule: steps lost per kill -9: {lost} (an epoch is {STEPS_PER_EPOCH})")
    assert_finished(run_dir)
    assert_same_final_state(load(tmp_path / "runs" / "straight" / "last.ckpt"), load(run_dir / "last.ckpt"))


def test_kill_9_with_timed_saves_loses_at_most_the_steps_since_the_last_save(config_factory, tmp_path):
    """``--checkpoint_every_minutes`` below a step's time saves after every step: a kill loses at most one."""
    config = resume_config(config_factory)
    arguments = ["--config", str(config), "--name", "timed", "--checkpoint_every_minutes", "1e-9", REPORTER]
    run_dir = tmp_path / "runs" / "timed"
    [point] = kill_steps(17, first=STEPS_PER_EPOCH + 1, last=TOTAL_STEPS - 1, count=1)
    process = TrainingProcess(arguments, cwd=tmp_path)
    process.wait_for_step(point)
    assert process.kill(signal.SIGKILL) == -signal.SIGKILL
    reached, saved = process.steps[-1], checkpoint_step(run_dir / "last.ckpt")
    assert reached - saved <= 1, (reached, saved)
    process = TrainingProcess(arguments + ["--ckpt_path", "runs/timed/last.ckpt"], cwd=tmp_path)
    assert process.wait() == 0, process.output()
    assert process.steps[0] == saved + 1 and process.steps[-1] == TOTAL_STEPS
    assert_finished(run_dir)


def test_sigterm_and_ctrl_c_save_the_step_they_stop_at_exit_non_zero_and_print_the_resume_command(
    config_factory, tmp_path
):
    """SIGTERM during the validation after epoch 2, then Ctrl+C (SIGINT to the process group, the loader worker
    included) at a random step and Ctrl+C again while torch is writing the stop's last.ckpt (a slowed writer);
    each time the printed command resumes with no step redone."""
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

    process = TrainingProcess([], cwd=tmp_path, command=process.resume_command())
    assert process.wait() == 0, process.output()
    assert process.steps[0] == saved + 1 and process.steps[-1] == TOTAL_STEPS
    assert_finished(run_dir)


def run_to_the_end(arguments: list[str], cwd: Path) -> None:
    completed = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), *arguments], cwd=cwd,
                               env=environment(), capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]


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
