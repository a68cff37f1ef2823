"""Each detection setting has one definition, and every path uses it: validation (``ssdlite.engine.evaluate``), the
exported ONNX graph (its metadata and its behaviour), the Predictor and the deployed-model evaluation.

The settings: the postprocessing (``ssdlite.core.postprocess.PostprocessSettings``, torchvision's SSDLite defaults for
evaluation), the box-coding variances (``ssdlite.core.box_coder.VARIANCES``) and the input scaling
(``ssdlite.core.normalization``).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import FrozenInstanceError, asdict

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from torchvision.models.detection import ssdlite320_mobilenet_v3_large

from ssdlite.core.box_coder import VARIANCES, decode, encode
from ssdlite.core.loss import MultiBoxLoss
from ssdlite.core.normalization import PIXEL_LOOKUP, PIXEL_MEAN, PIXEL_STD, normalize_pixels
from ssdlite.core.postprocess import EVALUATION_POSTPROCESS, PostprocessSettings, postprocess_detections
from ssdlite.data.transforms import eval_transforms
from ssdlite.deploy.evaluate import EVALUATION_SETTINGS
from ssdlite.deploy.metadata import INPUT_SCALING
from ssdlite.engine import evaluate as engine_evaluate
from ssdlite_runtime import predictor as runtime_predictor
from ssdlite_runtime.metadata import ModelInfo, setting_inputs
from ssdlite_runtime.predictor import DISPLAY_POSTPROCESS, DISPLAY_SCORE_THRESHOLD, Predictor
from ssdlite_runtime.preprocess import preprocess_images
from tests.deploy import tiny_detector as tiny

pytestmark = pytest.mark.xdist_group("deploy_export")

SHOWN = 0.05
"""Detections compared one by one score above this (below it, the order of near-equal scores is up to the runtime)."""


def test_evaluation_settings_are_torchvisions_ssdlite_defaults():
    reference = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3)
    assert EVALUATION_POSTPROCESS == PostprocessSettings() == PostprocessSettings(
        score_threshold=reference.score_thresh,
        nms_iou=reference.nms_thresh,
        topk_per_class=reference.topk_candidates,
        max_detections=reference.detections_per_img,
    )
    assert (EVALUATION_POSTPROCESS.score_threshold, EVALUATION_POSTPROCESS.max_detections) == (0.001, 300)
    # torchvision scales [0, 1] pixels with mean 0.5, std 0.5: ours in 0..255 units
    assert reference.transform.image_mean == [PIXEL_MEAN / 255] * 3
    assert reference.transform.image_std == [PIXEL_STD / 255] * 3
    # its BoxCoder weights are the reciprocal variances
    assert reference.box_coder.weights == (1 / VARIANCES[0], 1 / VARIANCES[0], 1 / VARIANCES[1], 1 / VARIANCES[1])


def test_settings_validate_themselves():
    for bad, message in (
        (dict(score_threshold=1.5), "score_threshold must be in"),
        (dict(nms_iou=-0.1), "nms_iou must be in"),
        (dict(topk_per_class=0), "topk_per_class must be an integer >= 1"),
        (dict(max_detections=2.5), "max_detections must be an integer >= 1"),
    ):
        with pytest.raises(ValueError, match=message):
            PostprocessSettings(**bad)
    with pytest.raises(FrozenInstanceError):
        EVALUATION_POSTPROCESS.score_threshold = 0.5  # type: ignore[misc]


def test_every_default_is_read_from_the_one_definition():
    postprocess_defaults = inspect.signature(postprocess_detections).parameters
    assert {name: postprocess_defaults[name].default for name in EVALUATION_SETTINGS} == asdict(EVALUATION_POSTPROCESS)
    assert postprocess_defaults["variances"].default == VARIANCES
    for function in (encode, decode):
        assert inspect.signature(function).parameters["variances"].default == VARIANCES
    assert MultiBoxLoss().variances == VARIANCES
    for function in (engine_evaluate.detect_batch, engine_evaluate.batch_coco_results, engine_evaluate.dataset_coco_results):
        assert inspect.signature(function).parameters["settings"].default == EVALUATION_POSTPROCESS
    assert EVALUATION_SETTINGS == asdict(EVALUATION_POSTPROCESS)
    predictor_defaults = inspect.signature(runtime_predictor.Predictor).parameters
    assert {name: predictor_defaults[name].default for name in EVALUATION_SETTINGS} == asdict(DISPLAY_POSTPROCESS)
    assert DISPLAY_POSTPROCESS.score_threshold == DISPLAY_SCORE_THRESHOLD == 0.4
    assert DISPLAY_POSTPROCESS.nms_iou == EVALUATION_POSTPROCESS.nms_iou


@pytest.mark.slow  # exports a model
def test_the_input_scaling_is_the_same_in_training_deployment_and_the_exported_metadata():
    image = cv2.resize(tiny.scene_images()[0], (200, 150))
    sample = {"image": image, "boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64),
              "image_id": 1, "orig_size": image.shape[:2]}
    training = eval_transforms(tiny.IMAGE_SIZE)(sample)["image"].numpy()
    [deployed] = preprocess_images([image], tiny.IMAGE_SIZE, channels_last=False, **INPUT_SCALING)
    [deployed_nhwc] = preprocess_images([image], tiny.IMAGE_SIZE, channels_last=True, **INPUT_SCALING)
    np.testing.assert_array_equal(deployed, training)  # bit for bit
    np.testing.assert_array_equal(deployed_nhwc, training)
    np.testing.assert_array_equal(PIXEL_LOOKUP, normalize_pixels(np.arange(256, dtype=np.uint8)))
    np.testing.assert_array_equal(
        PIXEL_LOOKUP, (torch.arange(256, dtype=torch.uint8).float() / 127.5 - 1.0).numpy()
    )
    metadata = exported_metadata("onnx_nms")
    mean, scale = np.array(json.loads(metadata["mean"])), np.array(json.loads(metadata["scale"]))
    np.testing.assert_array_equal(mean, [PIXEL_MEAN] * 3)
    np.testing.assert_array_equal(scale, [1 / PIXEL_STD] * 3)
    info = ModelInfo.from_metadata(metadata, source="onnx_nms.onnx")  # what the runtime reads from the file
    [from_the_file] = preprocess_images([image], tiny.IMAGE_SIZE, mean=info.mean, scale=info.scale, channels_last=False)
    np.testing.assert_array_equal(from_the_file, training)  # bit for bit, from the stored mean and scale
    resized = cv2.resize(image, (tiny.IMAGE_SIZE, tiny.IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(((resized - mean) * scale).transpose(2, 0, 1), training, rtol=0, atol=1e-6)


def exported_metadata(kind: str) -> dict[str, str]:
    model = onnx.load(str(tiny.exported_file(kind)), load_external_data=False)
    return {prop.key: prop.value for prop in model.metadata_props}


@pytest.mark.slow  # exports a model
def test_the_exported_graph_stores_the_evaluation_settings_and_variances():
    for kind in ("onnx_nms", "onnx_raw"):
        metadata = exported_metadata(kind)
        assert json.loads(metadata["variances"]) == list(VARIANCES)
        stored = PostprocessSettings(
            score_threshold=float(metadata["score_threshold"]),
            nms_iou=float(metadata["nms_iou"]),
            topk_per_class=int(metadata["topk_per_class"]),
            max_detections=int(metadata["max_detections"]),
        )
        assert stored == EVALUATION_POSTPROCESS
    graph = onnx.load(str(tiny.exported_file("onnx_nms"))).graph
    initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    for name, value in setting_inputs(EVALUATION_POSTPROCESS).items():
        np.testing.assert_array_equal(initializers[name], value)
        assert initializers[name].dtype == value.dtype


def evaluation_batch(images: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """What validation feeds the model: the evaluation transform's images and the original sizes."""
    transform = eval_transforms(tiny.IMAGE_SIZE)
    samples = [
        transform({"image": image, "boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64),
                   "image_id": index, "orig_size": image.shape[:2]})
        for index, image in enumerate(images)
    ]
    return torch.stack([sample["image"] for sample in samples]), torch.tensor([image.shape[:2] for image in images])


def shown(detections: dict) -> dict[str, np.ndarray]:
    as_numpy = {key: np.asarray(value) for key, value in detections.items()}
    return {key: value[as_numpy["scores"] > SHOWN] for key, value in as_numpy.items()}


def assert_same(ours: list[dict], theirs: list[dict]) -> None:
    assert len(ours) == len(theirs)
    for mine, reference in zip(map(shown, ours), map(shown, theirs)):
        assert len(mine["scores"]) > 0
        np.testing.assert_array_equal(mine["labels"], reference["labels"])
        np.testing.assert_allclose(mine["scores"], reference["scores"], rtol=0, atol=1e-4)
        np.testing.assert_allclose(mine["boxes"], reference["boxes"], rtol=0, atol=1e-2)


@pytest.mark.slow  # exports a model
def test_graph_defaults_evaluator_and_predictor_give_the_same_detections():
    """The graph run with its stored defaults = the graph fed the evaluation settings = validation's detections =
    the Predictor (eager and ONNX Runtime) given the deployed-evaluation settings."""
    images = [*tiny.scene_images(), cv2.resize(tiny.scene_images()[0], (200, 150))]
    batch, sizes = evaluation_batch(images)
    validation = engine_evaluate.detect_batch(tiny.overfit_tiny_detector(), batch, sizes)

    session = ort.InferenceSession(str(tiny.exported_file("onnx_nms")), providers=["CPUExecutionProvider"])
    by_default = session.run(None, {"images": batch.numpy()})
    fed = session.run(None, {"images": batch.numpy(), **setting_inputs(EVALUATION_POSTPROCESS)})
    for default_output, fed_output in zip(by_default, fed):
        np.testing.assert_array_equal(default_output, fed_output)
    boxes, scores, labels, counts = by_default
    in_graph = [
        {"boxes": boxes[i, :count] * np.array([w, h, w, h], np.float32), "scores": scores[i, :count],
         "labels": labels[i, :count]}
        for i, (count, (h, w)) in enumerate(zip(counts.tolist(), sizes.tolist()))
    ]
    assert_same(in_graph, validation)

    for model, backend in ((tiny.overfit_tiny_detector(), "eager"), (tiny.exported_file("onnx_nms"), "ort")):
        predictor = Predictor(model, backend=backend, **EVALUATION_SETTINGS)
        assert predictor.postprocess == EVALUATION_POSTPROCESS
        assert_same(predictor.predict(images), validation)
