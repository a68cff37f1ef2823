"""What every exported file carries, the contract between the exporters (which write it) and the backends (which read
it): the input and output names, the labels, and the metadata that makes a file usable without this package.

The values come from their one definition in ``ssdlite.core``: the input scaling
(:mod:`ssdlite.core.normalization`), the box-coding variances (:data:`ssdlite.core.box_coder.VARIANCES`) and the
postprocessing settings (:class:`ssdlite.core.postprocess.PostprocessSettings`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from ssdlite.core.box_coder import VARIANCES
from ssdlite.core.normalization import PIXEL_MEAN, PIXEL_STD
from ssdlite.core.postprocess import EVALUATION_POSTPROCESS, PostprocessSettings

__all__ = [
    "DETECTION_OUTPUT_NAMES",
    "FORMAT_VERSION",
    "INPUT_NAME",
    "RAW_OUTPUT_NAMES",
    "model_labels",
    "model_metadata",
    "setting_inputs",
]

FORMAT_VERSION = "1"
INPUT_NAME = "images"
RAW_OUTPUT_NAMES = ("cls_logits", "box_deltas")
DETECTION_OUTPUT_NAMES = ("boxes", "scores", "labels", "num_detections")


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


def model_labels(
    num_classes: int, class_names: Sequence[str] | None, category_ids: Sequence[int] | None
) -> tuple[list[str], list[int]]:
    """The class names and dataset category ids of labels 1..K, defaulting to ``class_1..class_K`` and 1..K.

    Raises:
        ValueError: names or ids whose count is not the model's number of classes.
    """
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(1, num_classes + 1)]
    ids = [int(i) for i in category_ids] if category_ids is not None else list(range(1, num_classes + 1))
    if len(names) != num_classes or len(ids) != num_classes:
        raise ValueError(
            f"the model has {num_classes} classes but got {len(names)} class names and {len(ids)} category ids; "
            "pass one name and one id per object class (background excluded)"
        )
    return names, ids


def model_metadata(
    model: Any,
    *,
    class_names: Sequence[str] | None = None,
    category_ids: Sequence[int] | None = None,
    postprocess: PostprocessSettings | None = None,
    quantization: str = "none",
) -> dict[str, str]:
    """The metadata every exported file carries, as ``{key: string}`` (ONNX ``metadata_props``).

    Args:
        model: the SSDLite (``config``, ``num_classes``, ``image_size``, ``feature_sizes`` are read).
        class_names: names of labels 1..K (default ``class_1 .. class_K``).
        category_ids: dataset category id of labels 1..K (default 1..K).
        postprocess: in-graph postprocessing settings, None for a raw-network file.
        quantization: "none" or a description of the INT8 quantization.

    Returns:
        Keys ``ssdlite_format``, ``model_config``, ``class_names``, ``category_ids`` (JSON), ``input_name``,
        ``input_size``, ``input_layout``, ``color_order``, ``resize``, ``mean``, ``scale``, ``normalization``,
        ``box_format``, ``output_layout``, ``with_nms``, ``score_threshold``, ``nms_iou``, ``topk_per_class``,
        ``max_detections``, ``feature_sizes``, ``variances``, ``quantization``.

    Raises:
        ValueError: class names or category ids whose count is not the model's number of classes.
    """
    names, ids = model_labels(int(model.num_classes), class_names, category_ids)
    size = int(model.image_size)
    with_nms = postprocess is not None
    settings = postprocess if with_nms else EVALUATION_POSTPROCESS
    if with_nms:
        box_format = "xyxy normalised to [0, 1] of the image (multiply by w, h, w, h of the original image)"
        layout = (
            "boxes float32 [B, D, 4], scores float32 [B, D] (best first), labels int64 [B, D] (1..K, "
            "class_names[label - 1]), num_detections int64 [B]; rows past num_detections[b] are zero padding; "
            "D = max_detections"
        )
    else:
        box_format = (
            "raw: box_deltas (dx, dy, dw, dh) against default boxes (cx, cy, w, h) normalised, variances "
            f"{list(VARIANCES)}; decode, then xyxy normalised to [0, 1] of the image"
        )
        layout = "cls_logits float32 [B, A, K + 1] (column 0 = background), box_deltas float32 [B, A, 4]"
    return {
        "ssdlite_format": FORMAT_VERSION,
        "model_config": json.dumps(getattr(model, "config", {}), sort_keys=True),
        "class_names": json.dumps(names),
        "category_ids": json.dumps(ids),
        "input_name": INPUT_NAME,
        "input_size": str(size),
        "input_layout": f"NCHW float32 [B, 3, {size}, {size}]",
        "color_order": "RGB",
        "resize": f"stretch to {size}x{size} (no letterbox), bilinear (cv2.INTER_LINEAR)",
        "mean": json.dumps([PIXEL_MEAN] * 3),
        "scale": json.dumps([1 / PIXEL_STD] * 3),
        "normalization": (
            f"input = (pixel - mean) * scale, i.e. pixel / {PIXEL_STD:g} - {PIXEL_MEAN / PIXEL_STD:g}, range [-1, 1]"
        ),
        "box_format": box_format,
        "output_layout": layout,
        "with_nms": json.dumps(with_nms),
        "score_threshold": repr(settings.score_threshold),
        "nms_iou": repr(settings.nms_iou),
        "topk_per_class": str(settings.topk_per_class),
        "max_detections": str(settings.max_detections),
        "feature_sizes": json.dumps([list(size_hw) for size_hw in model.feature_sizes]),
        "variances": json.dumps(list(VARIANCES)),
        "quantization": quantization,
    }
