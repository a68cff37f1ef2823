"""MODEL_CARD.md names the command that actually trained the model (``ssdlite-train ...`` when installed,
``python tools/train.py ...`` in a checkout), and the commands to use it that exist where it was trained."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from ssdlite.engine.cli import _command_prefix
from ssdlite.engine.model_card import RunFacts, model_card_text
from ssdlite.engine.module import SSDLiteModule
from ssdlite.models import build_model


@pytest.fixture(scope="module")
def model():
    return build_model("ssdlite_mobilenet_v2", num_classes=2, width_mult=0.35, image_size=128).eval()


def facts(tmp_path, program: str, arguments: str) -> RunFacts:
    return RunFacts(
        name="run",
        run_dir=tmp_path / "runs" / "run",
        model_config=build_model("ssdlite_mobilenet_v2", num_classes=2, width_mult=0.35, image_size=128).config,
        class_names=["a", "b"],
        category_ids=[1, 2],
        command=f"{program} {arguments}",
        program=program,
    )


def test_the_installed_command_is_named_as_the_writer_and_its_siblings_as_the_tools(model, tmp_path):
    card = model_card_text(facts(tmp_path, "ssdlite-train", "--config shapes --name run"), model)
    assert re.search(r"^Written \S+ by `ssdlite-train`\.$", card, re.M), card[:300]
    assert "\nssdlite-train --config shapes --name run\n" in card
    assert f"ssdlite-detect image PHOTO.jpg --model {tmp_path / 'runs/run/last.ckpt'}" in card
    assert f"ssdlite-eval --model {tmp_path / 'runs/run/last.ckpt'}" in card
    assert "`ssdlite-benchmark --only latency" in card
    assert "tools/" not in card and "detect.py" not in card


def test_a_checkout_run_names_its_scripts(model, tmp_path):
    card = model_card_text(facts(tmp_path, ".venv/bin/python tools/train.py", "--config configs/shapes.yaml"), model)
    assert re.search(r"^Written \S+ by `\.venv/bin/python tools/train\.py`\.$", card, re.M), card[:300]
    assert "\n.venv/bin/python tools/train.py --config configs/shapes.yaml\n" in card
    assert "python detect.py image PHOTO.jpg" in card and "python tools/eval_coco.py --model" in card
    assert "ssdlite-" not in card


def test_the_program_is_the_command_that_started_the_process(monkeypatch, tmp_path):
    """``ssdlite-train`` when started as the installed command (as the shell finds it), ``ssdlite-train`` too for
    another installed command that trains (the demo: the card's command line holds ssdlite-train's arguments), and
    the script with this Python when started as ``tools/train.py``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("ssdlite-train", "ssdlite-demo"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    for started in ("ssdlite-train", "ssdlite-demo"):
        monkeypatch.setattr(sys, "argv", [str(bin_dir / started), "--config", "shapes"])
        assert _command_prefix() == ["ssdlite-train"], started
    monkeypatch.setattr(sys, "argv", ["tools/train.py", "--config", "shapes"])
    python, script = _command_prefix()
    assert Path(python).name == Path(sys.executable).name and script == "tools/train.py"


def test_the_training_facts_come_from_the_module_before_and_without_a_trainer():
    module = SSDLiteModule(num_classes=2, class_names=["a", "b"], width_mult=0.35, image_size=128,
                           optimizer="adamw", lr=0.004, base_batch_size=64, ema=False)
    facts = module.recipe_facts()
    assert facts["from"].startswith(("pretrained backbone", "scratch"))
    assert facts["optimizer"] == "adamw" and facts["schedule"] == "-" and facts["EMA"] == "off"
    assert facts["lr scaling"] == "lr 0.004 given for a batch of 64, scaled linearly"
