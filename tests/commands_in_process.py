"""Runs a command's ``main(argv)`` in the test's own process, as its script or installed command would run it.

A command's process costs its interpreter and the torch import (3-8 s each on the 2-core machines); most tests of a
command need neither: they check what the command prints and the status it exits with, which its ``main`` decides.
:func:`run_main` calls the same function the script's ``if __name__ == "__main__"`` calls and captures what it
writes at the file-descriptor level (``capfd``), so log handlers bound to the original stderr are caught too. The
warnings a process would print (Python's default filters: not DeprecationWarning, PendingDeprecationWarning,
ImportWarning or ResourceWarning) are recorded and appended to stderr as a process prints them, so a test that
wants one line on stderr still sees a warning as a second line. What a command sets up for the process's lifetime
is put back after its ``main``: the level and handlers of the packages' loggers (``configure_logging``), like the
folder, ``sys.argv`` and the environment (``monkeypatch``).

A test keeps a process where the proof needs one: a signal, a kill, an interpreter without torch, an installed
script, the start-up of the interpreter itself.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from ssdlite_runtime.logs import PACKAGE_LOGGERS

REPO_ROOT = Path(__file__).resolve().parents[1]

_scripts: dict[Path, ModuleType] = {}


@dataclass(frozen=True)
class Completed:
    """What a command left: the status ``sys.exit`` would get, and its standard output and error."""

    returncode: int
    stdout: str
    stderr: str


def script_module(script: str | Path) -> ModuleType:
    """The module of a script of the checkout (``"tools/export.py"``, ``"detect.py"``), loaded once per process
    under a private name (its ``__main__`` block does not run)."""
    path = (REPO_ROOT / script).resolve()
    if path not in _scripts:
        name = "_script_" + "_".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _scripts[path] = module
    return _scripts[path]


def run_main(
    script: str | Path,
    arguments: list[str],
    *,
    cwd: Path,
    capfd: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str] | None = None,
) -> Completed:
    """``script``'s ``main(arguments)`` run in folder ``cwd`` with environment ``env`` added, as its process would.

    The captured output of the test up to this call is discarded first, so the result holds the command's alone.
    """
    main = script_module(script).main
    capfd.readouterr()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [str(REPO_ROOT / script), *arguments])
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    loggers = [logging.getLogger(name) for name in PACKAGE_LOGGERS]
    logging_setup = [(logger, logger.level, list(logger.handlers)) for logger in loggers]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.filterwarnings("ignore", category=category)
        try:
            status = main(arguments)
        except SystemExit as stop:  # argparse's usage errors, --help
            status = stop.code
        finally:  # every command's main calls configure_logging (a process's lifetime); later tests see none of it
            for logger, level, handlers in logging_setup:
                logger.handlers[:] = handlers
                logger.setLevel(level)  # clears the loggers' cached levels too
    sys.stdout.flush()
    sys.stderr.flush()
    out, err = capfd.readouterr()
    err += "".join(
        warnings.formatwarning(warning.message, warning.category, warning.filename, warning.lineno)
        for warning in caught
    )
    if status is None:
        status = 0
    elif not isinstance(status, int):  # sys.exit("message") prints it and exits 1
        err += f"{status}\n"
        status = 1
    return Completed(status, out, err)


def one_error_line(completed: Completed) -> str:
    """The single stderr line of a command that must have exited 2 (bad input), without a traceback."""
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr, completed.stderr[-3000:]
    lines = completed.stderr.splitlines()
    assert len(lines) == 1, completed.stderr[-3000:]
    return lines[0]


__all__ = ["Completed", "REPO_ROOT", "one_error_line", "run_main", "script_module"]
