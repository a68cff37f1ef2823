"""The "coreml" exporter: an ML Program ``.mlpackage`` with NMS inside, in the layout Apple's Vision framework reads
as an object detector (``VNRecognizedObjectObservation``).

The file is a pipeline of two models (coremltools ``Pipeline``):

1. an ML Program converted from the traced network + decoding (:class:`CoreMLDecoder`): input ``image``, an RGB
   image of S x S pixels (Core ML applies the input scaling of :mod:`ssdlite.core.normalization` itself, as the
   image type's ``scale`` and ``bias``), outputs ``raw_confidence`` [A, K] (softmax class scores, background
   dropped) and ``raw_coordinates`` [A, 4] (boxes decoded against the default boxes and clipped to the image, as
   ``ssdlite.core.postprocess`` does, then written as (cx, cy, w, h) normalised to [0, 1]: Apple's convention);
2. Apple's ``NonMaximumSuppression`` model, class-wise (``pickTop.perClass``, like ours), labelled with the class
   names, outputs ``confidence`` [N, K] and ``coordinates`` [N, 4]; its thresholds are optional inputs
   ``iouThreshold`` and ``confidenceThreshold`` (Double), whose defaults are the export's postprocess settings,
   as for an ONNX file with NMS: ``ssdlite-export``'s ``--nms-iou`` / ``--score-threshold``, by default
   ``EVALUATION_POSTPROCESS`` (IoU 0.55, score > 0.001: every box, as COCO AP wants). An app filters the
   detections by confidence or passes ``confidenceThreshold`` (the Predictor's display threshold is 0.4).
   Apple's NMS has no per-class or per-image caps (``topk_per_class``, ``max_detections`` do not apply).

The user-defined metadata holds every key of ``ssdlite_runtime.metadata`` (class names, category ids, input size,
default boxes, ...; ``input_name``, ``input_layout``, ``box_format`` and ``output_layout`` describe this file's
image input and Vision outputs) and ``com.apple.coreml.model.preview.type = objectDetector`` for Xcode's preview.

Weights are float32 (``compute_precision=FLOAT32``); deployment target iOS 15 / macOS 12 (ML Programs).
Core ML runs on Apple platforms only: here the file can be built and its spec read (``skip_model_load=True``), not
run, so ``ssdlite_runtime`` has no backend for it (the tests check the spec; the decoder is checked against the
eager postprocessing in torch before it is traced).
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ssdlite.core.box_coder import VARIANCES, decode
from ssdlite.core.postprocess import EVALUATION_POSTPROCESS, PostprocessSettings
from ssdlite.deploy.export.base import ExportOptions, inference_network, register_exporter
from ssdlite.deploy.metadata import INPUT_SCALING, model_metadata
from ssdlite_runtime.errors import one_line

__all__ = [
    "CONFIDENCE",
    "COORDINATES",
    "COREML_SUFFIX",
    "IMAGE_INPUT",
    "CoreMLDecoder",
    "export_coreml",
]

COREML_SUFFIX = ".mlpackage"
IMAGE_INPUT = "image"
CONFIDENCE, COORDINATES = "confidence", "coordinates"
"""The pipeline's outputs, the names Vision reads (per detection: class scores [K], box (cx, cy, w, h))."""
IOU_INPUT, CONFIDENCE_INPUT = "iouThreshold", "confidenceThreshold"
PREVIEW_TYPE = "com.apple.coreml.model.preview.type"
PACKAGE_MANIFEST = "Manifest.json"
"""The file at the top of every ``.mlpackage``: an existing folder without it is not one the export may replace."""


class CoreMLDecoder(nn.Module):
    """The network + decoding for Apple's NMS: image [1, 3, S, S] -> (scores [A, K], boxes [A, 4] cx, cy, w, h).

    Scores are the softmax without the background column and boxes are decoded (``ssdlite.core.box_coder.decode``
    with :data:`VARIANCES`) and clipped to [0, 1], as :func:`ssdlite.core.postprocess_detections` does before NMS.
    """

    def __init__(self, network: nn.Module, anchors: Tensor) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("anchors", anchors.detach().float().cpu().clone())

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        cls_logits, box_deltas = self.network(images)
        scores = torch.softmax(cls_logits[0], dim=-1)[:, 1:]
        boxes = decode(box_deltas[0], self.anchors, VARIANCES).clamp(min=0.0, max=1.0)
        return scores, torch.cat(((boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]), dim=1)


@contextlib.contextmanager
def _quiet_coremltools() -> Iterator[None]:
    """Without coremltools' import-time warnings (no native Core ML on Linux, untested torch / scikit-learn)."""
    logger = logging.getLogger("coremltools")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_coreml(
    model: nn.Module,
    path: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    category_ids: Sequence[int] | None = None,
    postprocess: PostprocessSettings | None = None,
) -> Path:
    """Export ``model`` as a Core ML object detector (``.mlpackage``, see the module docstring).

    Args:
        model: an SSDLite (left unchanged; BatchNorm is folded in the file).
        path: the ``.mlpackage`` to write (a folder; replaced if it exists and is a Core ML package).
        class_names, category_ids: stored in the metadata (names also as the NMS model's class labels).
        postprocess: the NMS defaults (default: ``EVALUATION_POSTPROCESS``).

    Returns:
        The written path.

    Raises:
        ValueError: ``path`` does not end in ``.mlpackage`` or is a folder that is not a Core ML package (which
            the export would delete), coremltools could not convert the network, or the NMS model cannot be built
            on its outputs (the message says why).
    """
    path = Path(path)
    if path.suffix.lower() != COREML_SUFFIX:
        raise ValueError(
            f"a Core ML ML Program is a {COREML_SUFFIX} folder; pass --out ending in {COREML_SUFFIX} (got {path})"
        )
    _check_replaceable(path)
    settings = postprocess or EVALUATION_POSTPROCESS
    metadata = model_metadata(model, class_names=class_names, category_ids=category_ids, postprocess=settings)
    names = json.loads(metadata["class_names"])
    size = int(model.image_size)
    with _quiet_coremltools():
        import coremltools as ct

        network = inference_network(model)
        example = torch.zeros(1, 3, size, size)
        with torch.no_grad():
            cls_logits, box_deltas = network(example)
            _check_nms_inputs(list(cls_logits.shape), list(box_deltas.shape), len(model.anchors), names, path)
            traced = torch.jit.trace(CoreMLDecoder(network, model.anchors).eval(), example, check_trace=False)
        scale = INPUT_SCALING["scale"]
        if len(set(scale)) != 1:
            raise ValueError(f"Core ML image inputs take one scale for all channels; the model's is {scale}")
        try:
            network = ct.convert(
                traced,
                convert_to="mlprogram",
                inputs=[
                    ct.ImageType(
                        name=IMAGE_INPUT,
                        shape=(1, 3, size, size),
                        scale=scale[0],
                        bias=[-mean * factor for mean, factor in zip(INPUT_SCALING["mean"], scale)],
                        color_layout=ct.colorlayout.RGB,
                    )
                ],
                outputs=[ct.TensorType(name=f"raw_{CONFIDENCE}"), ct.TensorType(name=f"raw_{COORDINATES}")],
                minimum_deployment_target=ct.target.iOS15,
                compute_precision=ct.precision.FLOAT32,
            )
        except Exception as error:  # the converter's errors are long and varied; one line names the cause
            reason = one_line(error)[:300]
            raise ValueError(f"coremltools could not convert the network for {path}: {reason}") from error
        try:
            detector = _detector_pipeline(ct, network, names, settings)
        except Exception as error:  # coremltools' spec checks
            reason = one_line(error)[:300]
            raise ValueError(f"cannot build the Core ML NMS model for {path}: {reason}") from error
        for key, value in metadata.items():
            detector.user_defined_metadata[key] = value
        detector.user_defined_metadata.update(_coreml_layout(size, len(names)))
        detector.user_defined_metadata[PREVIEW_TYPE] = "objectDetector"
        detector.short_description = f"SSDLite object detector ({len(names)} classes, {size}x{size}), NMS inside"
        detector.input_description[IMAGE_INPUT] = f"RGB image, resized (stretched) to {size}x{size}"
        detector.input_description[IOU_INPUT] = f"NMS IoU threshold (default {settings.nms_iou:g})"
        detector.input_description[CONFIDENCE_INPUT] = f"score threshold (default {settings.score_threshold:g})"
        detector.output_description[CONFIDENCE] = "per detection, the score of each class"
        detector.output_description[COORDINATES] = "per detection, the box (cx, cy, w, h) normalised to [0, 1]"
        if path.exists():
            import shutil

            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        detector.save(str(path))
    return path


def _check_replaceable(path: Path) -> None:
    """Refuse an existing ``path`` the export would delete but that is not a Core ML package (no ``Manifest.json``):
    a folder of other files that happens to end in ``.mlpackage``, or a file."""
    if path.exists() and not (path / PACKAGE_MANIFEST).is_file():
        raise ValueError(
            f"--out {path} exists and is not a Core ML package (no {PACKAGE_MANIFEST}); the export replaces its "
            f"output whole, so pass a new name, e.g. --out {path.with_name(path.stem + '_coreml' + COREML_SUFFIX)}"
        )


def _check_nms_inputs(
    cls_logits: list[int], box_deltas: list[int], anchors: int, class_names: list[str], path: Path
) -> None:
    """Apple's NMS takes class scores [A, K] with one label per class and boxes [A, 4], decoded against the A
    default boxes: the network's outputs must fit the model's default boxes and class names.

    Raises:
        ValueError: they do not (e.g. default boxes laid out for another input size), naming the file.
    """
    if cls_logits != [1, anchors, len(class_names) + 1] or box_deltas != [1, anchors, 4]:
        raise ValueError(
            f"cannot build the Core ML NMS model for {path}: it needs one box and one score per class for each of "
            f"the model's {anchors} default boxes and {len(class_names)} classes, but the network gives class "
            f"logits {cls_logits} and box deltas {box_deltas}; export a model whose default boxes and classes match "
            "its head (a checkpoint rebuilt by ssdlite.models.load_checkpoint does)"
        )


def _detector_pipeline(ct: Any, network: Any, class_names: list[str], settings: PostprocessSettings) -> Any:
    """The ML Program followed by Apple's NonMaximumSuppression model, as one pipeline (an ``MLModel``)."""
    from coremltools.models import datatypes
    from coremltools.models.pipeline import Pipeline
    from coremltools.proto import FeatureTypes_pb2, Model_pb2

    spec = network.get_spec()
    outputs = {output.name: output for output in spec.description.output}
    nms_spec = Model_pb2.Model()
    nms_spec.specificationVersion = spec.specificationVersion
    for name, width in ((CONFIDENCE, len(class_names)), (COORDINATES, 4)):
        source = nms_spec.description.input.add()
        source.ParseFromString(outputs[f"raw_{name}"].SerializeToString())
        result = nms_spec.description.output.add()
        result.name = name
        result.type.multiArrayType.dataType = FeatureTypes_pb2.ArrayFeatureType.FLOAT32
        ranges = result.type.multiArrayType.shapeRange.sizeRanges
        rows, columns = ranges.add(), ranges.add()
        rows.lowerBound, rows.upperBound = 0, -1
        columns.lowerBound = columns.upperBound = width
    for name in (IOU_INPUT, CONFIDENCE_INPUT):
        threshold = nms_spec.description.input.add()
        threshold.name = name
        threshold.type.doubleType.SetInParent()
        threshold.type.isOptional = True
    nms = nms_spec.nonMaximumSuppression
    nms.confidenceInputFeatureName, nms.coordinatesInputFeatureName = f"raw_{CONFIDENCE}", f"raw_{COORDINATES}"
    nms.confidenceOutputFeatureName, nms.coordinatesOutputFeatureName = CONFIDENCE, COORDINATES
    nms.iouThresholdInputFeatureName, nms.confidenceThresholdInputFeatureName = IOU_INPUT, CONFIDENCE_INPUT
    nms.iouThreshold = settings.nms_iou
    nms.confidenceThreshold = settings.score_threshold
    nms.pickTop.perClass = True
    nms.stringClassLabels.vector.extend(class_names)

    size = spec.description.input[0].type.imageType
    pipeline = Pipeline(
        input_features=[
            (IMAGE_INPUT, datatypes.Array(3, size.height, size.width)),
            (IOU_INPUT, datatypes.Double()),
            (CONFIDENCE_INPUT, datatypes.Double()),
        ],
        output_features=[CONFIDENCE, COORDINATES],
    )
    pipeline.add_model(network)
    pipeline.add_model(ct.models.MLModel(nms_spec))
    pipeline.spec.description.input[0].ParseFromString(spec.description.input[0].SerializeToString())
    for threshold in pipeline.spec.description.input[1:]:  # iouThreshold, confidenceThreshold
        threshold.type.isOptional = True
    for result, nms_output in zip(pipeline.spec.description.output, nms_spec.description.output):
        result.ParseFromString(nms_output.SerializeToString())
    pipeline.spec.specificationVersion = spec.specificationVersion
    return ct.models.MLModel(pipeline.spec, weights_dir=network.weights_dir)


def _coreml_layout(size: int, num_classes: int) -> dict[str, str]:
    """The metadata keys that describe a file's layout in words, for this file's image input and Vision outputs."""
    return {
        "input_name": IMAGE_INPUT,
        "input_layout": f"{IMAGE_INPUT}: RGB image {size}x{size} (Core ML applies mean and scale itself)",
        "box_format": f"{COORDINATES}: (cx, cy, w, h) normalised to [0, 1] of the image (Vision's convention)",
        "output_layout": (
            f"{CONFIDENCE} float32 [N, {num_classes}] (class scores of each detection, background excluded), "
            f"{COORDINATES} float32 [N, 4]; N detections after class-wise NMS ({IOU_INPUT}, {CONFIDENCE_INPUT} "
            "optional inputs)"
        ),
    }


@register_exporter(
    "coreml",
    title="Core ML",
    suffix=COREML_SUFFIX,
    packages=("coremltools",),
    extra="coreml",
    note="Core ML files always have NMS inside (Apple's detector pipeline), batch 1",
    folder=True,
)
def _export(model: nn.Module, path: Path, options: ExportOptions) -> Path:
    return export_coreml(
        model,
        path,
        class_names=options.class_names,
        category_ids=options.category_ids,
        postprocess=options.postprocess,
    )
