"""Acceptance: a training run stopped the ways runs are stopped (``kill -9``, a scheduler's SIGTERM, Ctrl+C in a
terminal) resumes with the README's command and ends at its planned step count, losing at most an epoch to a
``kill -9`` and nothing to a signal; resumed from an epoch end it ends with the uninterrupted run's weights.

Each run is ``tools/train.py`` in a process of its own, stopped from outside at steps drawn with a fixed seed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import ROOT
from .training_process import REPORTER, TrainingProcess, checkpoint_step, environment, kill_steps, load

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("engine_runs")]

# 16 training images in batches of 2: 8 steps an epoch, 4 epochs, validation after epochs 2 and 4.
STEPS_PER_EPOCH = 8
EPOCHS = 4
TOTAL_STEPS = STEPS_PER_EPOCH * EPOCHS


def resume_config(config_factory, **data) -> Path:
    return config_factory(
        trainer={"max_epochs": EPOCHS, "check_val_every_n_epoch": 2},
        model={"bn_calibration_batches": 1},
        data={"batch_size": 2, **data},
    )


def assert_finished(run_dir: Path) -> None:
    final = load(run_dir / "last.ckpt")
    assert (final["global_step"], final["epoch"]) == (TOTAL_STEPS, EPOCHS)
    assert (run_dir / "best.ckpt").is_file() and (run_dir / "MODEL_CARD.md").is_file()
    assert not list(run_dir.glob(".*.tmp"))  # no temporary file of a killed write left behind


def test_kill_9_at_random_points_loses_at_most_an_epoch_and_resumes_to_the_planned_end(config_factory, tmp_path):
    """Three kills of one run, each after its first epoch; between them, the README's resume command."""
    config = resume_config(config_factory)
    arguments = ["--config", str(config), "--name", "crash", "--checkpoint_every_minutes", "0", REPORTER]
    run_dir = tmp_path / "runs" / "crash"
    process = TrainingProcess(arguments, cwd=tmp_path)
    lost = []
    for point in kill_steps(15, first=STEPS_PER_EPOCH + 1, last=TOTAL_STEPS - 1, count=3):
        process.wait_for_step(point)
        assert process.kill(signal.SIGKILL) == -signal.SIGKILL
        reached, saved = process.steps[-1], checkpoint_step(run_dir / "last.ckpt")
        assert saved % STEPS_PER_EPOCH == 0  # the last epoch end
        assert 0 <= reached - saved <= STEPS_PER_EPOCH, (reached, saved)
        lost.append(reached - saved)
        process = TrainingProcess(arguments + ["--ckpt_path", "runs/crash/last.ckpt"], cwd=tmp_path)
        process.wait_for_step(saved + 1)
        assert process.steps[0] == saved + 1  # it goes on from the checkpoint's step
    assert process.wait() == 0, process.output()
    print(f"steps lost per kill -9: {lost} (an epoch is {STEPS_PER_EPOCH})")
    assert_finished(run_dir)


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
    included) at a random step; each time the printed command resumes with no step redone."""
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

    [point] = kill_steps(16, first=saved + 2, last=TOTAL_STEPS - 2, count=1)
    process = TrainingProcess([], cwd=tmp_path, command=[*command, "--data.num_workers", "1"])
    process.wait_for_step(point)
    assert process.steps[0] == saved + 1
    assert process.kill(signal.SIGINT, group=True) == 128 + signal.SIGINT, process.output()
    saved = checkpoint_step(last)
    assert saved == process.steps[-1] >= point
    assert f"training stopped by SIGINT; {last} holds step {saved}." in process.stderr
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


def test_a_run_killed_and_resumed_at_an_epoch_end_ends_with_the_uninterrupted_runs_weights(config_factory, tmp_path):
    """kill -9 in epoch 2 (timed saves off, so last.ckpt is the end of epoch 1), resume: the same final state as an
    uninterrupted run with the same seed. Exact up to float rounding: the data order and augmentation are restored
    with the random generators (``RandomStateCheckpoint``), and one loader process draws them (num_workers 0)."""
    config = resume_config(config_factory)
    run_to_the_end(["--config", str(config), "--name", "straight"], tmp_path)

    arguments = ["--config", str(config), "--name", "resumed", "--checkpoint_every_minutes", "0", REPORTER]
    process = TrainingProcess(arguments, cwd=tmp_path)
    process.wait_for_step(STEPS_PER_EPOCH + 3)
    assert process.kill(signal.SIGKILL) == -signal.SIGKILL
    after_first_epoch = load(tmp_path / "runs" / "resumed" / "last.ckpt")
    assert after_first_epoch["global_step"] == STEPS_PER_EPOCH
    run_to_the_end(arguments + ["--ckpt_path", "runs/resumed/last.ckpt"], tmp_path)

    expected = load(tmp_path / "runs" / "straight" / "last.ckpt")
    actual = load(tmp_path / "runs" / "resumed" / "last.ckpt")
    assert (actual["epoch"], actual["global_step"]) == (expected["epoch"], expected["global_step"]) == (EPOCHS,
                                                                                                        TOTAL_STEPS)
    # The weights moved after the restart, and ended where the uninterrupted run's did (model, EMA, BN statistics).
    assert not torch.equal(after_first_epoch["state_dict"]["model.extras.0.0.0.weight"],
                           actual["state_dict"]["model.extras.0.0.0.weight"])
    assert any(key.startswith("ema_model.module.") for key in actual["state_dict"])
    assert_same_tensors(expected["state_dict"], actual["state_dict"], "state_dict")
    # Optimizer (AdamW moments, step counts) and scheduler state.
    for expected_state, actual_state in zip(expected["optimizer_states"], actual["optimizer_states"]):
        assert expected_state["param_groups"] == actual_state["param_groups"]
        for index, moments in expected_state["state"].items():
            assert_same_tensors(moments, actual_state["state"][index], f"optimizer state {index}")
    assert expected["lr_schedulers"] == actual["lr_schedulers"]
    assert expected["state_dict"]["ema_model.n_averaged"] == TOTAL_STEPS
