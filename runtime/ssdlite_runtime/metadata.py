"""What every exported file carries, the contract between the exporters (which write it) and the backends (which
read it): the input and output names, and :class:`ModelInfo`, written and read as one set of ``{key: string}``
metadata.

An exporter of the full package builds a ``ModelInfo`` from the model and from the one definition of each setting in
``ssdlite.core`` (``ssdlite.deploy.metadata.model_info``) and stores ``info.to_metadata()`` in the file: ONNX
``metadata_props``, or whatever slot the format has (a JSON file beside it where it has none). A backend here reads
it back with :meth:`ModelInfo.from_metadata`, so a runtime needs nothing but the file: class names, category ids,
input size, input scaling, default boxes, postprocess settings, whether decoding and NMS are inside the graph.

Keys (all strings; JSON where the value is not a plain number or word):

===================  ==================================================================================
key                  value
===================  ==================================================================================
ssdlite_format       :data:`FORMAT_VERSION`; its presence says "a file exported by ssdlite"
class_names          JSON list, the names of labels 1..K
category_ids         JSON list, the dataset category id of labels 1..K
input_name           :data:`INPUT_NAME`
input_size           S, the square input side in pixels
mean, scale          JSON lists, one value per RGB channel: ``input = (pixel - mean) * scale``
with_nms             JSON bool: outputs :data:`DETECTION_OUTPUT_NAMES` (True) or :data:`RAW_OUTPUT_NAMES`
default_boxes        base64 of float32 little-endian [A, 4] (cx, cy, w, h) normalised, the model's order
variances            JSON [centre, size] of the box coding
score_threshold,     the postprocessing the file was made with (:class:`PostprocessSettings`; the defaults
nms_iou, ...         of the graph's setting inputs when ``with_nms``)
quantization         "none" or how the file was quantized
model_config,        JSON: the architecture and its feature map sizes (for people; not read here)
feature_sizes
input_layout, ...    ``color_order``, ``resize``, ``normalization``, ``box_format``, ``output_layout``: the
                     same facts in words, for someone opening the file in a viewer
===================  ==================================================================================
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import numpy as np

from ssdlite_runtime.postprocess import EVALUATION_POSTPROCESS, PostprocessSettings

__all__ = [
    "DETECTION_OUTPUT_NAMES",
    "FORMAT_VERSION",
    "INPUT_NAME",
    "RAW_OUTPUT_NAMES",
    "TFLITE_OUTPUT_NAMES",
    "ModelInfo",
    "setting_inputs",
]

FORMAT_VERSION = "1"
INPUT_NAME = "images"
RAW_OUTPUT_NAMES = ("cls_logits", "box_deltas")
DETECTION_OUTPUT_NAMES = ("boxes", "scores", "labels", "num_detections")
TFLITE_OUTPUT_NAMES = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")
"""The signature outputs of an ssdlite .tflite file, in tensor order: the names of TensorFlow's detection models
(Android's layout), written by the TFLite exporter's graph and read by the TFLite backend."""
_SETTINGS = ("score_threshold", "nms_iou", "topk_per_class", "max_detections")


def setting_inputs(settings: PostprocessSettings) -> dict[str, np.ndarray]:
    """The setting inputs of a graph exported with NMS, by input name: what the graph stores as their defaults and
    what a runtime feeds to change them (``score_threshold`` and ``iou_threshold`` float32 [1], ``topk_per_class``
    and ``max_detections`` int64 [1])."""
    return {
        "score_threshold": np.array([settings.score_threshold], np.float32),
        "iou_threshold": np.array([settings.nms_iou], np.float32),
        "topk_per_class": np.array([settings.topk_per_class], np.int64),
        "max_detections": np.array([settings.max_detections], np.int64),
    }


@dataclass(frozen=True, eq=False)
class ModelInfo:
    """What a runtime needs to know about a model: its labels, its input, and what its outputs are.

    Attributes:
        class_names: names of labels 1..K (``class_names[label - 1]``).
        category_ids: dataset category id of labels 1..K (written in COCO-style results).
        image_size: the network's square input side S in pixels.
        mean, scale: per RGB channel, ``input = (pixel - mean) * scale`` (see :mod:`ssdlite_runtime.preprocess`).
        with_nms: the outputs are detections (decoding + NMS inside the graph), not the raw head outputs.
        default_boxes: float32 [A, 4] (cx, cy, w, h) normalised: what raw outputs are decoded against.
        variances: (centre, size) variances of the box coding, for raw outputs.
        postprocess: the settings the file was made with (a ``with_nms`` graph's defaults).
        quantization: "none" or how the weights and activations were quantized.
        model_config: the architecture (the full package's ``SSDLiteConfig`` as a dict), for people.
        feature_sizes: (h, w) of each feature map, for people.

    Raises:
        ValueError: names and ids of different lengths, or values of the wrong shape (the message says which).
    """

    class_names: list[str]
    category_ids: list[int]
    image_size: int
    _: KW_ONLY
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    with_nms: bool = False
    default_boxes: np.ndarray | None = None
    variances: tuple[float, float] | None = None
    postprocess: PostprocessSettings = EVALUATION_POSTPROCESS
    quantization: str = "none"
    model_config: dict[str, Any] = field(default_factory=dict)
    feature_sizes: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        def set_field(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        set_field("class_names", [str(name) for name in self.class_names])
        set_field("category_ids", [int(i) for i in self.category_ids])
        set_field("mean", tuple(float(value) for value in self.mean))
        set_field("scale", tuple(float(value) for value in self.scale))
        if len(self.class_names) != len(self.category_ids):
            raise ValueError(
                f"{len(self.class_names)} class names but {len(self.category_ids)} category ids; give one of each "
                "per object class (background excluded)"
            )
        if len(self.mean) != 3 or len(self.scale) != 3 or 0.0 in self.scale:
            raise ValueError(f"mean and scale need 3 values (RGB), scale non-zero; got {self.mean}, {self.scale}")
        if self.default_boxes is not None:
            set_field("default_boxes", np.ascontiguousarray(self.default_boxes, dtype=np.float32))
            if self.default_boxes.ndim != 2 or self.default_boxes.shape[1] != 4:
                raise ValueError(f"default_boxes must be [A, 4] (cx, cy, w, h), got {self.default_boxes.shape}")
        if self.variances is not None:
            set_field("variances", tuple(float(value) for value in self.variances))

    @property
    def num_classes(self) -> int:
        """K, the object classes (background excluded)."""
        return len(self.class_names)

    # -- writing (the exporters of the full package)

    def to_metadata(self) -> dict[str, str]:
        """The ``{key: string}`` metadata an exported file carries (the keys of the module docstring)."""
        size, std = self.image_size, 1.0 / self.scale[0]
        lowest, highest = ((value - self.mean[0]) * self.scale[0] for value in (0, 255))
        if self.with_nms:
            box_format = "xyxy normalised to [0, 1] of the image (multiply by w, h, w, h of the original image)"
            layout = (
                "boxes float32 [B, D, 4], scores float32 [B, D] (best first), labels int64 [B, D] (1..K, "
                "class_names[label - 1]), num_detections int64 [B]; rows past num_detections[b] are zero padding; "
                "D = max_detections"
            )
        else:
            box_format = (
                "raw: box_deltas (dx, dy, dw, dh) against default_boxes (cx, cy, w, h) normalised, variances "
                f"{list(self.variances or ())}; decode, then xyxy normalised to [0, 1] of the image"
            )
            layout = "cls_logits float32 [B, A, K + 1] (column 0 = background), box_deltas float32 [B, A, 4]"
        metadata = {
            "ssdlite_format": FORMAT_VERSION,
            "model_config": json.dumps(self.model_config, sort_keys=True),
            "class_names": json.dumps(self.class_names),
            "category_ids": json.dumps(self.category_ids),
            "input_name": INPUT_NAME,
            "input_size": str(size),
            "input_layout": f"NCHW float32 [B, 3, {size}, {size}]",
            "color_order": "RGB",
            "resize": f"stretch to {size}x{size} (no letterbox), bilinear (cv2.INTER_LINEAR)",
            "mean": json.dumps(list(self.mean)),
            "scale": json.dumps(list(self.scale)),
            "normalization": (
                f"input = (pixel - mean) * scale, i.e. pixel / {std:g} - {self.mean[0] / std:g}, "
                f"range [{lowest:g}, {highest:g}]"
            ),
            "box_format": box_format,
            "output_layout": layout,
            "with_nms": json.dumps(self.with_nms),
            **{name: repr(getattr(self.postprocess, name)) for name in _SETTINGS},
            "feature_sizes": json.dumps([list(size_hw) for size_hw in self.feature_sizes]),
            "variances": json.dumps(list(self.variances or ())),
            "quantization": self.quantization,
        }
        if self.default_boxes is not None:
            metadata["default_boxes"] = base64.b64encode(self.default_boxes.astype("<f4").tobytes()).decode("ascii")
        return metadata

    # -- reading (the backends)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], *, source: str) -> ModelInfo:
        """The ``ModelInfo`` an exported file's metadata describes.

        Args:
            metadata: the file's ``{key: string}`` metadata.
            source: the file, for messages.

        Raises:
            ValueError: no ssdlite metadata, or a key missing or unreadable (names the file and the key; the fix is
                to export the file again).
        """
        if "ssdlite_format" not in metadata:
            raise ValueError(
                f"{source} was not exported by ssdlite (it has no ssdlite metadata: class names, input size, "
                "output layout); export it with `tools/export.py --checkpoint MODEL.ckpt --out FILE`"
            )
        reader = _MetadataReader(metadata, source)
        with_nms = bool(reader.json("with_nms", default=False))
        return cls(
            reader.json("class_names"),
            reader.json("category_ids"),
            int(reader.text("input_size")),
            mean=reader.json("mean"),
            scale=reader.json("scale"),
            with_nms=with_nms,
            default_boxes=reader.default_boxes(required=not with_nms),
            variances=tuple(reader.json("variances")) or None,
            postprocess=PostprocessSettings(**{name: reader.number(name) for name in _SETTINGS}),
            quantization=metadata.get("quantization", "none"),
            model_config=reader.json("model_config", default={}),
            feature_sizes=tuple(tuple(size) for size in reader.json("feature_sizes", default=[])),
        )


class _MetadataReader:
    """Reads the values of one file's metadata; every failure is a ValueError naming the file and the key."""

    def __init__(self, metadata: Mapping[str, str], source: str) -> None:
        self.metadata = metadata
        self.source = source

    def _error(self, key: str, problem: str) -> ValueError:
        return ValueError(
            f"{self.source}: its ssdlite metadata {problem} {key!r}; export the file again with this version "
            "(`tools/export.py --checkpoint MODEL.ckpt --out FILE`)"
        )

    def text(self, key: str) -> str:
        if key not in self.metadata:
            raise self._error(key, "has no")
        return self.metadata[key]

    def json(self, key: str, default: Any = None) -> Any:
        if key not in self.metadata and default is not None:
            return default
        try:
            return json.loads(self.text(key))
        except json.JSONDecodeError:
            raise self._error(key, "has an unreadable") from None

    def number(self, key: str) -> float:
        value = self.json(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self._error(key, "has a non-numeric")
        return value

    def default_boxes(self, *, required: bool) -> np.ndarray | None:
        if "default_boxes" not in self.metadata and not required:
            return None
        try:
            data = base64.b64decode(self.text("default_boxes"), validate=True)
        except ValueError:  # binascii.Error
            raise self._error("default_boxes", "has an unreadable") from None
        if len(data) % 16:
            raise self._error("default_boxes", "has a truncated")
        return np.frombuffer(data, dtype="<f4").reshape(-1, 4).astype(np.float32)

