"""The "ncnn" export format and the "ncnn" backend: pnnx's FP32 conversion of the tiny detector, run by ncnn, gives
the eager model's detections (same count at score >= 0.3, boxes within 1 px) on generated scenes and on the
raccoon photos of ../shared/data/raccoon; the metadata travels in the sidecar JSON; broken files are one-line
errors that name the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ssdlite.deploy.export import export_model
from ssdlite.deploy.export.ncnn import NCNN_SUFFIX, ncnn_files
from ssdlite.deploy.metadata import model_metadata
from ssdlite_runtime.backends.base import backend_for_path
from ssdlite_runtime.backends.ncnn import metadata_file, weights_file
from ssdlite_runtime.metadata import INPUT_NAME, RAW_OUTPUT_NAMES
from ssdlite_runtime.predictor import Predictor
from tests.tools.test_detect import CATEGORY_IDS, CLASS_NAMES, draw_scene, tiny_detector

pytest.importorskip("pnnx")
pytest.importorskip("ncnn")

pytestmark = pytest.mark.slow  # exports a model (torch.export, a converter)

RACCOON = Path(__file__).resolve().parents[3] / "shared" / "data" / "raccoon" / "JPEGImages"
SETTINGS = {"score_threshold": 0.3, "max_detections": 300}
"""Every detection at >= 0.3 (no cut at 100, where a tie could make the two runtimes keep different last boxes)."""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = tiny_detector()
    path = export_model(model, tmp_path_factory.mktemp("ncnn") / f"model{NCNN_SUFFIX}", format="ncnn",
                        class_names=CLASS_NAMES, category_ids=CATEGORY_IDS)
    return model, path


def assert_same_detections(model, path, images):
    ncnn = Predictor(path, threads=1, **SETTINGS)
    eager = Predictor(model, backend="eager", class_names=CLASS_NAMES, category_ids=CATEGORY_IDS, **SETTINGS)
    found = 0
    for index, image in enumerate(images):
        [got], [expected] = ncnn.predict(image), eager.predict(image)
        assert len(got["boxes"]) == len(expected["boxes"]), index
        # Match box by box (scores may tie to many digits, so the order may differ).
        for box, label in zip(expected["boxes"], expected["labels"]):
            close = np.abs(got["boxes"] - box).max(axis=1) <= 1.0
            assert (close & (got["labels"] == label)).any(), (index, box)
        found += len(expected["boxes"])
    assert found > 0  # the comparison compared something


def test_the_export_is_param_bin_and_a_sidecar_with_every_metadata_key(exported):
    model, path = exported
    param, weights, sidecar = ncnn_files(path)
    assert path.name == "model.ncnn.param" and weights.name == "model.ncnn.bin" and sidecar.name == "model.ncnn.json"
    assert (weights_file(path), metadata_file(path)) == (weights, sidecar)  # what the backend reads
    assert weights.stat().st_size > 4 * sum(p.numel() for p in model.parameters()) * 0.9  # float32 weights
    metadata = json.loads(sidecar.read_text())
    expected = model_metadata(model, class_names=CLASS_NAMES, category_ids=CATEGORY_IDS)
    assert metadata == expected
    layers = [line.split() for line in param.read_text().splitlines()[2:]]
    assert [layer[-1] for layer in layers if layer[0] == "Input"] == [INPUT_NAME]
    produced = {blob for layer in layers for blob in layer[4 + int(layer[2]) : 4 + int(layer[2]) + int(layer[3])]}
    assert set(RAW_OUTPUT_NAMES) <= produced
    assert backend_for_path(path) == "ncnn"


def test_ncnn_runs_the_raw_network_like_eager(exported):
    model, path = exported
    predictor = Predictor(path, threads=1)
    assert predictor.backend.net.opt.num_threads == 1 and "ncnn" in predictor.describe()
    batch = predictor.preprocess([draw_scene(0), draw_scene(9)])
    outputs = predictor.backend.run(batch)
    with torch.no_grad():
        reference = model(torch.from_numpy(batch))
    np.testing.assert_allclose(outputs.cls_logits, reference["cls_logits"].numpy(), atol=2e-3)
    np.testing.assert_allclose(outputs.box_deltas, reference["box_deltas"].numpy(), atol=2e-3)


def test_ncnn_detections_match_eager_on_scenes(exported):
    assert_same_detections(*exported, [draw_scene(step) for step in (0, 5, 9, 17, 23)])


@pytest.mark.skipif(not RACCOON.is_dir(), reason=f"raccoon photos not found at {RACCOON}")
def test_ncnn_detections_match_eager_on_raccoon_photos(exported):
    photos = sorted(RACCOON.glob("*.jpg"))[:6]
    assert_same_detections(*exported, [cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB) for photo in photos])


def copy_export(path: Path, folder: Path) -> Path:
    folder.mkdir()
    for file in ncnn_files(path):
        shutil.copy(file, folder / file.name)
    return folder / path.name


def test_a_truncated_bin_is_a_one_line_error_naming_it(exported, tmp_path):
    param = copy_export(exported[1], tmp_path / "truncated")
    weights = weights_file(param)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError) as error:
        Predictor(param)
    message = str(error.value)
    assert "\n" not in message and str(weights) in message and "truncated" in message and "--format ncnn" in message


def test_a_missing_sidecar_is_a_one_line_error_naming_it(exported, tmp_path):
    param = copy_export(exported[1], tmp_path / "no_sidecar")
    metadata_file(param).unlink()
    with pytest.raises(FileNotFoundError) as error:
        Predictor(param)
    message = str(error.value)
    assert "\n" not in message and str(metadata_file(param)) in message and "--format ncnn" in message


def test_the_export_takes_only_a_ncnn_param_name_and_no_nms_option(tmp_path):
    model = tiny_detector()
    with pytest.raises(ValueError, match=r"\.ncnn\.param"):
        export_model(model, tmp_path / "model.param", format="ncnn")
    with pytest.raises(ValueError, match="--with-nms"):
        export_model(model, tmp_path / "model.ncnn.param", format="ncnn", with_nms=True)
    assert not list(tmp_path.iterdir())
