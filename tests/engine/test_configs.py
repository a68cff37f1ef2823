"""Every shipped recipe in configs/ parses with tools/train.py's parser: no unknown key, no bad value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ssdlite.engine.cli import train

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_there_are_recipes():
    assert {path.name for path in CONFIGS} >= {
        "shapes.yaml", "raccoon.yaml", "ssdlite_mobilenet_v2_coco.yaml", "ssdlite320_mobilenet_v2_coco.yaml",
        "ssdlite_mobilenet_v2_voc.yaml",
    }


@pytest.mark.parametrize("path", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_recipe_parses(path, capsys):
    # --print_config parses and validates every key (types, Literal choices) without reading the data.
    with pytest.raises(SystemExit) as exit_info:
        train(["--config", str(path), "--print_config"])
    assert exit_info.value.code in (0, None), capsys.readouterr().err
    printed = yaml.safe_load(capsys.readouterr().out)
    written = yaml.safe_load(path.read_text())
    for section in ("model", "data"):
        for key, value in written[section].items():
            assert printed[section][key] == value, (section, key)
