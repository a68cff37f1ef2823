"""The "torchscript" exporter: the BatchNorm-folded network traced to TorchScript, raw outputs only.

The file runs any batch size (traced at batch 1) and holds no postprocessing: decode its ``(cls_logits,
box_deltas)`` with ``ssdlite.core.postprocess_detections`` against the default boxes its metadata describes.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ssdlite.deploy.export.base import ExportOptions, inference_network, register_exporter
from ssdlite.deploy.metadata import model_metadata

__all__ = ["TORCHSCRIPT_METADATA_FILE", "export_torchscript"]

TORCHSCRIPT_METADATA_FILE = "ssdlite.json"
"""The extra file of a TorchScript export that holds the metadata (``ssdlite.deploy.metadata.model_metadata``)."""


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
    network = inference_network(model)
    size = int(model.image_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings of the input-shape check; torch.jit's deprecation notice
        traced = torch.jit.trace(network, torch.zeros(1, 3, size, size), check_trace=False)
        traced = torch.jit.freeze(traced.eval())
        torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_METADATA_FILE: json.dumps(metadata)})
    return path


@register_exporter(
    "torchscript",
    title="TorchScript",
    suffix=".pt",
    note="TorchScript files hold the raw network (traced for batch 1, runs any batch size)",
)
def _export(model: nn.Module, path: Path, options: ExportOptions) -> Path:
    return export_torchscript(model, path, class_names=options.class_names, category_ids=options.category_ids)
