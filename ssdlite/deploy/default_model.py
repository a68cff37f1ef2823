"""The model ``ssdlite-detect`` runs when ``--model`` is left out: the newest checkpoint training wrote.

``ssdlite_runtime`` knows nothing of training; it calls whatever the ``ssdlite_runtime.default_model`` entry point
names, which the root pyproject.toml points at :func:`newest_checkpoint`. Cheap to import: the standard library
only, since ``ssdlite-detect`` imports it on every run without ``--model``.
"""

from __future__ import annotations

import logging
from pathlib import Path

__all__ = ["RUNS_DIR", "find_latest_checkpoint", "newest_checkpoint"]

logger = logging.getLogger(__name__)

RUNS_DIR = "runs"
"""Where training writes its run folders (``ssdlite-train --runs_dir``'s default)."""


def find_latest_checkpoint(runs_dir: str | Path = RUNS_DIR) -> Path | None:
    """The newest ``*.ckpt`` under ``runs_dir``, preferring ``best*`` checkpoints; None if there is none."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return None
    checkpoints = [path for path in runs_dir.rglob("*.ckpt") if path.is_file()]
    best = [path for path in checkpoints if path.name.startswith("best")]
    candidates = best or checkpoints
    return max(candidates, key=lambda path: path.stat().st_mtime) if candidates else None


def newest_checkpoint(runs_dir: str | Path | None = None) -> Path:
    """The newest checkpoint under ``runs_dir`` (``ssdlite-detect --runs-dir``; None: :data:`RUNS_DIR`), saying
    which.

    Raises:
        ValueError: there is none (says how to train one).
    """
    runs_dir = Path(RUNS_DIR if runs_dir is None else runs_dir)
    found = find_latest_checkpoint(runs_dir)
    if found is None:
        raise ValueError(
            f"no --model given and no checkpoint (*.ckpt) under {runs_dir}/; train one with `make demo` "
            "(or ssdlite-train), then run again or pass --model PATH"
        )
    logger.info(f"no --model given: using the newest checkpoint under {runs_dir}/: {found}")
    return found
