"""The "coreml" export format: an ML Program + Apple NonMaximumSuppression pipeline. Core ML cannot run on Linux,
so the saved spec is checked (image input, the outputs Vision reads, the NMS settings, the metadata), the decoding
in front of Apple's NMS is checked against the eager postprocessing in torch, and a Core ML file given to the
Predictor is a one-line error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms

from ssdlite.core.postprocess import EVALUATION_POSTPROCESS, PostprocessSettings, postprocess_detections
from ssdlite.deploy.export import export_model
from ssdlite.deploy.export.base import inference_network
from ssdlite.deploy.export.coreml import CONFIDENCE, COORDINATES, IMAGE_INPUT, CoreMLDecoder
from ssdlite.deploy.metadata import model_metadata
from ssdlite_runtime import predictor as runtime
from ssdlite_runtime.predictor import Predictor
from tests.tools.test_detect import CATEGORY_IDS, CLASS_NAMES, draw_scene, tiny_detector

ct = pytest.importorskip("coremltools")

pytestmark = pytest.mark.slow  # exports a model (torch.export, a converter)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = tiny_detector()
    path = export_model(model, tmp_path_factory.mktemp("coreml") / "model.mlpackage", format="coreml",
                        class_names=CLASS_NAMES, category_ids=CATEGORY_IDS)
    return model, path, ct.models.MLModel(str(path), skip_model_load=True).get_spec()


def test_the_file_is_an_ml_program_followed_by_apple_nms(exported):
    _, path, spec = exported
    assert path.is_dir() and (path / "Manifest.json").is_file()
    assert spec.WhichOneof("Type") == "pipeline"
    assert [model.WhichOneof("Type") for model in spec.pipeline.models] == ["mlProgram", "nonMaximumSuppression"]


def test_the_input_is_an_rgb_image_of_the_model_size(exported):
    model, _, spec = exported
    image, *thresholds = spec.description.input
    assert image.name == IMAGE_INPUT and image.type.WhichOneof("Type") == "imageType"
    assert (image.type.imageType.width, image.type.imageType.height) == (model.image_size, model.image_size)
    assert image.type.imageType.colorSpace == ct.proto.FeatureTypes_pb2.ImageFeatureType.RGB
    assert [(t.name, t.type.WhichOneof("Type"), t.type.isOptional) for t in thresholds] == [
        ("iouThreshold", "doubleType", True), ("confidenceThreshold", "doubleType", True)]


def test_the_outputs_are_the_confidence_and_coordinates_vision_reads(exported):
    _, _, spec = exported
    outputs = {output.name: output.type.multiArrayType for output in spec.description.output}
    assert list(outputs) == [CONFIDENCE, COORDINATES] == ["confidence", "coordinates"]
    for name, width in ((CONFIDENCE, len(CLASS_NAMES)), (COORDINATES, 4)):
        rows, columns = outputs[name].shapeRange.sizeRanges
        assert (rows.lowerBound, rows.upperBound, columns.lowerBound, columns.upperBound) == (0, -1, width, width)


def test_the_nms_is_class_wise_with_our_settings_and_labels(exported):
    model, _, spec = exported
    network, nms_model = spec.pipeline.models
    nms = nms_model.nonMaximumSuppression
    assert nms.iouThreshold == pytest.approx(EVALUATION_POSTPROCESS.nms_iou)
    assert nms.confidenceThreshold == pytest.approx(EVALUATION_POSTPROCESS.score_threshold)
    assert nms.pickTop.perClass and list(nms.stringClassLabels.vector) == CLASS_NAMES
    network_outputs = {output.name: list(output.type.multiArrayType.shape) for output in network.description.output}
    anchors = len(model.anchors)
    assert network_outputs == {nms.confidenceInputFeatureName: [anchors, len(CLASS_NAMES)],
                               nms.coordinatesInputFeatureName: [anchors, 4]}
    assert (nms.confidenceOutputFeatureName, nms.coordinatesOutputFeatureName) == (CONFIDENCE, COORDINATES)


def test_the_metadata_holds_every_key_with_the_labels_and_size(exported):
    model, _, spec = exported
    metadata = dict(spec.description.metadata.userDefined)
    expected = model_metadata(model, class_names=CLASS_NAMES, category_ids=CATEGORY_IDS,
                              postprocess=EVALUATION_POSTPROCESS)
    assert set(expected) <= set(metadata)
    assert json.loads(metadata["class_names"]) == CLASS_NAMES and json.loads(metadata["category_ids"]) == CATEGORY_IDS
    assert metadata["input_size"] == str(model.image_size) and metadata["with_nms"] == "true"
    assert metadata["default_boxes"] == expected["default_boxes"]
    assert metadata["com.apple.coreml.model.preview.type"] == "objectDetector"


def test_the_decoding_before_apple_nms_gives_the_eager_detections():
    """Apple's NMS (class-wise, score threshold) on the decoder's outputs = ``postprocess_detections``."""
    model = tiny_detector()
    decoder = CoreMLDecoder(inference_network(model), model.anchors).eval()
    images = torch.from_numpy(np.stack([draw_scene(step) for step in (0, 9)])).permute(0, 3, 1, 2).float()
    images = torch.nn.functional.interpolate(images, size=model.image_size, mode="bilinear") / 127.5 - 1
    settings = PostprocessSettings(score_threshold=0.3, topk_per_class=10_000, max_detections=10_000)
    with torch.no_grad():
        outputs = model(images)
        expected = postprocess_detections(outputs["cls_logits"], outputs["box_deltas"], model.anchors,
                                          torch.tensor([[1, 1]] * len(images)), score_threshold=0.3,
                                          topk_per_class=settings.topk_per_class, nms_iou=settings.nms_iou,
                                          max_detections=settings.max_detections)
        for image, reference in zip(images, expected):
            scores, centre_boxes = decoder(image[None])
            boxes = torch.cat([centre_boxes[:, :2] - centre_boxes[:, 2:] / 2,
                               centre_boxes[:, :2] + centre_boxes[:, 2:] / 2], dim=1)
            anchor, label = torch.nonzero(scores > 0.3, as_tuple=True)
            kept = batched_nms(boxes[anchor], scores[anchor, label], label, settings.nms_iou)
            assert len(kept) == len(reference["boxes"]) > 0
            got_boxes, got_labels = boxes[anchor[kept]], label[kept] + 1
            for box, box_label in zip(reference["boxes"], reference["labels"]):  # scores tie: match box by box
                close = (got_boxes - box).abs().amax(dim=1) <= 1e-5
                assert (close & (got_labels == box_label)).any(), box


def test_a_model_whose_nms_cannot_be_built_is_a_one_line_error(tmp_path):
    model = tiny_detector()
    model.anchors = model.anchors[:-6]  # default boxes that no longer pair with the head's outputs
    with pytest.raises(ValueError) as error:
        export_model(model, tmp_path / "broken.mlpackage", format="coreml")
    message = str(error.value)
    assert "\n" not in message and "broken.mlpackage" in message and "NMS" in message, message
    assert not (tmp_path / "broken.mlpackage").exists()


def test_the_predictor_says_core_ml_files_run_on_apple_platforms(exported):
    _, path, _ = exported
    for predictor, backend in ((Predictor, "auto"), (runtime.Predictor, "auto"), (runtime.Predictor, "ort")):
        with pytest.raises(ValueError) as error:
            predictor(path, backend=backend)
        message = str(error.value)
        assert "\n" not in message and str(path) in message and "Apple platforms" in message, message
