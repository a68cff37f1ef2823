"""The "openvino" backend of the Predictor: an OpenVINO IR (``model.xml`` + ``model.bin``) on the CPU.

Reads an IR written by the full package's OpenVINO exporter (``ssdlite-export --format openvino``, float or
``--int8``), whose ``rt_info`` section ``ssdlite`` holds the file's metadata (:class:`~ssdlite_runtime.metadata.
ModelInfo`: class names, input size and scaling, default boxes, postprocess settings, whether NMS is inside).

* An IR exported ``with_nms`` decodes and runs NMS inside OpenVINO. Its four postprocessing settings are inputs of
  the IR (the exporter keeps them: see ``ssdlite.deploy.export.openvino``), so the Predictor's score threshold, NMS
  IoU, candidates per class and detections per image are fed to the graph on every call, as for an ONNX file; its
  padded outputs are cut at ``num_detections``. (An IR converted elsewhere, whose settings were folded into
  constants, runs with its built-in settings; the Predictor still applies its score threshold and class filter to
  what it returns.)
* A raw-network IR returns ``RawOutputs``; the Predictor decodes them against the default boxes of the metadata.

Compiled for the CPU with ``INFERENCE_NUM_THREADS`` = ``threads`` (default: OpenVINO's choice), one stream, the
latency hint, and ``ENABLE_CPU_PINNING`` off: pinned threads ran 1.4-2.5x slower whenever other processes shared the
cores (measured in the issue 17 study), which is the usual situation on a small device.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import numpy as np

from ssdlite_runtime.backends.base import (
    Backend,
    Detections,
    RawOutputs,
    check_file_on_cpu,
    padded_detections,
    run_in_fixed_batches,
)
from ssdlite_runtime.errors import one_line
from ssdlite_runtime.metadata import (
    DETECTION_OUTPUT_NAMES,
    INPUT_NAME,
    RAW_OUTPUT_NAMES,
    ModelInfo,
    setting_inputs,
)
from ssdlite_runtime.postprocess import PostprocessSettings

__all__ = ["METADATA_SECTION", "OpenVinoBackend", "compile_config", "read_openvino_model"]

METADATA_SECTION = "ssdlite"
"""The IR's ``rt_info`` section that holds the ssdlite metadata (written by the full package's exporter)."""

EXPORT_COMMAND = "ssdlite-export --checkpoint MODEL.ckpt --format openvino --with-nms --out FILE.xml"
"""How an ssdlite IR is made (in the full package), for messages."""


def compile_config(threads: int | None = None) -> dict[str, Any]:
    """The OpenVINO CPU settings used everywhere (Predictor and benchmark); see the module docstring."""
    config: dict[str, Any] = {"NUM_STREAMS": 1, "ENABLE_CPU_PINNING": False, "PERFORMANCE_HINT": "LATENCY"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


def read_openvino_model(path: str | os.PathLike) -> tuple[Any, Any, dict[str, str]]:
    """An ``openvino.Core``, the IR read with it, and the IR's ssdlite metadata.

    Raises:
        FileNotFoundError: no such .xml file, or no .bin file beside it.
        ValueError: not an OpenVINO IR (not XML, or another XML), a truncated or damaged .xml or .bin, or an IR
            that was not exported by ssdlite; the message names the file.
    """
    import openvino as ov

    path = Path(path)
    weights = path.with_suffix(".bin")
    if not path.is_file():
        raise FileNotFoundError(f"OpenVINO IR not found: {path}")
    _check_ir_xml(path)
    if not weights.is_file():
        raise FileNotFoundError(
            f"{weights} not found: an OpenVINO IR is two files, {path.name} and its weights {weights.name} beside it"
        )
    core = ov.Core()
    try:
        model = core.read_model(str(path), str(weights))
    except Exception as error:  # RuntimeError: truncated or corrupt .xml / .bin
        raise ValueError(
            f"{path} (with {weights.name}) is not a valid OpenVINO IR ({_reason(error)}); the file may be truncated "
            f"or damaged: export it again with `{EXPORT_COMMAND}`"
        ) from error
    if not model.has_rt_info([METADATA_SECTION, "ssdlite_format"]):
        raise ValueError(
            f"{path} is an OpenVINO IR but not one exported by ssdlite (it has no ssdlite metadata: class names, "
            f"input size, output layout); export it with `{EXPORT_COMMAND}`"
        )
    section = model.get_rt_info([METADATA_SECTION]).astype(dict)
    metadata = {str(key): value.astype(str) for key, value in section.items()}
    return core, model, metadata


def _check_ir_xml(path: Path) -> None:
    """A ValueError unless ``path`` is XML whose root element is an IR's ``<net>`` (checked before OpenVINO reads
    it: OpenVINO tries every frontend on a file it cannot read, and some print their parse errors on stderr)."""
    try:
        _, root = next(ElementTree.iterparse(str(path), events=("start",)))
    except (ElementTree.ParseError, StopIteration, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path} is not an OpenVINO IR .xml file (not XML: {one_line(error) or 'empty'}); export one with "
            f"`{EXPORT_COMMAND}`"
        ) from None
    if root.tag != "net":
        raise ValueError(
            f"{path} is XML but not an OpenVINO IR (its root element is <{root.tag}>, not <net>); export one with "
            f"`{EXPORT_COMMAND}`"
        )


def _reason(error: BaseException) -> str:
    """OpenVINO's message without its ``Exception from src/...`` / ``Check '...' failed at ...`` location lines."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from ", "Check '"))]
    return one_line(" ".join(useful or lines))[:300] or type(error).__name__


def _tensor_shape(model: Any, name: str) -> list[int | None] | None:
    """The shape of the tensor called ``name`` anywhere in the model (an output, or inside the graph: the raw
    ``cls_logits`` of an IR with NMS), None for a dynamic dimension; None if there is no such tensor."""
    for op in model.get_ops():
        for output in op.outputs():
            if name in output.get_names():
                shape = output.get_partial_shape()
                if shape.rank.is_dynamic:
                    return None
                return [dim.get_length() if dim.is_static else None for dim in shape]
    return None


def _check_graph(model: Any, info: ModelInfo, source: str) -> None:
    """The metadata against the IR: the input side, and the class count and default boxes of ``cls_logits``
    [B, A, K + 1] (an output of a raw IR, a tensor inside one with NMS)."""
    images = _tensor_shape(model, INPUT_NAME)
    if images is not None and len(images) == 4 and images[3] is not None:
        info.check_graph(source=source, image_size=images[3], shown=f"input {INPUT_NAME} {images}")
    logits = _tensor_shape(model, RAW_OUTPUT_NAMES[0])
    if logits is not None and len(logits) == 3:
        columns, anchors = logits[2], logits[1]
        info.check_graph(
            source=source,
            num_classes=None if columns is None else columns - 1,
            num_anchors=anchors,
            shown=f"its tensor {RAW_OUTPUT_NAMES[0]} is {logits}, [B, A, K + 1]",
        )


class OpenVinoBackend(Backend):
    """Runs an ssdlite OpenVINO IR (float or INT8) on the CPU.

    Args:
        path: the ``.xml`` file (its ``.bin`` beside it).
        threads: OpenVINO inference threads (None: OpenVINO's default).

    Attributes:
        compiled: the ``openvino.CompiledModel``.
        metadata: the IR's ssdlite metadata (strings).
    """

    name = "openvino"
    channels_last_input = False  # the Predictor writes contiguous NCHW, the graph's input layout

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None) -> None:
        self.path = Path(path)
        core, model, self.metadata = read_openvino_model(self.path)
        super().__init__(ModelInfo.from_metadata(self.metadata, source=str(self.path)))
        self.threads = threads
        inputs = [port.get_any_name() for port in model.inputs]
        outputs = {port.get_any_name() for port in model.outputs}
        expected = set(DETECTION_OUTPUT_NAMES if self.with_nms else RAW_OUTPUT_NAMES)
        if INPUT_NAME not in inputs or outputs != expected:
            raise ValueError(
                f"{self.path} has inputs {inputs} and outputs {sorted(outputs)}; an ssdlite OpenVINO IR has input "
                f"{INPUT_NAME!r} and outputs {sorted(expected)} (its metadata says with_nms={self.with_nms}); "
                "export it again"
            )
        _check_graph(model, self.info, str(self.path))
        self.setting_names = [name for name in inputs if name != INPUT_NAME]
        batch_dim = model.input(INPUT_NAME).get_partial_shape()[0]
        self.fixed_batch = batch_dim.get_length() if batch_dim.is_static else None
        self.output_names = list(DETECTION_OUTPUT_NAMES if self.with_nms else RAW_OUTPUT_NAMES)
        try:
            self.compiled = core.compile_model(model, "CPU", compile_config(threads))
        except Exception as error:
            raise ValueError(f"OpenVINO cannot compile {self.path} for the CPU ({_reason(error)})") from error
        self.request = self.compiled.create_infer_request()
        self.outputs = [self.compiled.output(name) for name in self.output_names]
        self.configure_postprocess(self.info.postprocess)  # the file's defaults until the Predictor sets its own

    @property
    def with_nms(self) -> bool:
        """Whether the graph decodes and runs NMS itself (``info.with_nms``)."""
        return self.info.with_nms

    def configure_postprocess(self, settings: PostprocessSettings) -> None:
        """Feed the Predictor's postprocessing settings to a ``with_nms`` graph's setting inputs."""
        values = setting_inputs(settings)
        self.settings = {name: values[name] for name in self.setting_names if name in values}

    def run(self, batch: np.ndarray) -> RawOutputs | list[Detections]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)  # a no-op for the Predictor's NCHW batches
        return run_in_fixed_batches(self._run, batch, self.fixed_batch, with_nms=self.with_nms)

    def _run(self, batch: np.ndarray) -> RawOutputs | list[Detections]:
        results = self.request.infer({INPUT_NAME: batch, **self.settings})
        outputs = [np.array(results[port]) for port in self.outputs]  # copies: the request reuses its tensors
        if not self.with_nms:
            return RawOutputs(*outputs)
        return padded_detections(*outputs)

    def describe(self) -> str:
        kind = "INT8 " if self.info.quantization != "none" else ""
        postprocess = "NMS in graph" if self.with_nms else "raw outputs"
        threads = f", {self.threads} threads" if self.threads else ""
        return f"{self.name} ({kind}OpenVINO, {postprocess}{threads}, {self.path.name})"


def load_openvino(path: str | os.PathLike, *, device: str = "cpu", threads: int | None = None) -> OpenVinoBackend:
    """A float or INT8 OpenVINO IR (``.xml`` + ``.bin``) made by ``ssdlite-export --format openvino``."""
    check_file_on_cpu(path, device, backend="openvino", reads="an .xml file (OpenVINO IR)", runtime="OpenVINO",
                      export_command=EXPORT_COMMAND)
    return OpenVinoBackend(path, threads=threads)
