"""Files that the processes of one pytest run build once and share.

pytest-xdist's workers are separate processes, and each runs the fixtures and cached helpers it needs: an expensive
artefact that tests in several modules use (the overfit tiny detector and its exports) would be built by every
worker. :func:`built_once` builds it in a folder of the run's own temporary folder, the one the workers' folders sit
in (``tmp_path_factory.getbasetemp().parent`` on a worker), under a file lock: the first process to ask builds it,
the others wait for the lock and read the files. A new run builds everything afresh, so a code change is never
hidden by an old file.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

COMPLETE = ".complete"
"""Written into a folder once its build has finished: a build that failed half-way is done again."""

_root: Path | None = None


def use_run_folder(basetemp: Path) -> None:
    """Shares files under pytest's base temporary folder ``basetemp`` of this process (tests/conftest.py calls it
    once per process): its parent on an xdist worker, where every worker's folder is, else itself."""
    global _root
    run = basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp
    _root = run / "shared"
    _root.mkdir(parents=True, exist_ok=True)


def run_folder() -> Path:
    """The folder shared by this run's processes (outside pytest: one of this process, removed at exit)."""
    global _root
    if _root is None:
        _root = Path(tempfile.mkdtemp(prefix="ssdlite_tests_"))
        atexit.register(shutil.rmtree, _root, ignore_errors=True)
    return _root


def built_once(name: str, build: Callable[[Path], None]) -> Path:
    """The folder ``name`` of :func:`run_folder`, filled by ``build(folder)`` in the first process that asks.

    Callers must not change its files. A ``build`` may ask for other folders (an export asks for the model) but
    never for one that asks for it back, so that the locks are always taken in one order.
    """
    folder = run_folder() / name
    with FileLock(str(folder.with_name(f"{name}.lock"))):
        if not (folder / COMPLETE).is_file():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
            folder.mkdir()
            build(folder)
            (folder / COMPLETE).touch()
    return folder
