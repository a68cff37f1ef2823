"""An exported file whose metadata is hostile or is not its graph's is a one-line error naming the file and the key
(``ssdlite-detect`` exits 2), never a crash, a 112 GiB allocation or boxes labelled with another model's names.

Real files: a 4-class SSDLite (width 0.35, 64 px, untrained: only the shapes matter) is exported once as a raw
ONNX network; the ONNX files with and without NMS and the OpenVINO IR are made from it (seconds), then each
copy's metadata is rewritten -- ONNX ``metadata_props`` with the onnx package, the IR's ``rt_info`` with OpenVINO
-- to one hostile value. The ncnn backend reads its metadata from the JSON beside the ``.ncnn.param`` before ncnn
parses anything, so its case needs no conversion (an ncnn export costs about 12 s): the sidecar of the model's own
metadata with one value replaced, next to placeholder ``.param`` / ``.bin`` files.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pytest
import torch

from ssdlite.deploy.export import ExportOptions, export_network_onnx
from ssdlite.deploy.export.onnx import export_onnx
from ssdlite.deploy.metadata import model_metadata
from ssdlite.models import build_model
from ssdlite_runtime import detect
from ssdlite_runtime.backends import base as backend_registry
from ssdlite_runtime.backends.base import Backend, RawOutputs
from ssdlite_runtime.metadata import MAX_IMAGE_SIZE, ModelInfo
from ssdlite_runtime.predictor import Predictor

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("hostile_metadata")]  # exports a model

REPO_ROOT = Path(__file__).resolve().parents[2]
NUM_CLASSES = 4
NAMES = {"class_names": [f"c{i}" for i in range(1, NUM_CLASSES + 1)], "category_ids": list(range(1, 5))}
IMAGE_SIZE = 64

HOSTILE = {
    # key: (value written, what the message says about it)
    "class_names": ("5", "is 5, not a JSON list of class names"),
    "variances": ("5", "is 5, not a JSON list of"),
    "feature_sizes": ("7", "is 7, not a JSON list of [height, width] pairs"),
    "input_size": ("100000", "is 100000, not an integer from 64 to 2048"),
    "max_detections": ("1e300", "is 1e+300, not an integer from 1 to 1000000"),
}
"""The cases of the issue (wrong types, an input size that allocated 112 GiB, a count that overflowed)."""

MORE_HOSTILE = [
    ("input_size", "0", "is 0, not an integer from 64"),
    ("input_size", "-5", "is -5, not an integer from 64"),
    ("input_size", "320.5", "is 320.5, not an integer"),
    ("score_threshold", "NaN", "is NaN, not a number from 0 to 1"),
    ("nms_iou", "1.5", "is 1.5, not a number from 0 to 1"),
    ("topk_per_class", "0", "is 0, not an integer from 1"),
    ("category_ids", '["a", "b", "c", "d"]', 'holds "a", not a JSON list of dataset category ids'),
    ("category_ids", "[1, 2, 3]", "holds 3 ids but 'class_names' 4 names"),
    ("class_names", "[]", "holds 0 values, not a JSON list of class names"),
    ("class_names", '["c1", 2, "c3", "c4"]', "holds 2, not a JSON list of class names"),
    ("mean", "[127.5, 127.5]", "holds 2 values, not a JSON list of 3"),
    ("scale", "[0, 0, 0]", "holds 0, not a JSON list of 3 per-channel scales"),
    ("variances", "[0.1, -0.2]", "holds -0.2, not a JSON list of 2"),
    ("with_nms", '"yes"', 'is "yes", not true or false'),
    ("default_boxes", "!!not base64!!", "is not base64 text"),
    ("default_boxes", "AAAA", "holds 3 bytes, not float32 [A, 4]"),
    ("model_config", "[1]", "is [1], not a JSON object"),
    ("feature_sizes", "[[8, 8], [4]]", "is [[8, 8], [4]], not a JSON list of [height, width] pairs"),
    ("class_names", '["c1", "c2"', "is not valid JSON"),
]
"""Every other key read, each with a value of the wrong type or range (on the raw ONNX file)."""


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("ssdlite_mobilenet_v2", num_classes=NUM_CLASSES, width_mult=0.35, image_size=IMAGE_SIZE).eval()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """{"raw": ONNX raw outputs, "nms": ONNX with NMS inside, "network": the raw network both come from}."""
    folder = tmp_path_factory.mktemp("hostile_metadata")
    network = export_network_onnx(model, folder / "network.onnx")
    return {
        "network": network,
        "raw": export_onnx(model, folder / "raw.onnx", network_onnx=network, **NAMES),
        "nms": export_onnx(model, folder / "nms.onnx", with_nms=True, network_onnx=network, **NAMES),
    }


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("image") / "image.jpg"
    cv2.imwrite(str(path), np.full((48, 64, 3), 128, np.uint8))
    return path


def with_metadata(source: Path, target: Path, **values: str) -> Path:
    """A copy of the ONNX file ``source`` whose metadata_props ``values`` are replaced."""
    graph = onnx.load(str(source))
    props = {prop.key: prop for prop in graph.metadata_props}
    for key, value in values.items():
        props[key].value = value
    onnx.save(graph, str(target))
    return target


def run_detect(model_file: Path, image: Path, capsys) -> tuple[int, str]:
    """``detect.py image IMAGE --model FILE`` in this process (the script's main): its status and its stderr."""
    capsys.readouterr()
    status = detect.main(["image", str(image), "--model", str(model_file), "--no-show"], prog="detect.py")
    return status, capsys.readouterr().err


def assert_one_line_naming(status: int, stderr: str, path: Path, key: str, said: str) -> None:
    assert status == 2, stderr
    [line] = stderr.strip().splitlines()
    assert line.startswith(f"detect.py: error: {path}: ssdlite metadata '{key}' {said}"), line
    assert "unexpected" not in line and "export the file again" in line, line


@pytest.mark.parametrize("kind", ["raw", "nms"])
@pytest.mark.parametrize("key", list(HOSTILE))
def test_a_hostile_onnx_metadata_value_is_one_line_naming_the_file_and_the_key(exported, image, tmp_path, capsys,
                                                                              kind, key):
    value, said = HOSTILE[key]
    path = with_metadata(exported[kind], tmp_path / f"{kind}_{key}.onnx", **{key: value})
    assert_one_line_naming(*run_detect(path, image, capsys), path, key, said)


@pytest.mark.parametrize(("key", "value", "said"), MORE_HOSTILE)
def test_every_key_is_checked_for_its_type_and_range(exported, tmp_path, key, value, said):
    path = with_metadata(exported["raw"], tmp_path / "model.onnx", **{key: value})
    with pytest.raises(ValueError) as raised:
        Predictor(path)
    assert str(raised.value).startswith(f"{path}: ssdlite metadata '{key}' {said}"), str(raised.value)


@pytest.mark.parametrize("kind", ["raw", "nms"])
def test_metadata_claiming_300_classes_for_a_4_class_graph_is_an_error_naming_both(exported, image, tmp_path,
                                                                                  capsys, kind):
    names = [f"c{i}" for i in range(1, 301)]
    path = with_metadata(exported[kind], tmp_path / f"{kind}.onnx", class_names=json.dumps(names),
                         category_ids=json.dumps(list(range(1, 301))))
    status, stderr = run_detect(path, image, capsys)
    assert_one_line_naming(status, stderr, path, "class_names", "lists 300 classes but the graph has 4")


def test_fewer_classes_or_another_input_size_than_the_graph_are_errors(exported, tmp_path):
    fewer = {"class_names": json.dumps(["c1", "c2"]), "category_ids": json.dumps([1, 2])}
    for kind in ("raw", "nms"):
        path = with_metadata(exported[kind], tmp_path / f"{kind}_fewer.onnx", **fewer)
        with pytest.raises(ValueError, match=rf"^{path}: ssdlite metadata 'class_names' lists 2 classes but the "
                                             "graph has 4"):
            Predictor(path)
        path = with_metadata(exported[kind], tmp_path / f"{kind}_size.onnx", input_size="128")
        with pytest.raises(ValueError, match=rf"^{path}: ssdlite metadata 'input_size' is 128 but the graph's input "
                                             "is 64 x 64"):
            Predictor(path)


def test_default_boxes_that_are_not_the_graphs_are_an_error(model, exported, tmp_path):
    fewer = model.anchors[:-1].numpy().astype("<f4")
    encoded = base64.b64encode(fewer.tobytes()).decode("ascii")
    path = with_metadata(exported["raw"], tmp_path / "raw.onnx", default_boxes=encoded)
    with pytest.raises(ValueError, match=rf"^{path}: ssdlite metadata 'default_boxes' holds {len(fewer)} boxes but "
                                         f"the graph predicts {len(fewer) + 1}"):
        Predictor(path)
    path = with_metadata(exported["nms"], tmp_path / "nms.onnx", default_boxes=encoded)
    with pytest.raises(ValueError, match=rf"^{path}: ssdlite metadata 'default_boxes' holds {len(fewer)} boxes, "
                                         "but asked for every candidate the graph's NMS outputs have"):
        Predictor(path)


def test_the_files_as_exported_still_run(exported, image, capsys):
    for kind in ("raw", "nms"):
        predictor = Predictor(exported[kind])
        assert predictor.class_names == NAMES["class_names"] and predictor.image_size == IMAGE_SIZE
        status, stderr = run_detect(exported[kind], image, capsys)
        assert status == 0, stderr


@pytest.mark.slow  # starts a command's process
def test_the_real_command_exits_2_with_one_line(exported, image, tmp_path):
    """detect.py itself, as a user runs it: the input size that asked for 112 GiB."""
    path = with_metadata(exported["nms"], tmp_path / "huge.onnx", input_size="100000")
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "detect.py"), "image", str(image), "--model", str(path), "--no-show"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert completed.returncode == 2, completed.stderr[-3000:]
    [line] = completed.stderr.splitlines()
    assert line.startswith(f"detect.py: error: {path}: ssdlite metadata 'input_size' is 100000, not an integer "
                           f"from 64 to {MAX_IMAGE_SIZE}"), line


def test_training_and_the_runtime_share_one_input_size_cap():
    from ssdlite.models import ssdlite as network

    assert network.MAX_IMAGE_SIZE is MAX_IMAGE_SIZE
    with pytest.raises(ValueError, match=f"larger than {MAX_IMAGE_SIZE}"):
        build_model("ssdlite_mobilenet_v2", num_classes=1, width_mult=0.35, image_size=MAX_IMAGE_SIZE + 1)


# -- OpenVINO: the metadata is the IR's rt_info


@pytest.fixture(scope="module")
def openvino_ir(model, exported):
    pytest.importorskip("openvino")
    from ssdlite.deploy.export.openvino import export_openvino

    with mock.patch.dict(os.environ, {"CI": "true"}):  # no telemetry wait (see tests/deploy/test_export_openvino.py)
        return export_openvino(model, exported["network"].with_name("model.xml"), ExportOptions(**NAMES),
                               network_onnx=exported["network"])


def with_rt_info(source: Path, target: Path, **values: str) -> Path:
    import openvino as ov

    model = ov.Core().read_model(str(source))
    for key, value in values.items():
        model.set_rt_info(value, ["ssdlite", key])
    ov.save_model(model, str(target), compress_to_fp16=False)
    return target


def test_openvino_rt_info_of_the_wrong_type_is_one_line_naming_the_file_and_the_key(openvino_ir, image, tmp_path,
                                                                                    capsys):
    path = with_rt_info(openvino_ir, tmp_path / "model.xml", class_names="5")
    assert_one_line_naming(*run_detect(path, image, capsys), path, "class_names", HOSTILE["class_names"][1])


def test_openvino_rt_info_of_another_class_count_is_an_error_naming_both(openvino_ir, image, tmp_path, capsys):
    path = with_rt_info(openvino_ir, tmp_path / "model.xml", class_names=json.dumps(["a", "b", "c"]),
                        category_ids="[1, 2, 3]")
    status, stderr = run_detect(path, image, capsys)
    assert_one_line_naming(status, stderr, path, "class_names", "lists 3 classes but the graph has 4")


# -- ncnn: the metadata is the JSON beside the .ncnn.param, read before ncnn parses the model


def test_an_ncnn_sidecar_of_the_wrong_type_is_one_line_naming_it_and_the_key(model, image, tmp_path, capsys):
    pytest.importorskip("ncnn")
    param = tmp_path / "model.ncnn.param"
    param.write_text("7767517\n")  # never parsed: the metadata fails first
    (tmp_path / "model.ncnn.bin").write_bytes(b"\0" * 16)
    sidecar = tmp_path / "model.ncnn.json"
    metadata = model_metadata(model, **NAMES)
    for key, value in {"feature_sizes": "7", "class_names": 5}.items():
        sidecar.write_text(json.dumps({**metadata, key: value}))
        status, stderr = run_detect(param, image, capsys)
        assert_one_line_naming(status, stderr, sidecar, key, f"is {value}, not a JSON list")


# -- what a graph returns at run time, for formats whose shapes say nothing at load (TFLite, a backend of one's own)


class _FixedOutputs(Backend):
    name = "fixed"

    def __init__(self, outputs):
        boxes = np.tile(np.array([[0.5, 0.5, 0.2, 0.2]], np.float32), (6, 1))
        super().__init__(ModelInfo(["a", "b"], [1, 2], 32, mean=(0, 0, 0), scale=(1, 1, 1), default_boxes=boxes,
                                   variances=(0.1, 0.2)))
        self.outputs = outputs
        self.path = Path("fixed.model")

    def run(self, batch):
        return self.outputs


def fixed_predictor(monkeypatch, outputs) -> Predictor:
    monkeypatch.setitem(backend_registry._BACKENDS, "fixed", lambda source, *, device: _FixedOutputs(outputs))
    return Predictor("fixed.model", backend="fixed")


def test_a_label_beyond_the_metadata_classes_is_an_error_naming_both(monkeypatch):
    detections = {"boxes": np.array([[0.1, 0.1, 0.5, 0.5]], np.float32), "scores": np.array([0.9], np.float32),
                  "labels": np.array([3])}
    predictor = fixed_predictor(monkeypatch, [detections])
    with pytest.raises(ValueError, match=r"^fixed\.model: ssdlite metadata 'class_names' lists 2 classes \(labels 1 "
                                         r"to 2\) but the graph returned label 3"):
        predictor.predict(np.zeros((32, 32, 3), np.uint8))


def test_raw_outputs_of_another_class_count_are_an_error_naming_both(monkeypatch):
    outputs = RawOutputs(np.zeros((1, 6, 5), np.float32), np.zeros((1, 6, 4), np.float32))
    predictor = fixed_predictor(monkeypatch, outputs)
    with pytest.raises(ValueError, match=r"^fixed\.model: ssdlite metadata 'class_names' lists 2 classes but the "
                                         r"graph has 4 \(its output cls_logits is \[1, 6, 5\]"):
        predictor.predict(np.zeros((32, 32, 3), np.uint8))
