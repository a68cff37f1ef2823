"""MODEL_CARD.md names the command that actually trained the model (``ssdlite-train ...`` when installed,
``python tools/train.py ...`` in a checkout), and the commands to use it that exist where it was trained."""

from __future__ import annotations

import re

import pytest

from ssdlite.engine.model_card import RunFacts, model_card_text
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
    assert f"ssdlite-eval --checkpoint {tmp_path / 'runs/run/last.ckpt'}" in card
    assert "`ssdlite-benchmark --only latency" in card
    assert "tools/" not in card and "detect.py" not in card


def test_a_checkout_run_names_its_scripts(model, tmp_path):
    card = model_card_text(facts(tmp_path, ".venv/bin/python tools/train.py", "--config configs/shapes.yaml"), model)
    assert re.search(r"^Written \S+ by `\.venv/bin/python tools/train\.py`\.$", card, re.M), card[:300]
    assert "\n.venv/bin/python tools/train.py --config configs/shapes.yaml\n" in card
    assert "python detect.py image PHOTO.jpg" in card and "python tools/eval_coco.py --checkpoint" in card
    assert "ssdlite-" not in card
