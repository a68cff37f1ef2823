"""How often a run validates does not change the weights it trains.

Validation recalibrates BatchNorm on shuffled, augmented training batches and reads the validation set with loader
workers; both used to draw from the training's random state (torch's generator, the training augmentation's), so
validating every epoch or only at the end gave different models from the same seed. Two runs of the same seed that
differ only in ``check_val_every_n_epoch`` must end with the same weights, EMA and BatchNorm statistics.
"""

from __future__ import annotations

import pytest
import torch

from ssdlite.engine.cli import train

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("num_workers", [0, 1])
def test_validating_every_epoch_or_at_the_end_trains_the_same_weights(config_factory, tmp_path, num_workers):
    weights = {}
    for every in (1, 3):
        config = config_factory(
            trainer={"max_epochs": 3, "check_val_every_n_epoch": every},
            data={"num_workers": num_workers, "augment": "ssd_mosaic"},
        )
        result = train(["--config", str(config), "--name", f"every{every}"])
        assert result.metrics  # the last epoch validated in both runs
        checkpoint = torch.load(tmp_path / "runs" / f"every{every}" / "last.ckpt", weights_only=True)
        weights[every] = checkpoint["state_dict"]
    assert weights[1].keys() == weights[3].keys()
    for name, value in weights[1].items():
        assert torch.equal(value, weights[3][name]), name
