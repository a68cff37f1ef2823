"""The "openvino" exporter: a trained SSDLite as an OpenVINO IR (``model.xml`` + ``model.bin``), float or INT8.

The IR is our ONNX file converted by OpenVINO (``openvino.convert_model``), so it has the ONNX file's input and
outputs (:mod:`ssdlite.deploy.export.onnx`): ``images`` float32 [B, 3, S, S] in, and either the raw network's
``cls_logits`` / ``box_deltas`` or, with ``with_nms``, decoding + class-wise NMS inside the graph (OpenVINO runs our
ONNX ``NonMaxSuppression`` graph as it is) and the padded detections ``boxes``, ``scores``, ``labels``,
``num_detections``. Weights are stored in float32 (``save_model(..., compress_to_fp16=False)``; OpenVINO's default
would store FP16 weights).

Setting inputs: the ONNX graph's four postprocessing settings are overridable initializers, which OpenVINO's ONNX
frontend folds into constants. The exporter therefore converts a copy of the graph whose settings are plain inputs
(their initializers removed), so the IR keeps ``score_threshold``, ``iou_threshold``, ``topk_per_class`` and
``max_detections`` as inputs (shape [1]); a runtime feeds them on every call, the defaults being the metadata's
(``ssdlite_runtime.backends.openvino`` does both). The padded outputs then have a dynamic detection dimension.

Metadata: every key of :class:`ssdlite_runtime.metadata.ModelInfo` (class names, category ids, input size and
scaling, default boxes, postprocess settings, quantization, ...) in the IR's ``rt_info`` under ``ssdlite``
(``model.get_rt_info(["ssdlite", key])``; ``<rt_info>`` at the end of the .xml).

INT8 (``precision="int8"``): NNCF post-training quantization of the raw network with OpenVINO's own backend
(``nncf.quantize``, preset PERFORMANCE: symmetric int8 activations and weights, as OpenVINO's CPU plugin runs them),
calibrated on a folder of images read and preprocessed exactly as the ONNX INT8 exporter reads them
(:class:`ssdlite.deploy.export.int8.ImageFolderCalibrationReader`). NNCF cannot build its graph of our NMS
postprocessing (its If-op handling fails on the ``If`` branches that read outer-graph values), so only the network
is quantized and, with ``with_nms``, the float postprocessing is attached afterwards in OpenVINO: the float IR with
NMS is converted, the consumers of its ``cls_logits`` / ``box_deltas`` are redirected to the quantized network's
outputs, and the model is rebuilt from its results and the quantized network's input (the float network is then
unreachable and dropped). The postprocessing is never quantized.

Weights use 7 of their 8 bits in every layer (NNCF's ``OverflowFix.ENABLE``; its default fixes the first layer
only), for the reason the ONNX INT8 exporter uses ``reduce_range``: x86 CPUs without VNNI (AVX2 only, e.g. AMD Zen 3)
multiply uint8 x int8 pairs into saturating int16 sums, which full-range weights overflow -- on such a machine the
overfit test model's INT8 IR missed one of its three objects with NNCF's default, with 7-bit weights it found all
three. An exported file runs on machines we do not know, so it is quantized to be right on all of them.

``openvino.convert_model`` sends OpenVINO's usage telemetry unless the user opted out (``opt_in_out --opt_out``,
from the openvino-telemetry package) or ``CI=true``; without network access each conversion then waits a few seconds
for it. This exporter leaves that choice to the user.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ssdlite.core.postprocess import EVALUATION_POSTPROCESS
from ssdlite.deploy.export.base import DEFAULT_MAX_CALIBRATION_IMAGES, ExportOptions, register_exporter
from ssdlite.deploy.export.onnx import export_network_onnx, export_onnx
from ssdlite.deploy.metadata import model_metadata
from ssdlite_runtime.metadata import INPUT_NAME, RAW_OUTPUT_NAMES, setting_inputs

__all__ = ["METADATA_SECTION", "export_openvino"]

METADATA_SECTION = "ssdlite"
"""The ``rt_info`` section of the IR that holds the metadata (read by ``ssdlite_runtime.backends.openvino``)."""

SETTING_INPUTS = tuple(setting_inputs(EVALUATION_POSTPROCESS))
"""The names of the setting inputs of a graph with NMS (``score_threshold``, ``iou_threshold``, ...)."""


def export_openvino(
    model: nn.Module,
    path: str | Path,
    options: ExportOptions,
    *,
    int8: bool = False,
    network_onnx: str | Path | None = None,
) -> Path:
    """Export ``model`` as an OpenVINO IR with the ssdlite metadata (see the module docstring).

    Args:
        model: an SSDLite (left unchanged; BatchNorm is folded into the convolutions of the file).
        path: the ``.xml`` file to write; the weights go to the ``.bin`` file of the same name beside it.
        options: class names, category ids, ``with_nms``, ``dynamic_batch``, postprocessing defaults and (INT8)
            the calibration folder (:func:`~ssdlite.deploy.export.base.export_model` refuses INT8 without one).
        int8: quantize the network with NNCF, calibrated on ``options.calibration_images``.
        network_onnx: the raw network already exported from ``model`` with
            :func:`~ssdlite.deploy.export.onnx.export_network_onnx` (its batch dimension is then its own): used
            instead of exporting it again.

    Returns:
        The written ``.xml`` path.

    Raises:
        ValueError: ``path`` does not end in ``.xml``, or the calibration folder holds no images.
        FileNotFoundError: the calibration folder does not exist.
    """
    import openvino as ov

    path = Path(path)
    if path.suffix != ".xml":  # OpenVINO's serializer takes no other spelling (".XML" fails after converting)
        raise ValueError(
            f"an OpenVINO IR is an .xml file (lower case; its weights go to the .bin file beside it); got --out "
            f"{path}, use e.g. --out {path.with_suffix('.xml')}"
        )
    calibration = _calibration_reader(model, options) if int8 else None
    settings = (options.postprocess or EVALUATION_POSTPROCESS) if options.with_nms else None
    quantization = "none"
    with tempfile.TemporaryDirectory(prefix="ssdlite_openvino_") as scratch:
        network = network_onnx or export_network_onnx(
            model, Path(scratch) / "network.onnx", dynamic_batch=options.dynamic_batch
        )
        if calibration is not None:
            started = time.perf_counter()
            converted = _quantize_network(ov.convert_model(str(network)), calibration)
            quantization = _quantization_note(calibration, options, time.perf_counter() - started)
        if settings is not None:
            graph = export_onnx(
                model, Path(scratch) / "model.onnx", with_nms=True, postprocess=settings, network_onnx=network
            )
            with_nms = _convert_keeping_settings(graph, Path(scratch) / "model_inputs.onnx")
            converted = with_nms if calibration is None else _attach_postprocess(converted, with_nms)
        elif calibration is None:
            converted = ov.convert_model(str(network))
    metadata = model_metadata(
        model,
        class_names=options.class_names,
        category_ids=options.category_ids,
        postprocess=settings,
        quantization=quantization,
    )
    for key, value in metadata.items():
        converted.set_rt_info(value, [METADATA_SECTION, key])
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(converted, str(path), compress_to_fp16=False)
    return path


def _convert_keeping_settings(onnx_path: Path, scratch_path: Path) -> Any:
    """``openvino.convert_model`` of an ONNX file with NMS, its setting initializers removed first so that they stay
    inputs of the IR (the frontend folds overridable initializers into constants); its ONNX metadata is dropped
    (the IR gets ours under ``rt_info["ssdlite"]``, not a second copy under ``rt_info["framework"]``)."""
    import onnx
    import openvino as ov

    graph = onnx.load(str(onnx_path))
    kept = [tensor for tensor in graph.graph.initializer if tensor.name not in SETTING_INPUTS]
    if len(kept) != len(graph.graph.initializer) - len(SETTING_INPUTS):
        raise RuntimeError(f"the ONNX graph with NMS lacks some of its setting initializers {SETTING_INPUTS}")
    del graph.graph.initializer[:]
    graph.graph.initializer.extend(kept)
    del graph.metadata_props[:]
    onnx.save(graph, str(scratch_path))
    converted = ov.convert_model(str(scratch_path))
    inputs = [port.get_any_name() for port in converted.inputs]
    if inputs != [INPUT_NAME, *SETTING_INPUTS]:
        raise RuntimeError(f"OpenVINO converted the graph with NMS to inputs {inputs}, not {INPUT_NAME!r} + settings")
    return converted


class _CalibrationImages:
    """The images of an :class:`ImageFolderCalibrationReader` as NNCF iterates them (again on every pass)."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader

    def __len__(self) -> int:
        return len(self.reader)

    def __iter__(self) -> Iterator[np.ndarray]:
        self.reader.rewind()
        while (feeds := self.reader.get_next()) is not None:
            yield feeds[INPUT_NAME]


def _calibration_reader(model: nn.Module, options: ExportOptions) -> Any:
    from ssdlite.deploy.export.int8 import ImageFolderCalibrationReader

    return ImageFolderCalibrationReader(
        options.calibration_images,
        image_size=int(model.image_size),
        max_images=options.max_calibration_images or DEFAULT_MAX_CALIBRATION_IMAGES,
    )


def _quantize_network(network: Any, calibration: Any) -> Any:
    """NNCF INT8 post-training quantization of the raw network (an ``openvino.Model``)."""
    import nncf

    images = _CalibrationImages(calibration)
    return nncf.quantize(
        network,
        nncf.Dataset(images),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(images),
        advanced_parameters=nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix.ENABLE),
    )


def _quantization_note(calibration: Any, options: ExportOptions, seconds: float) -> str:
    import nncf

    return (
        f"int8 static, NNCF {nncf.__version__} post-training quantization (OpenVINO backend, preset performance, "
        "7-bit weights: overflow fix), "
        f"calibrated on {len(calibration)} images of {Path(options.calibration_images).name}/ in {seconds:.0f} s; "
        "postprocessing float"
    )


def _attach_postprocess(network: Any, float_model: Any) -> Any:
    """The float postprocessing of ``float_model`` (network + NMS) fed by the outputs of ``network`` (the quantized
    raw network): the consumers of ``float_model``'s ``cls_logits`` / ``box_deltas`` tensors read ``network``'s
    instead, and the model is rebuilt from ``float_model``'s results and ``network``'s input plus the setting
    inputs (the float network, no longer reachable from a result, is dropped)."""
    import openvino as ov

    sources = {name: network.output(name).get_node().input_value(0) for name in RAW_OUTPUT_NAMES}
    redirected = set()
    for operation in float_model.get_ordered_ops():
        for output in operation.outputs():
            for name in output.get_names() & set(RAW_OUTPUT_NAMES):
                for consumer in list(output.get_target_inputs()):
                    consumer.replace_source_output(sources[name])
                    redirected.add(name)
    if redirected != set(RAW_OUTPUT_NAMES):
        missing = sorted(set(RAW_OUTPUT_NAMES) - redirected)
        raise RuntimeError(f"the OpenVINO model with NMS has no consumers of {missing}")
    settings = [
        parameter for parameter in float_model.get_parameters() if parameter.output(0).get_names() & set(SETTING_INPUTS)
    ]
    return ov.Model(float_model.get_results(), [*network.get_parameters(), *settings], "ssdlite_int8")


@register_exporter(
    "openvino",
    title="OpenVINO",
    suffix=".xml",
    companions=(".bin",),
    flags=("with_nms", "dynamic_batch"),
    packages=("onnx", "onnxscript", "openvino"),
    extra="openvino",
)
def _export(model: nn.Module, path: Path, options: ExportOptions) -> Path:
    return export_openvino(model, path, options)


@register_exporter(
    "openvino",
    precision="int8",
    title="OpenVINO",
    suffix=".xml",
    companions=(".bin",),
    flags=("with_nms", "dynamic_batch"),
    packages=("onnx", "onnxscript", "openvino", "nncf"),
    extra="openvino",
)
def _export_int8(model: nn.Module, path: Path, options: ExportOptions) -> Path:
    return export_openvino(model, path, options, int8=True)
