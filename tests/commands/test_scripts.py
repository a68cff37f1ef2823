"""The commands the two pyprojects declare (the full package's and runtime/'s, which has ``ssdlite-detect``): each
resolves to a ``main``, answers ``--help`` as the installed script, and has its thin entry point in the checkout
(tools/*.py, detect.py, data/download.py) calling the same ``main``."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

pytestmark = pytest.mark.xdist_group("scripts")  # one worker runs every script's --help once (help_answers)

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMAND_PACKAGES = {"pyproject.toml": "ssdlite.commands", "runtime/pyproject.toml": "ssdlite_runtime"}
"""Each pyproject, and the package its commands' modules are in."""
SCRIPTS: dict[str, str] = {
    name: target
    for pyproject in COMMAND_PACKAGES
    for name, target in tomllib.loads((REPO_ROOT / pyproject).read_text())["project"]["scripts"].items()
}
CHECKOUT_SCRIPTS = [*sorted((REPO_ROOT / "tools").glob("*.py")), REPO_ROOT / "detect.py",
                    REPO_ROOT / "data" / "download.py"]


def installed_script(name: str) -> Path:
    return Path(sys.executable).parent / name


def test_the_commands_are_declared():
    assert {"ssdlite-train", "ssdlite-eval", "ssdlite-detect", "ssdlite-export"} <= set(SCRIPTS)
    for pyproject, package in COMMAND_PACKAGES.items():
        scripts = tomllib.loads((REPO_ROOT / pyproject).read_text())["project"]["scripts"]
        assert all(target.startswith(f"{package}.") and target.endswith(":main") for target in scripts.values())


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_declared_script_resolves_to_a_callable_and_is_installed(name):
    module_name, _, attribute = SCRIPTS[name].partition(":")
    assert callable(getattr(importlib.import_module(module_name), attribute))
    installed = {entry.name: entry.value for entry in importlib.metadata.entry_points(group="console_scripts")}
    assert installed.get(name) == SCRIPTS[name], f"{name}: reinstall the package (pip install -e .)"
    assert installed_script(name).is_file()


RUN_WITH_HELP = """
import contextlib, io, json, runpy, sys

answers = {}
for name, script in json.loads(sys.argv[1]).items():
    sys.argv = [script, "--help"]
    out, err, status = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    answers[name] = [status, out.getvalue(), err.getvalue()]
print(json.dumps(answers))
"""
"""Runs each installed script (``{name: path}``, the first argument) as ``SCRIPT --help`` would, one after the
other in this one interpreter; prints ``{name: [exit status, stdout, stderr]}`` as JSON."""


@pytest.fixture(scope="module")
def help_answers(tmp_path_factory) -> dict[str, list]:
    """What every installed script answers to ``--help``: its code run as ``__main__`` by one Python process (not one
    each: most of a command's start is importing torch and Lightning)."""
    scripts = json.dumps({name: str(installed_script(name)) for name in SCRIPTS})
    completed = subprocess.run([sys.executable, "-c", RUN_WITH_HELP, scripts], cwd=tmp_path_factory.mktemp("help"),
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.splitlines()[-1])


@pytest.mark.slow  # starts a process that runs every installed script
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_help_works_through_the_installed_script(name, help_answers):
    status, out, err = help_answers[name]
    assert status == 0, err[-2000:]
    assert f"usage: {name}" in out


def test_every_checkout_script_runs_a_declared_command():
    """Each script imports one command module and calls its ``main``; together they cover every command."""
    modules = {}
    for script in CHECKOUT_SCRIPTS:
        tree = ast.parse(script.read_text())
        [imported] = [node for node in tree.body
                      if isinstance(node, ast.ImportFrom) and node.module in COMMAND_PACKAGES.values()]
        [alias] = imported.names
        modules[script.relative_to(REPO_ROOT).as_posix()] = f"{imported.module}.{alias.name}:main"
        assert "sys.path" not in script.read_text(), script
    assert sorted(modules.values()) == sorted(SCRIPTS.values()), modules


@pytest.mark.parametrize("module", ["ssdlite.commands.train", "ssdlite.commands.demo"])
def test_training_commands_import_torch_only_inside_main(module):
    """So that main bounds OpenMP's spin-wait (ssdlite/openmp.py) before torch loads."""
    probe = f"import sys, {module}; print('torch' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert completed.stdout.strip() == "False", completed.stderr[-2000:]


@pytest.mark.slow  # starts a command's process
def test_an_installed_command_names_itself_in_its_error_line(tmp_path):
    completed = subprocess.run([str(installed_script("ssdlite-summary")), "ssd_vgg16"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 2
    [line] = completed.stderr.splitlines()
    assert line.startswith("ssdlite-summary: error: ")
