"""An OpenVINO IR runs where torch cannot be imported: ``detect.py image ... --model model.xml`` in a subprocess
whose ``sitecustomize`` makes every import of torch, torchvision, lightning and ssdlite fail (tests/runtime/
test_without_torch.py), with the eager model's detections; a damaged IR is a one-line error there too.

The IR is the one tests/deploy/test_export_openvino.py exports (once per process, same xdist group)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssdlite_runtime.predictor import Predictor
from tests.deploy.test_export_openvino import NAMES, assert_same_detections, exported, model
from tests.runtime.test_without_torch import REPO_ROOT, detect_without_torch, run_without_torch, write_scenes
from tests.tools.test_detect import CATEGORY_IDS, draw_scene

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("openvino")]  # exports a model

def test_detect_runs_an_openvino_ir_without_torch_and_matches_the_eager_model(tmp_path):
    images = write_scenes(tmp_path)
    result, records = detect_without_torch(exported("fp32"), images, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "openvino (OpenVINO, NMS in graph, fp32.xml)" in result.stdout
    eager = Predictor(model(), backend="eager", **NAMES, score_threshold=0.3)
    written = json.loads(records.read_text())
    for image_path in images:
        image = cv2.cvtColor(cv2.imread(str(image_path)), cv2.COLOR_BGR2RGB)
        [expected] = eager.predict(image)
        got = [record for record in written if Path(record["file_name"]).name == image_path.name]
        detections = {
            "boxes": np.array([[x, y, x + w, y + h] for x, y, w, h in (record["bbox"] for record in got)]),
            "labels": np.array([CATEGORY_IDS.index(record["category_id"]) + 1 for record in got]),
            "scores": np.array([record["score"] for record in got]),
        }
        assert len(expected["boxes"]) > 0
        # records round boxes to 0.01 px and scores to 4 decimals; the caps (100) cut both lists alike
        assert_same_detections(detections, expected, pixels=1.0, what=image_path.name)


@pytest.mark.parametrize("damage", ["garbage_xml", "truncated_bin"])
def test_a_damaged_ir_is_a_one_line_error_without_torch(tmp_path, damage):
    source = exported("fp32")
    path = tmp_path / "model.xml"
    weights = source.with_suffix(".bin").read_bytes()
    if damage == "garbage_xml":
        path.write_bytes(b"\x89PNG not a model")
        path.with_suffix(".bin").write_bytes(weights)
    else:
        path.write_bytes(source.read_bytes())
        path.with_suffix(".bin").write_bytes(weights[: len(weights) // 3])
    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), draw_scene(0))
    result = run_without_torch(
        [str(REPO_ROOT / "detect.py"), "image", str(image), "--model", str(path), "--no-show"], tmp_path
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("detect.py: error: ") and str(path) in line and "OpenVINO IR" in line, line
    if damage == "truncated_bin":
        assert "Incorrect weights in bin file" in line and "model.bin" in line, line
