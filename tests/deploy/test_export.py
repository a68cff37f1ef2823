"""ONNX (with and without NMS in the graph) and TorchScript exports give the eager model's detections.

The model is the tiny SSDLite overfit on two scenes (tests/deploy/tiny_detector.py); images are those scenes, at
their own size and resized to other sizes (so the rescale to original pixels is exercised).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from ssdlite.core.postprocess import postprocess_detections
from ssdlite.deploy.export import ONNX_OPSET, export_model
from ssdlite.deploy.metadata import INPUT_SCALING
from ssdlite_runtime.predictor import Predictor
from ssdlite_runtime.preprocess import preprocess_images
from tests.deploy import tiny_detector as tiny

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("deploy_export")]  # exports a model

SCORE_THRESHOLD = 0.05


def sample_images() -> list[np.ndarray]:
    scenes = tiny.scene_images()
    return [*scenes, cv2.resize(scenes[0], (200, 150)), cv2.resize(scenes[1], (96, 240))]


def eager_detections(images: list[np.ndarray]) -> list[dict]:
    predictor = Predictor(tiny.overfit_tiny_detector(), score_threshold=SCORE_THRESHOLD)
    return predictor.predict(images)


def assert_same_detections(actual: list[dict], expected: list[dict], *, box_atol: float = 1e-3) -> None:
    assert len(actual) == len(expected)
    for ours, theirs in zip(actual, expected):
        assert len(ours["scores"]) == len(theirs["scores"]) > 0
        np.testing.assert_array_equal(ours["labels"], theirs["labels"])
        np.testing.assert_allclose(ours["scores"], theirs["scores"], rtol=0, atol=1e-4)
        np.testing.assert_allclose(ours["boxes"], theirs["boxes"], rtol=0, atol=box_atol)


@pytest.mark.parametrize("kind", ["onnx_nms", "onnx_raw"])
def test_onnx_gives_the_eager_detections(kind):
    images = sample_images()
    predictor = Predictor(tiny.exported_file(kind), backend="ort", score_threshold=SCORE_THRESHOLD)
    assert predictor.backend.with_nms == (kind == "onnx_nms")
    assert predictor.class_names == tiny.CLASS_NAMES and predictor.category_ids == tiny.CATEGORY_IDS
    assert predictor.image_size == tiny.IMAGE_SIZE
    assert_same_detections(predictor.predict(images), eager_detections(images))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_torchscript_gives_the_eager_detections():
    images = sample_images()
    extra = {"ssdlite.json": ""}
    network = torch.jit.load(str(tiny.exported_file("torchscript")), _extra_files=extra)
    metadata = json.loads(extra["ssdlite.json"])
    assert json.loads(metadata["class_names"]) == tiny.CLASS_NAMES
    batch = torch.from_numpy(preprocess_images(images, int(metadata["input_size"]), channels_last=False, **INPUT_SCALING))
    with torch.inference_mode():
        cls_logits, box_deltas = network(batch)  # traced at batch 1, runs a batch of 4
        results = postprocess_detections(
            cls_logits,
            box_deltas,
            tiny.overfit_tiny_detector().anchors,
            torch.tensor([image.shape[:2] for image in images]),
            score_threshold=SCORE_THRESHOLD,
            topk_per_class=100,
            max_detections=100,
        )
    detections = [{key: value.numpy() for key, value in result.items()} for result in results]
    assert_same_detections(detections, eager_detections(images))


def test_onnx_file_is_usable_alone_from_its_metadata():
    """Only onnxruntime, numpy and cv2: preprocessing constants, class names and output layout come from the file."""
    path = tiny.exported_file("onnx_nms")
    model = onnx.load(str(path))
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert model.opset_import[0].version == ONNX_OPSET >= 17
    assert metadata["color_order"] == "RGB" and json.loads(metadata["with_nms"]) is True
    for key in ("input_size", "mean", "scale", "box_format", "output_layout", "score_threshold", "nms_iou"):
        assert metadata[key]
    all_ops = {node.op_type for node in model.graph.node} | {
        node.op_type for node in model.graph.node if node.op_type == "If" for attribute in node.attribute
        for node in attribute.g.node
    }
    assert "NonMaxSuppression" in all_ops

    size = int(metadata["input_size"])
    mean, scale = np.array(json.loads(metadata["mean"])), np.array(json.loads(metadata["scale"]))
    class_names = json.loads(metadata["class_names"])
    images = sample_images()
    batch = np.stack(
        [((cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR) - mean) * scale).transpose(2, 0, 1)
         for image in images]
    ).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    threshold = np.array([SCORE_THRESHOLD], np.float32)
    boxes, scores, labels, counts = session.run(None, {"images": batch, "score_threshold": threshold})
    assert boxes.shape[:2] == scores.shape == labels.shape and counts.shape == (len(images),)
    expected = eager_detections(images)
    for index, (image, reference) in enumerate(zip(images, expected)):
        count = int(counts[index])
        height, width = image.shape[:2]
        pixels = boxes[index, :count] * np.array([width, height, width, height], np.float32)
        np.testing.assert_allclose(pixels, reference["boxes"], rtol=0, atol=1e-3)
        assert [class_names[label - 1] for label in labels[index, :count]] == [
            tiny.CLASS_NAMES[label - 1] for label in reference["labels"]
        ]


def test_fixed_batch_onnx_runs_a_list_of_images_one_by_one():
    path = tiny.exported_file("onnx_raw")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == 1
    predictor = Predictor(path, backend="ort", score_threshold=SCORE_THRESHOLD, batch_size=4)
    assert len(predictor.predict(sample_images())) == 4


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(format="torchscript", with_nms=True), "apply to ONNX, .* only; TorchScript files hold the raw network"),
        (dict(format="onnx", int8=True), "calibration images"),
        (dict(format="nosuch"), "unknown export format 'nosuch'"),
    ],
)
def test_export_options_that_do_not_apply_are_clear_errors(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        export_model(tiny.overfit_tiny_detector(), tmp_path / "model.out", **options)
