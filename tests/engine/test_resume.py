"""Acceptance: a run stopped after epoch 1 and resumed with --ckpt_path ends where an uninterrupted run ends."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from ssdlite.engine.cli import train

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("engine_runs")]


class StopAfterFirstEpoch(Callback):
    """Ends training after epoch 1 as an interruption would (the config still says 3 epochs)."""

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_tensors(first, second, what):
    assert first.keys() == second.keys(), what
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=1e-5, atol=1e-6, msg=f"{what}: {key}")


def test_resumed_run_matches_the_uninterrupted_one(config_factory, single_thread):
    config = str(config_factory(trainer={"max_epochs": 3}))
    straight = train(["--config", config, "--name", "straight"])

    stopped = train(["--config", config, "--name", "resumed"], extra_callbacks=[StopAfterFirstEpoch()])
    assert stopped.epochs == 1 and stopped.steps == 2
    after_first_epoch = load(stopped.last_checkpoint)
    resumed = train(["--config", config, "--name", "resumed", "--ckpt_path", str(stopped.last_checkpoint)])
    assert resumed.run_dir == stopped.run_dir  # resuming continues in the run's own folder

    expected, actual = load(straight.last_checkpoint), load(resumed.last_checkpoint)
    assert (actual["epoch"], actual["global_step"]) == (expected["epoch"], expected["global_step"]) == (3, 6)
    assert resumed.epochs == straight.epochs == 3 and resumed.steps == straight.steps == 6
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
    assert expected["state_dict"]["ema_model.n_averaged"] == 6
    assert resumed.metrics["AP"] == pytest.approx(straight.metrics["AP"], abs=1e-6)
