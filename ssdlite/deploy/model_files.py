"""Which model file to use and which backend reads it (no torch import: detect.py checks inputs with it first)."""

from __future__ import annotations

from pathlib import Path

CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")
ONNX_SUFFIXES = (".onnx",)


def backend_for_path(path: str | Path) -> str:
    """The Predictor backend a model file needs, from its suffix: ``.onnx`` -> "ort", a checkpoint -> "eager"."""
    return "ort" if Path(path).suffix.lower() in ONNX_SUFFIXES else "eager"


def find_latest_checkpoint(runs_dir: str | Path = "runs") -> Path | None:
    """The newest ``*.ckpt`` under ``runs_dir``, preferring ``best*`` checkpoints; None if there is none."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return None
    checkpoints = [path for path in runs_dir.rglob("*.ckpt") if path.is_file()]
    best = [path for path in checkpoints if path.name.startswith("best")]
    candidates = best or checkpoints
    return max(candidates, key=lambda path: path.stat().st_mtime) if candidates else None
