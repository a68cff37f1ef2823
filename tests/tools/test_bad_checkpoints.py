"""A --checkpoint / --model that is not a checkpoint is one line that says so, in every command that reads one.

Each command meets each kind of bad file once (a Latin square: three processes instead of nine); every kind goes
through both loaders (``load_checkpoint`` and the Predictor's) in tests/models/test_weights.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssdlite.models import build_model
from tests.deploy import tiny_detector as tiny
from tests.models.test_weights import write_bad_file

REPO_ROOT = Path(__file__).resolve().parents[2]

CASES = {
    "empty": ("detect.py", "the file is empty (0 bytes)"),
    "text": ("tools/eval_coco.py", "it holds text ('epoch,loss')"),
    "truncated": ("tools/export.py", "it is a zip archive cut short or damaged"),
}


def arguments(script: str, checkpoint: Path, tmp_path: Path) -> list[str]:
    if script == "detect.py":
        images, _ = tiny.scenes_coco_dataset()
        return ["image", str(next(images.iterdir())), "--model", str(checkpoint), "--no-show"]
    if script == "tools/eval_coco.py":
        images, annotations = tiny.scenes_coco_dataset()
        return ["--checkpoint", str(checkpoint), "--images", str(images), "--ann", str(annotations),
                "--out", str(tmp_path / "report")]
    return ["--checkpoint", str(checkpoint), "--out", str(tmp_path / "model.onnx")]


@pytest.mark.parametrize("kind", list(CASES))
def test_a_file_that_is_not_a_checkpoint_is_named_as_such(kind, tmp_path):
    script, reason = CASES[kind]
    checkpoint = write_bad_file(kind, tmp_path)
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / script), *arguments(script, checkpoint, tmp_path)], cwd=tmp_path,
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert completed.returncode == 2, completed.stderr[-3000:]
    [line] = completed.stderr.splitlines()
    assert line.startswith(f"{Path(script).name}: error: {checkpoint} is not a checkpoint: {reason}")
    assert "A checkpoint is the file torch.save writes" in line
    assert not (tmp_path / "report").exists() and not (tmp_path / "model.onnx").exists()


def test_a_checkpoint_whose_image_size_is_absurd_is_one_line_naming_it(tmp_path):
    model = build_model("ssdlite_mobilenet_v2", num_classes=2, width_mult=0.35, image_size=64)
    checkpoint = tmp_path / "huge.ckpt"
    torch.save({"model_config": {**model.config, "image_size": 100000}, "state_dict": model.state_dict(),
                "class_names": tiny.CLASS_NAMES, "category_ids": tiny.CATEGORY_IDS}, checkpoint)
    script = "tools/eval_coco.py"
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / script), *arguments(script, checkpoint, tmp_path)], cwd=tmp_path,
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert completed.returncode == 2, completed.stderr[-3000:]
    [line] = completed.stderr.splitlines()
    assert line.startswith(f"eval_coco.py: error: checkpoint '{checkpoint}' holds a model config this package "
                           "cannot build: image_size 100000 is larger than 2048")
