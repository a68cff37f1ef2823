"""Acceptance: two CPU processes (gloo, strategy ddp) train one short epoch through tools/train.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from .conftest import ROOT

pytestmark = pytest.mark.slow


def test_two_process_ddp_trains_and_writes_a_checkpoint(config_factory, tmp_path):
    # 16 images, 4 per device on 2 devices: 2 steps; lr 0.004 given for a global batch of 4 becomes 0.008.
    config = config_factory(trainer={"max_epochs": 1, "deterministic": False},
                            model={"base_batch_size": 4},
                            data={"batch_size": 4})
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    environment.pop("SSDLITE_RUN_DIR", None)
    completed = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "train.py"), "--config", str(config), "--name", "ddp",
         "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    run_dir = tmp_path / "runs" / "ddp"
    checkpoint = torch.load(run_dir / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 2 and checkpoint["epoch"] == 1
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["initial_lr"] == pytest.approx(0.008)
    assert "ema_model.module.backbone.features.0.0.weight" in checkpoint["state_dict"]
    assert (run_dir / "best.ckpt").is_file() and (run_dir / "MODEL_CARD.md").is_file()
    assert "2 x 1 node(s)" in (run_dir / "MODEL_CARD.md").read_text()
    assert "val/AP" in (run_dir / "metrics.csv").read_text().splitlines()[0]
    assert not list((tmp_path / "runs").glob("ddp-*"))  # both ranks wrote to the folder rank 0 chose
