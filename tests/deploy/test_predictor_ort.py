"""The Predictor's ONNX Runtime and INT8 backends: detections, settings, input checks and file errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torchvision.ops import box_iou

from ssdlite.deploy.model_files import export_for_predictor
from ssdlite_runtime.backends.base import available_backends
from ssdlite_runtime.predictor import Predictor
from tests.deploy import tiny_detector as tiny

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("deploy_export")]  # exports a model


def test_ort_and_int8_are_registered():
    assert {"eager", "ort", "int8"} <= set(available_backends())


def test_int8_finds_the_objects_of_the_overfit_model():
    _, path = tiny.exported_for_predictor("int8")  # the INT8 file of the test below
    model = onnx.load(str(path))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert metadata["quantization"].startswith("int8 static")
    predictor = Predictor(path, backend="int8", score_threshold=0.3)
    assert "INT8" in predictor.describe()
    for (boxes, labels), detections in zip(tiny.scene_targets(), predictor.predict(tiny.scene_images())):
        top = slice(0, len(labels))  # the most confident detections, one per object, are the objects
        iou = box_iou(torch.from_numpy(boxes), torch.from_numpy(detections["boxes"][top]))
        best_iou, best = iou.max(dim=1)
        # found = the detection match of COCO/VOC (IoU >= 0.5); INT8 boxes are ~0.7-0.9 IoU and vary with the
        # ONNX Runtime release (0.68 seen with 1.30), so 0.7 would test the release, not the export
        assert (best_iou >= 0.5).all(), f"IoU {best_iou.tolist()}"
        assert (detections["labels"][top][best.numpy()] == labels).all()
        assert len(set(best.tolist())) == len(labels)


def test_export_for_predictor_quantizes_a_model_for_int8():
    """``export_for_predictor(model, "int8", out_dir, calibration_images=..., class_names=...)``, made once per run
    (tests/deploy/tiny_detector.py) and shared with the test above: one INT8 export, not two."""
    out_dir, path = tiny.exported_for_predictor("int8")
    assert path == out_dir / "model.int8.onnx" and path.is_file()
    predictor = Predictor(path, backend="int8", score_threshold=0.3)
    assert predictor.class_names == tiny.CLASS_NAMES
    assert [len(result["scores"]) for result in predictor.predict(tiny.scene_images())] == [3, 2]


def test_export_for_predictor_exports_a_checkpoint_for_ort():
    """``export_for_predictor(checkpoint, "ort", out_dir)``, made once per run (tests/deploy/tiny_detector.py; the
    suite's "onnx_nms" file is a copy of it)."""
    out_dir, path = tiny.exported_for_predictor("ort")
    assert path == out_dir / "model.onnx"
    images = tiny.scene_images()
    ort = Predictor(path, backend="ort", score_threshold=0.3)
    eager = Predictor(tiny.checkpoint_file(), score_threshold=0.3)
    assert ort.category_ids == eager.category_ids == tiny.CATEGORY_IDS
    for ours, theirs in zip(ort.predict(images), eager.predict(images)):
        np.testing.assert_array_equal(ours["labels"], theirs["labels"])
        np.testing.assert_allclose(ours["boxes"], theirs["boxes"], atol=1e-3)


def test_predictor_settings_reach_the_graph():
    """Score threshold, max detections and the class filter act exactly as with the eager backend."""
    images = tiny.scene_images()
    for settings in (dict(score_threshold=0.97), dict(score_threshold=0.01, max_detections=2), dict(classes=["disc"])):
        eager = Predictor(tiny.overfit_tiny_detector(), class_names=tiny.CLASS_NAMES, **settings).predict(images)
        ort = Predictor(tiny.exported_file("onnx_nms"), backend="ort", **settings).predict(images)
        for ours, theirs in zip(ort, eager):
            np.testing.assert_array_equal(ours["labels"], theirs["labels"])
            np.testing.assert_allclose(ours["boxes"], theirs["boxes"], atol=1e-3)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((64, 64, 3), np.float32), "dtype float32; expected uint8 RGB"),
        (np.zeros((64, 64), np.uint8), "grayscale"),
        (np.zeros((3, 64, 64), np.uint8), "channels first"),
        (np.zeros((64, 64, 4), np.uint8), "RGBA"),
        ([[1, 2, 3]], "is a list; expected a numpy uint8 RGB array"),
    ],
)
def test_wrong_images_are_rejected_clearly(image, message):
    predictor = Predictor(tiny.exported_file("onnx_nms"), backend="ort")
    with pytest.raises(ValueError, match=message):
        predictor.predict([image])


def test_corrupt_and_foreign_onnx_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        Predictor(tmp_path / "missing.onnx", backend="ort")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(ValueError, match=r"corrupt\.onnx is not a valid ONNX model .*tools/export.py"):
        Predictor(corrupt, backend="ort")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(tiny.exported_file("onnx_nms").read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"truncated\.onnx is not a valid ONNX model"):
        Predictor(truncated, backend="ort")
    foreign = tmp_path / "foreign.onnx"
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "foreign",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), str(foreign))
    with pytest.raises(ValueError, match=r"foreign\.onnx is an ONNX model but not one exported by ssdlite"):
        Predictor(foreign, backend="ort")


def test_backend_mismatches_are_clear_errors():
    with pytest.raises(ValueError, match=r"onnx_nms\.onnx is a float ONNX model; .* --int8 --calib"):
        Predictor(tiny.exported_file("onnx_nms"), backend="int8")
    with pytest.raises(ValueError, match="reads an .onnx file, got a SSDLite; .*export_for_predictor"):
        Predictor(tiny.overfit_tiny_detector(), backend="int8")
    with pytest.raises(ValueError, match="needs calibration_images"):
        export_for_predictor(tiny.overfit_tiny_detector(), "int8", "never_written")
    with pytest.raises(ValueError, match="no export for backend 'openvino' here"):
        export_for_predictor(tiny.overfit_tiny_detector(), "openvino", "never_written")
    with pytest.raises(ValueError, match="runs on the CPU"):
        Predictor(tiny.exported_file("onnx_nms"), backend="ort", device="cuda")
