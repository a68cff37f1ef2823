"""Fixtures of the data tests. ``make_scene(format)`` writes the scene of ``scene.py`` (the same images and boxes
in COCO, VOC or YOLO format) under ``tmp_path/<format>`` and returns its paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from .scene import WRITERS


@pytest.fixture
def make_scene(tmp_path):
    """Factory: ``make_scene("coco" | "voc" | "yolo") -> dict of paths`` (see scene.py)."""

    def make(format: str) -> dict[str, Path]:
        return WRITERS[format](tmp_path / format)

    return make
