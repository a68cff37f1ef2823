"""make demo's dataset and recipe: the set is written once with the demo's settings and rewritten when a folder holds
another; the recipe is a fixed number of steps on that set, and the commands shown for it write the same set."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml

from ssdlite.engine import demo

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_dataset_is_reused_only_with_the_same_settings(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "SHAPES_TRAIN_IMAGES", 3)
    monkeypatch.setattr(demo, "SHAPES_VAL_IMAGES", 2)
    monkeypatch.setattr(demo, "SHAPES_IMAGE_SIZE", 64)
    root = tmp_path / "shapes"
    paths = demo.ensure_shapes_dataset(root)
    assert "wrote 3 train + 2 val" in capsys.readouterr().out
    written = paths["train_annotations"].stat().st_mtime_ns
    assert demo.ensure_shapes_dataset(root) == paths
    assert "already there" in capsys.readouterr().out
    assert paths["train_annotations"].stat().st_mtime_ns == written

    monkeypatch.setattr(demo, "SHAPES_OBJECT_SIZES", (0.2, 0.4))  # e.g. a folder left by an older demo
    demo.ensure_shapes_dataset(root)
    assert "holds another shapes set" in capsys.readouterr().out
    info = json.loads(paths["val_annotations"].read_text())["info"]["ssdlite_shapes"]
    assert info["object_sizes"] == [0.2, 0.4] and info["count"] == 2


def test_the_demo_trains_a_fixed_number_of_steps_at_the_size_of_its_dataset():
    # A wall-time budget (trainer.max_time) made the demo's model depend on the machine's speed (issue 15).
    config = yaml.safe_load((REPO_ROOT / demo.DEMO_CONFIG).read_text(encoding="utf-8"))
    trainer = config["trainer"]
    assert trainer.get("max_time") is None
    assert isinstance(trainer.get("max_steps"), int) and trainer["max_steps"] > 0
    assert config["model"]["image_size"] == demo.SHAPES_IMAGE_SIZE


def test_the_shown_make_shapes_commands_write_the_demo_dataset():
    expected = {
        "--num-train": [str(demo.SHAPES_TRAIN_IMAGES)],
        "--num-val": [str(demo.SHAPES_VAL_IMAGES)],
        "--size": [str(demo.SHAPES_IMAGE_SIZE)],
        "--seed": [str(demo.SHAPES_SEED)],
        "--object-sizes": [f"{size:g}" for size in demo.SHAPES_OBJECT_SIZES],
    }
    shown = [
        line
        for source in (REPO_ROOT / "README.md", REPO_ROOT / demo.DEMO_CONFIG)
        for line in re.findall(r"(?:\S*python tools/make_shapes\.py|ssdlite-make-shapes) --out data/shapes [^\n`]*",
                               source.read_text())
    ]
    assert len(shown) >= 2, "the README and configs/shapes.yaml show the command that writes the demo's set"
    for line in shown:
        tokens = shlex.split(line, comments=True)
        for option, values in expected.items():
            start = tokens.index(option) + 1
            assert tokens[start:start + len(values)] == values, (line, option)
