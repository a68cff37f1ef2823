"""A .tflite file runs where torch cannot be imported: ``detect.py image --model model.tflite`` (ssdlite_runtime and
ai-edge-litert only) matches the eager model's detections (same count at score >= 0.3, boxes within 1 px), and a
truncated file is a one-line error naming it (exit 2)."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from ssdlite_runtime.predictor import Predictor
from tests.deploy import tiny_detector as tiny
from tests.deploy.test_export_tflite import NAMES, exported_tflite
from tests.runtime.test_without_torch import (
    REPO_ROOT,
    assert_records_match_eager,
    detect_without_torch,
    run_without_torch,
)

pytest.importorskip("ai_edge_litert")
pytestmark = [pytest.mark.xdist_group("tflite"), pytest.mark.slow]  # the export: see test_export_tflite.EXPORTS


def scene_files(folder: Path) -> list[Path]:
    paths = []
    for index, image in enumerate(tiny.scene_images()):
        for name, variant in ((f"scene{index}.png", image), (f"scene{index}_wide.png", cv2.resize(image, (200, 150)))):
            cv2.imwrite(str(folder / name), cv2.cvtColor(variant, cv2.COLOR_RGB2BGR))
            paths.append(folder / name)
    return paths


def test_detect_runs_a_tflite_file_without_torch_and_matches_the_eager_model(tmp_path):
    images = scene_files(tmp_path)
    result, records = detect_without_torch(exported_tflite("float"), images, tmp_path)
    assert result.returncode == 0, result.stderr
    eager = Predictor(tiny.overfit_tiny_detector(), backend="eager", score_threshold=0.3, **NAMES)
    assert_records_match_eager(records, images, eager)


def test_a_truncated_tflite_file_is_a_one_line_error_naming_it(tmp_path):
    content = exported_tflite("float").read_bytes()
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(content[: len(content) // 2])
    image = scene_files(tmp_path)[0]
    result = run_without_torch([str(REPO_ROOT / "detect.py"), "image", str(image), "--model", str(truncated),
                                "--no-show"], tmp_path)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and str(truncated) in line and "TFLite" in line, line
