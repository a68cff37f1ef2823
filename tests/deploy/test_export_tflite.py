"""The "tflite" export format and the "tflite" backend: LiteRT's conversion of the tiny detector, with decoding and
NMS as plain tensor ops inside, gives the eager model's detections (same count at score >= 0.3, boxes within 1 px)
on the generated scenes and on the raccoon photos of ../shared/data/raccoon; its tensors have the layout of
TensorFlow's detection models (what Android reads); the INT8 file (network full-integer, postprocessing float)
finds the float file's objects; every metadata key travels in the flatbuffer.

One float export and one INT8 export (quantizing that float file) per test session: :func:`exported_tflite`, also
used by tests/runtime/test_tflite_without_torch.py (same xdist group, so one worker converts). The tests that need
them are marked slow: the conversion alone takes minutes on the suite's loaded 2 cores.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from ssdlite.core.postprocess import EVALUATION_POSTPROCESS, postprocess_detections
from ssdlite.deploy.export import export_model
from ssdlite.deploy.export.base import inference_network
from ssdlite.deploy.export.tflite_postprocess import NMS_SWEEPS, DetectionGraph
from ssdlite.deploy.metadata import model_metadata
from ssdlite_runtime.backends.base import backend_for_path
from ssdlite_runtime.image_io import read_image
from ssdlite_runtime.metadata import INPUT_NAME
from ssdlite_runtime.predictor import Predictor
from ssdlite_runtime.preprocess import preprocess_images
from tests.deploy import tiny_detector as tiny

pytestmark = pytest.mark.xdist_group("tflite")

RACCOON = Path(__file__).resolve().parents[3] / "shared" / "data" / "raccoon" / "JPEGImages"
SETTINGS = {"score_threshold": 0.3, "max_detections": 300}
"""Every detection at >= 0.3 (no cut at 100, where a tie could make two runtimes keep different last boxes)."""
NAMES = {"class_names": tiny.CLASS_NAMES, "category_ids": tiny.CATEGORY_IDS}
EXPORTS = pytest.mark.slow
"""On the tests that need the exported files: the LiteRT conversion took 2.5 minutes on the 2 loaded cores where
the suite is timed (the INT8 quantization of that file 5 s more)."""
INT8_BOX_PX = 3.0
"""INT8 vs float boxes, pixels of the 128 px scenes: measured up to 1.45 px (the scores within 0.03)."""


@functools.cache
def exported_tflite(kind: str) -> Path:
    """The tiny detector as "float" (``export_model(format="tflite")``) or "int8" (that float file quantized,
    calibrated on the scenes) ``.tflite``, once per process."""
    pytest.importorskip("litert_torch")
    from ssdlite.deploy.export.tflite import export_tflite

    model = tiny.overfit_tiny_detector()
    if kind == "float":
        return export_model(model, tiny.scratch_dir() / "model.tflite", format="tflite", **NAMES)
    pytest.importorskip("ai_edge_quantizer")
    return export_tflite(model, tiny.scratch_dir() / "model_int8.tflite", calibration_images=tiny.calibration_folder(),
                         float_tflite=exported_tflite("float"), **NAMES)


def sample_images() -> list[np.ndarray]:
    import cv2

    scenes = tiny.scene_images()
    return [*scenes, cv2.resize(scenes[0], (200, 150)), cv2.resize(scenes[1], (96, 240))]


def assert_same_objects(got_predictor, expected_predictor, images, *, box_px: float = 1.0) -> int:
    """Same number of detections per image, and each expected box found with its label within ``box_px``."""
    found = 0
    for index, image in enumerate(images):
        [got], [expected] = got_predictor.predict(image), expected_predictor.predict(image)
        assert len(got["boxes"]) == len(expected["boxes"]), index
        # Match box by box (scores may tie to many digits, so the order may differ).
        for box, label in zip(expected["boxes"], expected["labels"]):
            close = np.abs(got["boxes"] - box).max(axis=1) <= box_px
            assert (close & (got["labels"] == label)).any(), (index, box, got)
        found += len(expected["boxes"])
    assert found > 0  # the comparison compared something
    return found


def eager_predictor():
    return Predictor(tiny.overfit_tiny_detector(), backend="eager", **NAMES, **SETTINGS)


def test_the_graph_postprocessing_is_the_core_postprocessing():
    """The torch module that is converted (no conversion here): at the evaluation settings (score > 0.001, 300
    detections) it gives exactly ``postprocess_detections``'s detections, and NMS converges in far fewer sweeps."""
    model = tiny.overfit_tiny_detector()
    network = inference_network(model)
    graph = DetectionGraph(network, model.anchors, model.num_classes, EVALUATION_POSTPROCESS).eval()
    batch = preprocess_images(sample_images()[:2], tiny.IMAGE_SIZE, mean=(127.5,) * 3, scale=(1 / 127.5,) * 3,
                              channels_last=False)
    for image in torch.from_numpy(batch).split(1):
        with torch.no_grad():
            outputs = graph(image.permute(0, 2, 3, 1))
            [expected] = postprocess_detections(*network(image), model.anchors, torch.tensor([[1, 1]]))
        count = int(outputs["num_detections"])
        assert count == len(expected["scores"]) > 10
        torch.testing.assert_close(outputs["detection_scores"][0, :count], expected["scores"], rtol=0, atol=1e-6)
        torch.testing.assert_close(outputs["detection_boxes"][0, :count][:, [1, 0, 3, 2]], expected["boxes"],
                                   rtol=0, atol=1e-6)
        torch.testing.assert_close(outputs["detection_classes"][0, :count].long() + 1, expected["labels"])
        assert not outputs["detection_scores"][0, count:].any() and not outputs["detection_boxes"][0, count:].any()
        assert graph.sweeps_needed(image.permute(0, 2, 3, 1)) < NMS_SWEEPS // 2


@EXPORTS
def test_the_file_has_the_android_detection_layout_and_every_metadata_key():
    from ai_edge_litert.interpreter import Interpreter

    from ssdlite_runtime.backends.tflite import OUTPUT_NAMES, read_tflite_metadata

    path = exported_tflite("float")
    assert backend_for_path(path) == "tflite"
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    [image] = interpreter.get_input_details()
    assert INPUT_NAME in image["name"] and image["dtype"] == np.float32
    assert image["shape"].tolist() == [1, tiny.IMAGE_SIZE, tiny.IMAGE_SIZE, 3]  # NHWC
    outputs = interpreter.get_output_details()
    detections = EVALUATION_POSTPROCESS.max_detections
    assert [name for name in OUTPUT_NAMES if name in outputs[OUTPUT_NAMES.index(name)]["name"]] == list(OUTPUT_NAMES)
    assert [output["shape"].tolist() for output in outputs] == [[1, detections, 4], [1, detections], [1, detections], [1]]
    assert all(output["dtype"] == np.float32 for output in outputs)
    assert interpreter.get_signature_list() == {"serving_default": {"inputs": [INPUT_NAME],
                                                                    "outputs": list(OUTPUT_NAMES)}}
    metadata = read_tflite_metadata(path)
    expected = model_metadata(tiny.overfit_tiny_detector(), postprocess=EVALUATION_POSTPROCESS, **NAMES)
    assert set(expected) <= set(metadata)
    changed = {key for key in expected if metadata[key] != expected[key]}
    assert changed == {"input_layout", "box_format", "output_layout"}  # TFLite's layout, in words
    assert "NHWC" in metadata["input_layout"] and "ymin" in metadata["box_format"]


@EXPORTS
def test_the_float_file_gives_the_eager_detections_on_the_scenes():
    predictor = Predictor(exported_tflite("float"), threads=1, **SETTINGS)
    assert predictor.class_names == tiny.CLASS_NAMES and predictor.category_ids == tiny.CATEGORY_IDS
    assert "LiteRT" in predictor.describe() and predictor.backend.threads == 1
    assert assert_same_objects(predictor, eager_predictor(), sample_images()) >= 10


@EXPORTS
def test_the_float_file_gives_the_eager_detections_on_the_raccoon_photos():
    photos = sorted(RACCOON.glob("*.jpg"))[:6]
    if not photos:
        pytest.skip(f"{RACCOON} is absent")
    predictor = Predictor(exported_tflite("float"), threads=2, **SETTINGS)  # two threads: the detection op's trap
    assert assert_same_objects(predictor, eager_predictor(), [read_image(photo) for photo in photos]) >= 6


@EXPORTS
def test_the_int8_file_finds_the_float_files_objects():
    from ai_edge_litert.interpreter import Interpreter

    from ssdlite_runtime.backends.tflite import read_tflite_metadata

    path = exported_tflite("int8")
    quantization = read_tflite_metadata(path)["quantization"]
    assert "static_wi8_ai8" in quantization and "calibrated on 4 images" in quantization, quantization
    assert path.stat().st_size < 0.6 * exported_tflite("float").stat().st_size
    interpreter = Interpreter(model_path=str(path))
    types = [tensor["dtype"] for tensor in interpreter.get_tensor_details()]
    assert types.count(np.int8) > 100  # the network's activations and weights, not a dynamic-range file
    int8 = Predictor(path, threads=1, **SETTINGS)
    assert "INT8" in int8.describe()
    float32 = Predictor(exported_tflite("float"), threads=1, **SETTINGS)
    assert assert_same_objects(int8, float32, sample_images(), box_px=INT8_BOX_PX) >= 10


@EXPORTS
def test_baked_settings_the_file_cannot_apply_are_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="ssdlite_runtime.backends.tflite"):
        Predictor(exported_tflite("float"), threads=1)  # display settings: within what the file does
        assert not caplog.records
        predictor = Predictor(exported_tflite("float"), threads=1, nms_iou=0.3, max_detections=2,
                              score_threshold=0.05)
    [record] = caplog.records
    assert "NMS IoU 0.3" in record.message and "model.tflite" in record.message
    [detections] = predictor.predict(tiny.scene_images()[0])
    assert len(detections["scores"]) == 2  # max_detections is applied (the scene has 3 objects)


def test_options_tflite_does_not_take_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="--dynamic-batch apply to ONNX.*TFLite files take one image"):
        export_model(tiny.overfit_tiny_detector(), tmp_path / "m.tflite", format="tflite", dynamic_batch=True)
    with pytest.raises(ValueError, match="needs calibration images"):
        export_model(tiny.overfit_tiny_detector(), tmp_path / "m.tflite", format="tflite", int8=True)


@EXPORTS
def test_a_failing_full_integer_quantization_falls_back_to_dynamic_range_with_a_warning(monkeypatch):
    from ai_edge_quantizer import quantizer

    from ssdlite.deploy.export.tflite import quantize_tflite

    def fail(self, *args, **kwargs):
        raise RuntimeError("calibration\nfailed")

    monkeypatch.setattr(quantizer.Quantizer, "calibrate", fail)
    with pytest.warns(UserWarning, match="full-integer INT8 quantization failed \\(calibration failed\\); falling back"):
        content, description = quantize_tflite(exported_tflite("float"), tiny.calibration_folder(),
                                               image_size=tiny.IMAGE_SIZE)
    assert description.startswith("int8 dynamic-range") and len(content) < exported_tflite("float").stat().st_size
