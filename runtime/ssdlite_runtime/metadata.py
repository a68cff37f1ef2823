"""What every exported file carries, the contract between the exporters (which write it) and the backends (which
read it): the input and output names, and :class:`ModelInfo`, written and read as one set of ``{key: string}``
metadata.

An exporter of the full package builds a ``ModelInfo`` from the model and from the one definition of each setting in
``ssdlite.core`` (``ssdlite.deploy.metadata.model_info``) and stores ``info.to_metadata()`` in the file: ONNX
``metadata_props``, or whatever slot the format has (a JSON file beside it where it has none). A backend here reads
it back with :meth:`ModelInfo.from_metadata`, so a runtime needs nothing but the file: class names, category ids,
input size, input scaling, default boxes, postprocess settings, whether decoding and NMS are inside the graph.

A file's metadata is untrusted input: ``from_metadata`` checks every key's type and range (the input size against
:data:`MIN_IMAGE_SIZE` .. :data:`MAX_IMAGE_SIZE`, the one definition training builds models with), and a backend
compares it with what its graph says (:meth:`ModelInfo.check_graph`: class count, default boxes, input side). Each
failure is one ValueError naming the file and the key (:func:`metadata_error`).

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
import math
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import numpy as np

from ssdlite_runtime.postprocess import EVALUATION_POSTPROCESS, PostprocessSettings

__all__ = [
    "DETECTION_OUTPUT_NAMES",
    "FORMAT_VERSION",
    "INPUT_NAME",
    "MAX_COUNT",
    "MAX_IMAGE_SIZE",
    "MIN_IMAGE_SIZE",
    "RAW_OUTPUT_NAMES",
    "TFLITE_OUTPUT_NAMES",
    "ModelInfo",
    "metadata_error",
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

MIN_IMAGE_SIZE = 64
"""Smallest input side of a model (and of a file's ``input_size``): the last extra layer (stride 512) still has a
1x1 map, and BatchNorm sees more than one value. The one definition: ``ssdlite.models`` builds models within
[MIN_IMAGE_SIZE, MAX_IMAGE_SIZE] and the runtime refuses a file whose metadata is outside it."""

MAX_IMAGE_SIZE = 2048
"""Largest input side of a model (and of a file's ``input_size``): 6.4 times the paper's 320 (41 times the pixels),
above the 1280-1536 that the largest single-stage detectors train at (YOLOv5-P6, EfficientDet-D7). Activations grow
with the square of the side, and building a model runs one forward pass to size its feature maps: a side of 100000
asked for 120 GB there (and a runtime's input batch for 112 GiB)."""

MAX_COUNT = 1_000_000
"""Largest ``topk_per_class`` / ``max_detections`` a file's metadata may state: far above any real setting (300 for
evaluation), and small enough that a padded output of that many rows fits in memory."""


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
        """The ``ModelInfo`` an exported file's metadata describes, every key checked for its type and range.

        The metadata is read as untrusted input: lists must hold elements of the right type and count, the input
        size is an integer from :data:`MIN_IMAGE_SIZE` to :data:`MAX_IMAGE_SIZE` (the sizes a model is built for),
        thresholds are finite numbers in [0, 1], counts integers from 1 to :data:`MAX_COUNT`. What the graph itself
        says (its class count, default boxes, input size) is compared by the backend with :meth:`check_graph`.

        Args:
            metadata: the file's ``{key: string}`` metadata.
            source: the file that holds it, for messages.

        Raises:
            ValueError: no ssdlite metadata, or a key missing, unreadable, of the wrong type or out of range (one
                line naming the file and the key; the fix is to export the file again).
        """
        if "ssdlite_format" not in metadata:
            raise ValueError(
                f"{source} was not exported by ssdlite (it has no ssdlite metadata: class names, input size, "
                "output layout); export it with `tools/export.py --checkpoint MODEL.ckpt --out FILE`"
            )
        reader = _MetadataReader(metadata, source)
        class_names = reader.list_of("class_names", str, "class names (strings)", min_length=1)
        category_ids = reader.list_of("category_ids", int, "dataset category ids (integers)")
        if len(category_ids) != len(class_names):
            raise reader.error(
                "category_ids", f"holds {len(category_ids)} ids but 'class_names' {len(class_names)} names (one "
                "id per class)"
            )
        with_nms = reader.boolean("with_nms", default=False)
        variances = reader.list_of(  # a file with NMS inside may leave them out (empty): it decodes itself
            "variances", float, "box-coding variances [centre, size] (numbers > 0)",
            length=(0, 2) if with_nms else (2,), low=0.0,
        )
        return cls(
            class_names,
            category_ids,
            reader.integer("input_size", MIN_IMAGE_SIZE, MAX_IMAGE_SIZE, why="the input sides a model is built for"),
            mean=reader.list_of("mean", float, "per-channel means (numbers)", length=(3,)),
            scale=reader.list_of("scale", float, "per-channel scales (non-zero numbers)", length=(3,), nonzero=True),
            with_nms=with_nms,
            default_boxes=reader.default_boxes(required=not with_nms),
            variances=tuple(variances) or None,
            postprocess=PostprocessSettings(
                score_threshold=reader.fraction("score_threshold"),
                nms_iou=reader.fraction("nms_iou"),
                topk_per_class=reader.integer("topk_per_class", 1, MAX_COUNT, why="a count of boxes"),
                max_detections=reader.integer("max_detections", 1, MAX_COUNT, why="a count of boxes"),
            ),
            quantization=str(metadata.get("quantization", "none")),
            model_config=reader.mapping("model_config"),
            feature_sizes=reader.feature_sizes(),
        )

    def check_graph(
        self,
        *,
        source: str,
        num_classes: int | None = None,
        num_anchors: int | None = None,
        image_size: int | None = None,
        shown: str = "",
    ) -> None:
        """Compare the metadata with what the file's graph says (whatever of it the format tells; None: unknown).

        Args:
            source: the file, for messages.
            num_classes: K of the graph (e.g. the last dimension of its ``cls_logits`` output, minus 1).
            num_anchors: A, the boxes the graph predicts per image.
            image_size: the side of the graph's square input.
            shown: where the graph says so, e.g. "its output cls_logits is [1, 96, 5]", for the message.

        Raises:
            ValueError: the metadata disagrees with the graph (names the file, the key and both numbers).
        """
        where = f" ({shown})" if shown else ""
        if num_classes is not None and num_classes != self.num_classes:
            raise metadata_error(
                source, "class_names", f"lists {self.num_classes} classes but the graph has {num_classes}{where}; "
                "the metadata is not this graph's"
            )
        if num_anchors is not None and self.default_boxes is not None and num_anchors != len(self.default_boxes):
            raise metadata_error(
                source, "default_boxes", f"holds {len(self.default_boxes)} boxes but the graph predicts "
                f"{num_anchors}{where}; the metadata is not this graph's"
            )
        if image_size is not None and image_size != self.image_size:
            raise metadata_error(
                source, "input_size", f"is {self.image_size} but the graph's input is {image_size} x {image_size}"
                f"{where}; the metadata is not this graph's"
            )


REEXPORT = "export the file again with this version (`tools/export.py --checkpoint MODEL.ckpt --out FILE`)"
"""The fix for a file whose metadata is damaged or not its graph's."""


def metadata_error(source: str, key: str, problem: str) -> ValueError:
    """The one-line error about one key of a file's metadata: ``FILE: ssdlite metadata 'KEY' PROBLEM; FIX``. Every
    metadata error is made here, so each names the file and the key the same way."""
    return ValueError(f"{source}: ssdlite metadata {key!r} {problem}; {REEXPORT}")


def _shown(value: Any) -> str:
    """A value for a message: its JSON (or repr), at most 60 characters."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class _MetadataReader:
    """Reads the values of one file's metadata, each checked; every failure is :func:`metadata_error` (a ValueError
    naming the file and the key)."""

    def __init__(self, metadata: Mapping[str, str], source: str) -> None:
        self.metadata = metadata
        self.source = source

    def error(self, key: str, problem: str) -> ValueError:
        return metadata_error(self.source, key, problem)

    def text(self, key: str) -> str:
        if key not in self.metadata:
            raise self.error(key, "is missing")
        value = self.metadata[key]
        if not isinstance(value, str):
            raise self.error(key, f"is a {type(value).__name__}, not text")
        return value

    def json(self, key: str, default: Any = None) -> Any:
        if key not in self.metadata and default is not None:
            return default
        text = self.text(key)
        try:
            return json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            raise self.error(key, f"is not valid JSON ({_shown(text)})") from None

    def boolean(self, key: str, *, default: bool) -> bool:
        value = self.json(key, default=default)
        if not isinstance(value, bool):
            raise self.error(key, f"is {_shown(value)}, not true or false")
        return value

    def integer(self, key: str, low: int, high: int, *, why: str) -> int:
        value = self.json(key)
        whole = isinstance(value, int) or (_is_number(value) and float(value).is_integer())
        if isinstance(value, bool) or not whole or not low <= value <= high:
            raise self.error(key, f"is {_shown(value)}, not an integer from {low} to {high} ({why})")
        return int(value)

    def fraction(self, key: str) -> float:
        value = self.json(key)
        if not _is_number(value) or not 0.0 <= value <= 1.0:
            raise self.error(key, f"is {_shown(value)}, not a number from 0 to 1")
        return float(value)

    def list_of(
        self,
        key: str,
        element: type,
        what: str,
        *,
        length: tuple[int, ...] | None = None,
        min_length: int = 0,
        low: float | None = None,
        nonzero: bool = False,
    ) -> list[Any]:
        """A JSON list of ``element`` (str, int or float: finite, ``> low``, non-zero if asked), ``len`` in
        ``length`` (or at least ``min_length``)."""
        value = self.json(key)
        counts = " or ".join(str(count) for count in length if count) if length else ""  # 0: may be left empty
        expected = f"a JSON list of {counts + ' ' if counts else ''}{what}"
        if not isinstance(value, list):
            raise self.error(key, f"is {_shown(value)}, not {expected}")
        if element is str:
            wrong = [item for item in value if not isinstance(item, str)]
        elif element is int:
            wrong = [item for item in value if isinstance(item, bool) or not isinstance(item, int)]
        else:
            wrong = [
                item for item in value
                if not _is_number(item) or (low is not None and not item > low) or (nonzero and item == 0)
            ]
        if wrong:
            raise self.error(key, f"holds {_shown(wrong[0])}, not {expected}")
        if (length is not None and len(value) not in length) or len(value) < min_length:
            raise self.error(key, f"holds {len(value)} values, not {expected}")
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.json(key, default={})
        if not isinstance(value, dict):
            raise self.error(key, f"is {_shown(value)}, not a JSON object")
        return value

    def feature_sizes(self) -> tuple[tuple[int, int], ...]:
        value = self.json("feature_sizes", default=[])
        pairs = isinstance(value, list) and all(
            isinstance(pair, list) and len(pair) == 2
            and all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in pair)
            for pair in value
        )
        if not pairs:
            raise self.error("feature_sizes", f"is {_shown(value)}, not a JSON list of [height, width] pairs of "
                             "positive integers")
        return tuple((height, width) for height, width in value)

    def default_boxes(self, *, required: bool) -> np.ndarray | None:
        if "default_boxes" not in self.metadata and not required:
            return None
        try:
            data = base64.b64decode(self.text("default_boxes"), validate=True)
        except ValueError:  # binascii.Error
            raise self.error("default_boxes", "is not base64 text") from None
        if not data or len(data) % 16:
            raise self.error("default_boxes", f"holds {len(data)} bytes, not float32 [A, 4] (16 bytes a box)")
        boxes = np.frombuffer(data, dtype="<f4").reshape(-1, 4).astype(np.float32)
        if not np.isfinite(boxes).all():
            raise self.error("default_boxes", "holds values that are not finite numbers")
        return boxes
