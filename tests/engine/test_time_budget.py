"""A run limited by trainer.max_time only: the cosine decay is fitted to the time budget and ends with it; the final
weights are validated after the time runs out and saved again (with their recalibrated BatchNorm statistics), so
last.ckpt evaluates to the reported metrics. Runs in channels-last memory, as the CPU configs do.

The time budget is re-estimated every UPDATE_EVERY_STEPS steps (TimeBudget's parameter, 20 by default), so a
handful of steps suffice and the test holds however fast the machine is."""

from __future__ import annotations

import csv

import pytest

from ssdlite.engine.cli import train
from ssdlite.engine.evaluate import evaluate
from ssdlite.engine.schedule import TimeBudget

pytestmark = pytest.mark.slow

UPDATE_EVERY_STEPS = 2


def test_max_time_run_decays_the_learning_rate_to_the_end_and_validates_the_final_weights(
    config_factory, shapes, single_thread, tmp_path
):
    config = config_factory(
        trainer={"max_epochs": None, "max_time": "00:00:00:08", "check_val_every_n_epoch": 1000},
        model={"warmup_epochs": 1, "min_lr_factor": 0.0, "bn_calibration_batches": 1, "channels_last": True},
    )
    result = train(["--config", str(config), "--name", "budget"],
                   extra_callbacks=[TimeBudget(update_every_steps=UPDATE_EVERY_STEPS)])
    assert 2 * UPDATE_EVERY_STEPS < result.steps < 1000  # stopped by the clock, not by an epoch or step count
    with (result.run_dir / "metrics.csv").open() as file:
        rates = [float(row["train/lr"]) for row in csv.DictReader(file) if row.get("train/lr")]
    peak = max(rates)
    assert peak == pytest.approx(0.004, rel=0.05)
    # The last tenth of the run is spent well into the decay: the budget estimate brought the end forward.
    assert rates[-1] < 0.35 * peak, rates[-10:]
    assert result.metrics and "AP50" in result.metrics  # the final weights were validated after the time ran out
    metrics = evaluate(result.last_checkpoint, annotations=shapes["val_annotations"],
                       images=shapes["val_images"], out_dir=tmp_path / "eval")
    assert metrics["AP"] == pytest.approx(result.metrics["AP"], abs=1e-9)
    assert metrics["AR100"] == pytest.approx(result.metrics["AR100"], abs=1e-9)
