"""The "onnx" exporter: a trained SSDLite as ONNX, optionally with decoding + NMS inside the graph.

The file carries what is needed to use it without this package (:func:`ssdlite.deploy.metadata.model_metadata`): the
class names, the preprocessing constants, the default boxes and the output layout, in the ONNX ``metadata_props``
(read by ``ssdlite_runtime``, which runs the file without torch).

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
  batching --, best ``max_detections`` per image), run best first (see :mod:`ssdlite.deploy.export.onnx_postprocess`).
  Its four settings are graph inputs with stored defaults (ONNX overridable initializers): ``score_threshold``
  float32 [1], ``iou_threshold`` float32 [1], ``topk_per_class`` int64 [1] and ``max_detections`` int64 [1]; feed
  them to change a setting at run time, or leave them out.

Exporter: ``torch.onnx.export(..., dynamo=True)``, the torch.export-based exporter (the default since torch 2.9):
it resolves the shape computations around every head reshape at export time, so the graph holds the network's
operations only, and the legacy TorchScript-based exporter is deprecated. Decoding and NMS are not traced from
PyTorch at all: they are written directly as ONNX nodes (:mod:`ssdlite.deploy.export.onnx_postprocess`) and
appended to the network's graph, so the same code serves the float and the INT8 (quantized network only) files.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssdlite.core.postprocess import EVALUATION_POSTPROCESS, PostprocessSettings
from ssdlite.deploy.export.base import ExportOptions, inference_network, register_exporter
from ssdlite.deploy.metadata import model_metadata
from ssdlite_runtime.metadata import INPUT_NAME, RAW_OUTPUT_NAMES

ONNX_OPSET = 18
"""ONNX opset of exported graphs (the dynamo exporter's own default; >= 17 as required, NMS needs >= 11)."""

__all__ = ["ONNX_OPSET", "export_network_onnx", "export_onnx", "read_onnx_metadata", "trace_onnx", "write_onnx"]


def export_network_onnx(model: nn.Module, path: str | Path, *, dynamic_batch: bool = False) -> Path:
    """The raw network (BatchNorm folded) as ONNX: ``images`` -> ``cls_logits``, ``box_deltas``; no metadata.

    Args:
        model: an SSDLite (left unchanged).
        path: output file.
        dynamic_batch: symbolic batch dimension; otherwise the batch is fixed to 1.
    """
    size = int(model.image_size)
    return trace_onnx(inference_network(model), torch.zeros(1, 3, size, size), path, dynamic_batch=dynamic_batch,
                      output_names=list(RAW_OUTPUT_NAMES))


def trace_onnx(
    network: nn.Module,
    example: torch.Tensor,
    path: str | Path,
    *,
    dynamic_batch: bool = False,
    output_names: Sequence[str] | None = None,
) -> Path:
    """``network`` (an eval-mode copy made for export: its ReLU6 layers are replaced) traced by the dynamo exporter
    on ``example`` and saved as ONNX with input ``images``; no metadata.

    Args:
        network: the module to trace, changed in place (see :func:`_relu6_as_clamp`).
        example: an input of batch 1.
        path: output file.
        dynamic_batch: symbolic batch dimension; otherwise the batch is fixed to ``example``'s.
        output_names: names of the outputs (default: the exporter's).
    """
    path = Path(path)
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=1024)},) if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter (deprecations inside torch/onnxscript)
        program = torch.onnx.export(
            _relu6_as_clamp(network),
            (example,),
            dynamo=True,
            opset_version=ONNX_OPSET,
            input_names=[INPUT_NAME],
            output_names=None if output_names is None else list(output_names),
            dynamic_shapes=dynamic_shapes,
            optimize=True,
            verbose=False,
        )
    program.save(str(path))
    return path


class _Clamp6(nn.Module):
    """ReLU6 written as ``clamp(0, 6)``: the same function and the same ONNX ``Clip`` node."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0.0, 6.0)


def _relu6_as_clamp(network: nn.Module) -> nn.Module:
    """``network`` (an export copy, changed in place) with every ``nn.ReLU6`` replaced by :class:`_Clamp6`.

    ``nn.ReLU6`` is a ``Hardtanh``, which torch.export decomposes op by op on every symbolic shape: with a dynamic
    batch dimension that doubles the export's time, for an identical graph.
    """
    for module in list(network.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU6):
                setattr(module, name, _Clamp6())
    return network


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

    from ssdlite.deploy.export.onnx_postprocess import append_postprocess

    path = Path(path)
    settings = (postprocess or EVALUATION_POSTPROCESS) if with_nms else None
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


@register_exporter(
    "onnx",
    title="ONNX",
    suffix=".onnx",
    flags=("with_nms", "dynamic_batch"),
    packages=("onnx", "onnxscript"),
    extra="export",
)
def _export(model: nn.Module, path: Path, options: ExportOptions) -> Path:
    return export_onnx(model, path, **onnx_arguments(options))


def onnx_arguments(options: ExportOptions) -> dict[str, Any]:
    """The keyword arguments of :func:`export_onnx` (and of the INT8 ``quantize_model``) that ``options`` sets."""
    return {
        "class_names": options.class_names,
        "category_ids": options.category_ids,
        "with_nms": options.with_nms,
        "dynamic_batch": options.dynamic_batch,
        "postprocess": options.postprocess,
    }
