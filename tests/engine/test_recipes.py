"""The training recipes ship inside the package (ssdlite/configs/, configs/ in a checkout links to it) and
``--config NAME`` finds them from any folder; a file that exists always wins over a name."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

import pytest
import tomllib
import yaml

from ssdlite.engine import demo
from ssdlite.engine.cli import train
from ssdlite.engine.recipes import recipe_names, recipes_dir, resolve_config, resolve_config_arguments

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPES = {"shapes", "raccoon", "ssdlite_mobilenet_v2_coco", "ssdlite320_mobilenet_v2_coco", "ssdlite_mobilenet_v2_voc"}


def test_the_recipes_are_package_data_and_configs_is_the_same_folder():
    assert recipes_dir() == REPO_ROOT / "ssdlite" / "configs"
    assert set(recipe_names()) >= RECIPES
    # every recipe matches the pyproject's package-data glob, so the wheel carries it
    patterns = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "ssdlite"
    ]
    assert all(any(fnmatch(f"configs/{name}.yaml", pattern) for pattern in patterns) for name in recipe_names())
    # the README's configs/shapes.yaml is the packaged file itself, not a copy that could drift
    assert (REPO_ROOT / "configs").is_symlink()
    assert (REPO_ROOT / "configs").resolve() == recipes_dir()


@pytest.mark.parametrize("value", ["shapes", "shapes.yaml", "shapes.yml", "configs/shapes.yaml"])
def test_a_name_resolves_to_the_packaged_recipe_from_any_folder(value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config(value) == str(recipes_dir() / "shapes.yaml")


@pytest.mark.parametrize("value", ["shapes", "shapes.yaml", "configs/shapes.yaml"])
def test_an_existing_file_wins_over_a_name(value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / value).write_text("name: mine\n")
    assert resolve_config(value) == value


def test_paths_and_inline_yaml_that_are_not_names_are_left_to_the_parser(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for value in ("elsewhere/shapes.yaml", str(tmp_path / "shapes.yaml"), '{"trainer": {"max_steps": 2}}'):
        assert resolve_config(value) == value


def test_an_unknown_name_is_one_line_listing_the_packaged_recipes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        resolve_config("shape")
    message = str(error.value)
    assert "\n" not in message and message.startswith("--config shape: no such file")
    assert all(name in message for name in RECIPES)


def test_only_config_values_are_rewritten(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shapes = str(recipes_dir() / "shapes.yaml")
    argv = ["--config", "shapes", "--name", "shapes", "--config=raccoon.yaml", "-c", "shapes", "--data.format", "coco"]
    assert resolve_config_arguments(argv) == [
        "--config", shapes, "--name", "shapes", f"--config={recipes_dir() / 'raccoon.yaml'}", "-c", shapes,
        "--data.format", "coco",
    ]


def test_train_reads_the_packaged_recipe_by_its_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no configs/ here
    with pytest.raises(SystemExit) as exit_info:
        train(["--config", "shapes", "--print_config"])
    assert exit_info.value.code in (0, None), capsys.readouterr().err
    printed = yaml.safe_load(capsys.readouterr().out)
    written = yaml.safe_load((recipes_dir() / "shapes.yaml").read_text())
    assert printed["trainer"]["max_steps"] == written["trainer"]["max_steps"]
    assert printed["model"]["image_size"] == written["model"]["image_size"]


def test_train_with_an_unknown_recipe_fails_before_parsing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a packaged recipe"):
        train(["--config", "nope", "--print_config"])


def test_the_demo_trains_the_packaged_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Path(demo.DEMO_CONFIG) == recipes_dir() / "shapes.yaml"
    assert demo.recipe_steps() == yaml.safe_load(Path(demo.DEMO_CONFIG).read_text())["trainer"]["max_steps"]
