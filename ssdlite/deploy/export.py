"""Export a trained SSDLite for deployment: ONNX (optionally with decoding + NMS inside the graph) and TorchScript.

Every exported file carries what is needed to use it without this package: the class names, the preprocessing
constants and the output layout, in the ONNX ``metadata_props`` (TorchScript: an extra file ``ssdlite.json``).

ONNX graph, input ``images`` float32 [B, 3, S, S], RGB, resized (stretched) to S x S with bilinear interpolation and
scaled as ``(pixel - 127.5) / 127.5`` (B is 1 unless exported with ``dynamic_batch=True``). Outputs:

* raw network (``with_nms=False``): ``cls_logits`` [B, A, K + 1] (column 0 = background) and ``box_deltas``
  [B, A, 4] (dx, dy, dw, dh) against the default boxes (variances 0.1 / 0.2) that the metadata describes
  (``model_config`` + ``feature_sizes``).
* with decoding + NMS (``with_nms=True``), fixed-size padded detections (the layout of TensorRT's EfficientNMS,
  chosen over a ragged [N, 7] list because every output has a static rank and per-image slicing is one
  ``[:num_detections[i]]``):

  - ``boxes`` float32 [B, D, 4]: (x1, y1, x2, y2) normalised to [0, 1] of the image (multiply by (w, h, w, h)
    of the original image: the resize is a plain stretch),
  - ``scores`` float32 [B, D], best first,
  - ``labels`` int64 [B, D] in 1..K (``class_names[label - 1]``),
  - ``num_detections`` int64 [B]: rows ``[:num_detections[b]]`` are detections, the rest is zero padding;

  with D = min(``max_detections``, A * K). The postprocessing is that of
  :func:`ssdlite.core.postprocess_detections` (softmax, best ``topk_per_class`` per class, score > threshold,
  class-wise NMS through ONNX ``NonMaxSuppression`` with scores [B, classes, boxes] -- the op's native per-class
  batching --, best ``max_detections`` per image), run best first (see :mod:`ssdlite.deploy.onnx_postprocess`).
  Its four settings are graph inputs with stored defaults (ONNX overridable initializers): ``score_threshold``
  float32 [1], ``iou_threshold`` float32 [1], ``topk_per_class`` int64 [1] and ``max_detections`` int64 [1]; feed
  them to change a setting at run time, or leave them out.

Exporter: ``torch.onnx.export(..., dynamo=True)``, the torch.export-based exporter (the default since torch 2.9).
The legacy TorchScript-based exporter (``dynamo=False``) still works in torch 2.14 and gives the same outputs (to
1e-7), but it warns that it will be removed, and its graph keeps ~400 shape-computation nodes (Shape / Gather /
Unsqueeze / Concat around every head reshape) that the dynamo exporter resolves at export time: 195 nodes
instead of 597 for ssdlite_mobilenet_v2, equally fast in ONNX Runtime once optimised (5.7 vs 5.9 ms, measured
interleaved). The price is export time (a few seconds instead of under one). Decoding and NMS are not traced from
PyTorch at all: they are written directly as ONNX nodes (:mod:`ssdlite.deploy.onnx_postprocess`) and appended to
the network's graph, so the same code serves the float and the INT8 (quantized network only) files.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

ONNX_OPSET = 18
"""ONNX opset of exported graphs (the dynamo exporter's own default; >= 17 as required, NMS needs >= 11)."""

FORMAT_VERSION = "1"
INPUT_NAME = "images"
RAW_OUTPUT_NAMES = ("cls_logits", "box_deltas")
DETECTION_OUTPUT_NAMES = ("boxes", "scores", "labels", "num_detections")
PIXEL_MEAN = (127.5, 127.5, 127.5)
PIXEL_SCALE = (1 / 127.5, 1 / 127.5, 1 / 127.5)
VARIANCES = (0.1, 0.2)
TORCHSCRIPT_METADATA_FILE = "ssdlite.json"

DEFAULT_SCORE_THRESHOLD = 0.001
DEFAULT_NMS_IOU = 0.55
DEFAULT_TOPK_PER_CLASS = 300
DEFAULT_MAX_DETECTIONS = 300
"""Defaults of the in-graph postprocessing: those of ``ssdlite.core.postprocess_detections`` (and torchvision's
SSDLite), i.e. evaluation settings. Display use feeds a higher ``score_threshold`` input."""

__all__ = [
    "DETECTION_OUTPUT_NAMES",
    "INPUT_NAME",
    "ONNX_OPSET",
    "RAW_OUTPUT_NAMES",
    "PostprocessSettings",
    "export_model",
    "export_onnx",
    "export_torchscript",
    "model_metadata",
]


@dataclass(frozen=True)
class PostprocessSettings:
    """Settings of the in-graph postprocessing (the defaults stored in a file exported ``with_nms``).

    Attributes:
        score_threshold: keep class scores strictly above this, in [0, 1].
        nms_iou: IoU above which NMS suppresses a box of the same class, in [0, 1].
        topk_per_class: candidates kept per class and image before NMS (>= 1).
        max_detections: detections kept per image after NMS (>= 1); the padded output size D.
    """

    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    nms_iou: float = DEFAULT_NMS_IOU
    topk_per_class: int = DEFAULT_TOPK_PER_CLASS
    max_detections: int = DEFAULT_MAX_DETECTIONS

    def __post_init__(self) -> None:
        for name in ("score_threshold", "nms_iou"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
            object.__setattr__(self, name, float(value))
        for name in ("topk_per_class", "max_detections"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or int(value) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value}")
            object.__setattr__(self, name, int(value))


class _RawOutputs(nn.Module):
    """The model with a tuple output ``(cls_logits, box_deltas)`` (exporters and TorchScript want tensors)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        outputs = self.model(images)
        return outputs["cls_logits"], outputs["box_deltas"]


def _inference_copy(model: nn.Module) -> nn.Module:
    """An eval-mode, BatchNorm-folded, float32, CPU copy (the caller's model is left as it was)."""
    from ssdlite.models.fold_bn import fold_batchnorm

    return fold_batchnorm(model).float().cpu().eval()


def model_metadata(
    model: nn.Module,
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
    num_classes = int(model.num_classes)
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(1, num_classes + 1)]
    ids = [int(i) for i in category_ids] if category_ids is not None else list(range(1, num_classes + 1))
    if len(names) != num_classes or len(ids) != num_classes:
        raise ValueError(
            f"the model has {num_classes} classes but got {len(names)} class names and {len(ids)} category ids; "
            "pass one name and one id per object class (background excluded)"
        )
    size = int(model.image_size)
    with_nms = postprocess is not None
    settings = postprocess if with_nms else PostprocessSettings()
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
    metadata = {
        "ssdlite_format": FORMAT_VERSION,
        "model_config": json.dumps(getattr(model, "config", {}), sort_keys=True),
        "class_names": json.dumps(names),
        "category_ids": json.dumps(ids),
        "input_name": INPUT_NAME,
        "input_size": str(size),
        "input_layout": f"NCHW float32 [B, 3, {size}, {size}]",
        "color_order": "RGB",
        "resize": f"stretch to {size}x{size} (no letterbox), bilinear (cv2.INTER_LINEAR)",
        "mean": json.dumps(list(PIXEL_MEAN)),
        "scale": json.dumps(list(PIXEL_SCALE)),
        "normalization": "input = (pixel - mean) * scale, i.e. pixel / 127.5 - 1, range [-1, 1]",
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
    return metadata


# -------------------------------------------------------------------------------------------------------- ONNX


def export_network_onnx(model: nn.Module, path: str | Path, *, dynamic_batch: bool = False) -> Path:
    """The raw network (BatchNorm folded) as ONNX: ``images`` -> ``cls_logits``, ``box_deltas``; no metadata.

    Args:
        model: an SSDLite (left unchanged).
        path: output file.
        dynamic_batch: symbolic batch dimension; otherwise the batch is fixed to 1.
    """
    path = Path(path)
    network = _RawOutputs(_inference_copy(model))
    size = int(model.image_size)
    example = torch.zeros(1, 3, size, size)
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=1024)},) if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter (deprecations inside torch/onnxscript)
        program = torch.onnx.export(
            network,
            (example,),
            dynamo=True,
            opset_version=ONNX_OPSET,
            input_names=[INPUT_NAME],
            output_names=list(RAW_OUTPUT_NAMES),
            dynamic_shapes=dynamic_shapes,
            optimize=True,
            verbose=False,
        )
    program.save(str(path))
    return path


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    category_ids: Sequence[int] | None = None,
    with_nms: bool = False,
    dynamic_batch: bool = False,
    postprocess: PostprocessSettings | None = None,
    network_onnx: str | Path | None = None,
    quantization: str = "none",
) -> Path:
    """Export ``model`` to an ONNX file with the ssdlite metadata (see the module docstring for the layout).

    Args:
        model: an SSDLite (left unchanged; the file has BatchNorm folded into the convolutions).
        path: output ``.onnx`` file (parent folders are created).
        class_names: names of labels 1..K, stored in the metadata.
        category_ids: dataset category ids of labels 1..K, stored in the metadata.
        with_nms: append decoding + score threshold + class-wise NMS, output padded detections.
        dynamic_batch: symbolic batch dimension (otherwise 1).
        postprocess: default in-graph settings (``with_nms`` only); default: evaluation settings.
        network_onnx: a raw-network file already exported from ``model`` with :func:`export_network_onnx` (or
            quantized from one): used instead of exporting again (``dynamic_batch`` is then its own).
        quantization: how ``network_onnx`` was quantized ("none": float), stored in the metadata.

    Returns:
        The written path.
    """
    import onnx

    from ssdlite.deploy.onnx_postprocess import append_postprocess

    path = Path(path)
    settings = (postprocess or PostprocessSettings()) if with_nms else None
    metadata = model_metadata(
        model, class_names=class_names, category_ids=category_ids, postprocess=settings, quantization=quantization
    )
    if network_onnx is None:
        with tempfile.TemporaryDirectory(prefix="ssdlite_export_") as scratch:
            raw_path = export_network_onnx(model, Path(scratch) / "network.onnx", dynamic_batch=dynamic_batch)
            graph = onnx.load(str(raw_path))
    else:
        graph = onnx.load(str(network_onnx))
    if settings is not None:
        graph = append_postprocess(graph, model.anchors.detach().cpu().float(), settings)
    return write_onnx(graph, path, metadata)


def write_onnx(graph: Any, path: str | Path, metadata: dict[str, str]) -> Path:
    """Set ``metadata`` as ``metadata_props`` (replacing ours, keeping others), check and save an ONNX model."""
    import onnx

    path = Path(path)
    kept = [prop for prop in graph.metadata_props if prop.key not in metadata]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    for key, value in metadata.items():
        graph.metadata_props.add(key=key, value=value)
    graph.producer_name = "ssdlite"
    onnx.checker.check_model(graph)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, str(path))
    return path


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file, without loading its weights into a session."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    return {prop.key: prop.value for prop in graph.metadata_props}


# ------------------------------------------------------------------------------------------------- TorchScript


def export_torchscript(
    model: nn.Module,
    path: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    category_ids: Sequence[int] | None = None,
) -> Path:
    """Trace the BatchNorm-folded network to TorchScript: ``images`` -> ``(cls_logits, box_deltas)``.

    The metadata (same keys as the ONNX file, raw layout) is stored as the extra file ``ssdlite.json``; read it
    with ``torch.jit.load(path, _extra_files={"ssdlite.json": ""})``.

    Args:
        model: an SSDLite (left unchanged).
        path: output file (``.pt``/``.torchscript``).
        class_names, category_ids: stored in the metadata.

    Returns:
        The written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = model_metadata(model, class_names=class_names, category_ids=category_ids)
    network = _RawOutputs(_inference_copy(model))
    size = int(model.image_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings of the input-shape check; torch.jit's deprecation notice
        traced = torch.jit.trace(network, torch.zeros(1, 3, size, size), check_trace=False)
        traced = torch.jit.freeze(traced.eval())
        torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_METADATA_FILE: json.dumps(metadata)})
    return path


# ---------------------------------------------------------------------------------------------- one entry point


def export_model(
    model: nn.Module,
    path: str | Path,
    *,
    format: str = "onnx",
    class_names: Sequence[str] | None = None,
    category_ids: Sequence[int] | None = None,
    with_nms: bool = False,
    dynamic_batch: bool = False,
    int8: bool = False,
    calibration_images: str | Path | None = None,
    postprocess: PostprocessSettings | None = None,
    max_calibration_images: int = 200,
) -> Path:
    """What ``tools/export.py`` does: ONNX, INT8 ONNX or TorchScript.

    Args:
        model: an SSDLite.
        path: output file.
        format: "onnx" or "torchscript".
        class_names, category_ids: stored in the file.
        with_nms: ONNX only: decoding + NMS in the graph.
        dynamic_batch: ONNX only: symbolic batch dimension.
        int8: ONNX only: post-training static quantization of the network (QDQ, per-channel weights), calibrated
            on ``calibration_images``.
        calibration_images: folder of calibration images (required with ``int8``).
        postprocess: default in-graph postprocessing settings.
        max_calibration_images: at most this many calibration images are used.

    Raises:
        ValueError: unknown format, or an option that does not apply to it.
    """
    if format not in ("onnx", "torchscript"):
        raise ValueError(f"unknown export format {format!r}; choose onnx or torchscript")
    if format == "torchscript":
        if with_nms or dynamic_batch or int8:
            raise ValueError(
                "--with-nms, --dynamic-batch and --int8 apply to ONNX only; TorchScript files hold the raw network "
                "(traced for batch 1, runs any batch size)"
            )
        return export_torchscript(model, path, class_names=class_names, category_ids=category_ids)
    if int8:
        if calibration_images is None:
            raise ValueError("INT8 export needs calibration images: pass --calib DIR (a folder of images)")
        from ssdlite.deploy.quantize import quantize_model

        return quantize_model(
            model,
            path,
            calibration_images=calibration_images,
            class_names=class_names,
            category_ids=category_ids,
            with_nms=with_nms,
            dynamic_batch=dynamic_batch,
            postprocess=postprocess,
            max_calibration_images=max_calibration_images,
        )
    return export_onnx(
        model,
        path,
        class_names=class_names,
        category_ids=category_ids,
        with_nms=with_nms,
        dynamic_batch=dynamic_batch,
        postprocess=postprocess,
    )
