"""The runtime path for exported files works where torch cannot be imported: ``detect.py image --model model.onnx``
runs in a subprocess whose ``sitecustomize`` makes every import of torch, torchvision, lightning and ssdlite fail,
and its detections match the eager checkpoint's (boxes within 1 px, same count at score >= 0.3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssdlite.deploy.export import export_model
from ssdlite_runtime.predictor import Predictor
from tests.tools.test_detect import CATEGORY_IDS, CLASS_NAMES, draw_scene, tiny_detector

pytestmark = pytest.mark.slow  # exports a model and starts a process without torch

REPO_ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ("torch", "torchvision", "lightning", "pytorch_lightning", "ssdlite")

BLOCKER = textwrap.dedent(
    f"""
    import sys

    class _NoTorch:
        blocked = {BLOCKED!r}

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.blocked:
                raise ImportError(f"{{name}} is blocked: this test runs without torch")
            return None

    sys.meta_path.insert(0, _NoTorch())
    """
)


def run_without_torch(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def detect_without_torch(model: Path, images: list[Path], tmp_path: Path, *options: str
                         ) -> tuple[subprocess.CompletedProcess, Path]:
    """``detect.py image IMAGES --model MODEL --score-threshold 0.3 --json RECORDS OPTIONS`` without torch: the
    finished process and the records file."""
    records = tmp_path / "detections.json"
    result = run_without_torch(
        [str(REPO_ROOT / "detect.py"), "image", *map(str, images), "--model", str(model), "--score-threshold", "0.3",
         "--json", str(records), *options, "--no-show"],
        tmp_path,
    )
    return result, records


def write_scenes(folder: Path) -> list[Path]:
    """Three generated scenes (tests/tools/test_detect.draw_scene) written as PNG files in ``folder``."""
    images = []
    for step in (0, 9, 23):
        path = folder / f"scene_{step}.png"
        cv2.imwrite(str(path), cv2.cvtColor(draw_scene(step), cv2.COLOR_RGB2BGR))
        images.append(path)
    return images


def assert_records_match_eager(records: Path, images: list[Path], eager: Predictor) -> None:
    """The COCO records ``detect.py --json`` wrote for ``images`` hold, per image, as many detections as ``eager``
    finds (its score threshold), and each eager box has a record of its category within 1 px. Scores of the
    untrained test models tie to many digits, so the order may differ: the match is box by box."""
    written = json.loads(records.read_text())
    category_ids = eager.category_ids
    for image_path in images:
        [expected] = eager.predict(cv2.cvtColor(cv2.imread(str(image_path)), cv2.COLOR_BGR2RGB))
        got = [record for record in written if Path(record["file_name"]).name == image_path.name]
        assert len(got) == len(expected["boxes"]) > 0, image_path.name
        got_boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (record["bbox"] for record in got)])
        got_categories = np.array([record["category_id"] for record in got])
        for box, label in zip(expected["boxes"], expected["labels"]):
            close = np.abs(got_boxes - box).max(axis=1) <= 1.0
            assert (close & (got_categories == category_ids[label - 1])).any(), (image_path.name, box)


def test_the_blocker_really_blocks_torch(tmp_path):
    result = run_without_torch(["-c", "import torch"], tmp_path)
    assert result.returncode != 0 and "blocked" in result.stderr


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("without_torch")
    model = tiny_detector()
    onnx_path = export_model(model, folder / "model.onnx", class_names=CLASS_NAMES, category_ids=CATEGORY_IDS,
                             with_nms=True)
    return model, onnx_path, write_scenes(folder)


def test_detect_runs_an_onnx_file_without_torch_and_matches_the_eager_model(exported, tmp_path):
    model, onnx_path, images = exported
    result, records = detect_without_torch(onnx_path, images, tmp_path, "--save", str(tmp_path / "drawn"))
    assert result.returncode == 0, result.stderr
    drawn = sorted((tmp_path / "drawn").iterdir())
    assert len(drawn) == len(images)

    eager = Predictor(model, backend="eager", class_names=CLASS_NAMES, category_ids=CATEGORY_IDS,
                      score_threshold=0.3)
    assert_records_match_eager(records, images, eager)

def test_a_checkpoint_without_the_full_package_is_a_one_line_error(tmp_path):
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"not needed: the backend is refused before reading")
    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), draw_scene(0))
    result = run_without_torch([str(REPO_ROOT / "detect.py"), "image", str(image), "--model", str(checkpoint),
                                "--no-show"], tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and "ssdlite" in line and "pip install" in line, line


def test_a_core_ml_package_says_where_it_runs(tmp_path):
    package = tmp_path / "model.mlpackage"
    (package / "Data").mkdir(parents=True)
    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), draw_scene(0))
    result = run_without_torch([str(REPO_ROOT / "detect.py"), "image", str(image), "--model", str(package),
                                "--no-show"], tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert str(package) in line and "Apple platforms" in line, line
