"""Exporters, one module per format (and INT8), each registering itself in :mod:`.base`.

Modules:
    base               the exporter protocol (``ExportOptions``, ``Exporter``), the registry
                       (``register_exporter``, ``available_formats``) and ``export_model``, the one entry point
    onnx               "onnx": the network, optionally with decoding + NMS in the graph
    onnx_postprocess   decoding + class-wise NMS written as ONNX nodes (used by onnx and int8)
    int8               "onnx" at INT8: ONNX Runtime post-training static quantization, calibrated on a folder
    torchscript        "torchscript": the traced network, raw outputs
    openvino           "openvino": the ONNX file as an OpenVINO IR (.xml + .bin), NMS inside or raw; INT8 (NNCF)
    ncnn / coreml      "ncnn": pnnx's ncnn model (raw network) + metadata JSON; "coreml": ML Program + Apple NMS
    tflite             "tflite": LiteRT, decoding + NMS inside (tflite_postprocess), Android's layout; INT8 too

What every file carries (names, labels, metadata) is :mod:`ssdlite_runtime.metadata`'s ``ModelInfo``, filled in by
:mod:`ssdlite.deploy.metadata` and read by the backends of ``ssdlite_runtime``. A new format is a new module here
with a ``@register_exporter(...)`` function (see :mod:`.base`), and a backend module in ``ssdlite_runtime.backends``
that reads its files.
"""

from ssdlite.deploy.export.base import (
    DEFAULT_MAX_CALIBRATION_IMAGES,
    Exporter,
    ExportOptions,
    available_formats,
    export_model,
    register_exporter,
)
from ssdlite.deploy.export.onnx import ONNX_OPSET, export_network_onnx, export_onnx
from ssdlite.deploy.export.torchscript import export_torchscript

__all__ = [
    "DEFAULT_MAX_CALIBRATION_IMAGES",
    "ONNX_OPSET",
    "ExportOptions",
    "Exporter",
    "available_formats",
    "export_model",
    "export_network_onnx",
    "export_onnx",
    "export_torchscript",
    "register_exporter",
]
