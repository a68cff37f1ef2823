"""make demo's dataset step: written once with the demo's settings, rewritten when a folder holds another set."""

from __future__ import annotations

import json

from ssdlite.engine import demo


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
