"""ONNX Runtime backends of the Predictor: "ort" (float) and "int8" (statically quantized network).

Both read an ``.onnx`` file written by the full package's ONNX exporter (``tools/export.py --format onnx``, with
``--int8`` for INT8), whose metadata gives the class names, input size and scaling and the output layout
(:class:`~ssdlite_runtime.metadata.ModelInfo`). (The full package's Predictor also takes a model or a checkpoint for
these backends, and exports it first.)

* A file exported ``with_nms`` runs decoding + NMS inside ONNX Runtime; the Predictor's thresholds are fed to the
  graph's setting inputs, and its padded outputs are cut at ``num_detections``. This is the default for exports:
  end to end it is faster than raw outputs + the numpy postprocess (the best-first NMS runs in C++;
  ``ssdlite-benchmark --only latency`` compares the two).
* A raw-network file returns ``RawOutputs``; the Predictor decodes them against the default boxes of the metadata.

The metadata is checked against the graph at load (``ModelInfo.check_graph``): the input side, and the class count
and default boxes -- from the raw ``cls_logits`` output's shape [B, A, K + 1], or for a graph with NMS from its
padded output size A * K, which one run on a blank image asked for every candidate gives (:func:`nms_output_rows`;
it costs one forward pass at load).

Session: ``ORT_ENABLE_ALL`` graph optimisation (on x86 this includes the NCHWc layout transform, which runs these
depthwise convolutions much faster than ``ORT_ENABLE_EXTENDED`` leaves them), sequential execution, ``threads``
intra-op threads (default: ONNX Runtime's choice, the physical cores), one inter-op thread.
"""

from __future__ import annotations

import os
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
    metadata_error,
    setting_inputs,
)
from ssdlite_runtime.postprocess import PostprocessSettings

__all__ = ["OnnxRuntimeBackend", "load_onnx_session", "session_options"]

EXPORT_COMMAND = "tools/export.py --checkpoint MODEL.ckpt --format onnx --with-nms --out FILE.onnx"
"""How an ssdlite ONNX file is made (in the full package), for messages."""


def session_options(*, threads: int | None = None) -> Any:
    """ONNX Runtime session options used everywhere (Predictor and benchmark)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    options.log_severity_level = 3  # errors only: not the notes about the overridable postprocess settings
    return options


def load_onnx_session(path: str | os.PathLike, *, threads: int | None = None) -> tuple[Any, dict[str, str]]:
    """An ONNX Runtime session for an ssdlite ONNX file and the file's metadata.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an ONNX model (corrupt, truncated, another format), or an ONNX model that was not exported
            by ssdlite (no ssdlite metadata, or inputs/outputs of another layout); the message names the file.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    try:
        session = ort.InferenceSession(
            str(path), session_options(threads=threads), providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # InvalidProtobuf, Fail, InvalidGraph, ... all mean "not a usable ONNX model"
        reason = one_line(error)[:300] or type(error).__name__
        raise ValueError(f"{path} is not a valid ONNX model ({reason}); export one with `{EXPORT_COMMAND}`") from error
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    if "ssdlite_format" not in metadata:
        raise ValueError(
            f"{path} is an ONNX model but not one exported by ssdlite (it has no ssdlite metadata: class names, "
            "input size, output layout); export it with `tools/export.py --format onnx`"
        )
    inputs = [item.name for item in session.get_inputs()]
    outputs = {item.name for item in session.get_outputs()}
    if INPUT_NAME not in inputs or outputs not in (set(RAW_OUTPUT_NAMES), set(DETECTION_OUTPUT_NAMES)):
        raise ValueError(
            f"{path} has inputs {inputs} and outputs {sorted(outputs)}; an ssdlite ONNX file has input "
            f"{INPUT_NAME!r} and outputs {list(RAW_OUTPUT_NAMES)} or {list(DETECTION_OUTPUT_NAMES)}; re-export it"
        )
    return session, metadata


ALL_CANDIDATES = 2**31
"""``max_detections`` fed to count a graph's candidates: more than any A * K, and twice it still fits in int64 (the
graph takes the ``2 * max_detections`` best scores)."""


def nms_output_rows(session: Any, batch: int, side: int) -> int:
    """The rows D of a with-NMS graph's padded outputs when it is asked for :data:`ALL_CANDIDATES` detections on a
    blank batch: D = min(max_detections, A * K) = A * K, the default boxes times the classes of the graph (nothing
    passes the score threshold of 1, so NMS has no work). ONNX Runtime's own errors pass through (a graph that
    does not run): the caller names the file.
    """
    feed = {
        INPUT_NAME: np.zeros((batch, 3, side, side), np.float32),
        **setting_inputs(PostprocessSettings(score_threshold=1.0, topk_per_class=1, max_detections=1)),
    }
    feed["max_detections"] = np.array([ALL_CANDIDATES], np.int64)
    names = _feedable(session)
    [boxes] = session.run([DETECTION_OUTPUT_NAMES[0]], {name: value for name, value in feed.items() if name in names})
    return int(boxes.shape[1])


def _feedable(session: Any) -> set[str]:
    """The names a session takes: its inputs and its overridable initializers (the setting inputs of our graphs)."""
    return {item.name for item in [*session.get_inputs(), *session.get_overridable_initializers()]}


class OnnxRuntimeBackend(Backend):
    """Runs an ssdlite ONNX file (float or INT8) with ONNX Runtime on the CPU.

    Args:
        path: the ``.onnx`` file.
        name: "ort" or "int8" (what ``describe`` says).
        threads: intra-op threads (None: ONNX Runtime's default).

    Attributes:
        session: the ``onnxruntime.InferenceSession``.
        metadata: the file's metadata (strings).
    """

    channels_last_input = False  # the Predictor writes contiguous NCHW, the graph's input layout

    def __init__(self, path: str | os.PathLike, *, name: str = "ort", threads: int | None = None) -> None:
        self.path = Path(path)
        self.session, self.metadata = load_onnx_session(self.path, threads=threads)
        super().__init__(ModelInfo.from_metadata(self.metadata, source=str(self.path)))
        self.name = name
        self.threads = threads
        batch_dim = self.session.get_inputs()[0].shape[0]
        self.fixed_batch = batch_dim if isinstance(batch_dim, int) else None
        self.output_names = list(DETECTION_OUTPUT_NAMES if self.with_nms else RAW_OUTPUT_NAMES)
        self.settings: dict[str, np.ndarray] = {}
        self._check_graph()

    def _check_graph(self) -> None:
        """The metadata against the graph: its input side, and its class count and default boxes -- the raw
        ``cls_logits`` output's shape [B, A, K + 1], or for a graph with NMS the padded output size A * K that the
        graph gives when asked for more detections than it has candidates (one run on a blank image; see
        :func:`nms_output_rows`)."""
        source = str(self.path)
        inputs = {item.name: item.shape for item in self.session.get_inputs()}
        side = inputs[INPUT_NAME][-1] if len(inputs[INPUT_NAME]) == 4 else None
        if isinstance(side, int):
            self.info.check_graph(source=source, image_size=side, shown=f"input {INPUT_NAME} {inputs[INPUT_NAME]}")
        if not self.with_nms:
            shape = next(item.shape for item in self.session.get_outputs() if item.name == RAW_OUTPUT_NAMES[0])
            if len(shape) == 3:
                columns, anchors = shape[2], shape[1]
                shown = f"its output {RAW_OUTPUT_NAMES[0]} is {shape}, [B, A, K + 1]"
                self.info.check_graph(
                    source=source,
                    num_classes=columns - 1 if isinstance(columns, int) else None,
                    num_anchors=anchors if isinstance(anchors, int) else None,
                    shown=shown,
                )
            return
        boxes = self.info.default_boxes
        if boxes is None or "max_detections" not in _feedable(self.session) or self.fixed_batch not in (None, 1):
            return  # settings folded into constants, or no default boxes to divide by: nothing to compare
        try:
            rows = nms_output_rows(self.session, 1, side if isinstance(side, int) else self.info.image_size)
        except Exception as error:  # onnxruntime's Fail, InvalidArgument, ...: a graph that does not run
            reason = one_line(error)[:300] or type(error).__name__
            raise ValueError(f"{source} does not run in ONNX Runtime ({reason}); export it again with "
                             f"`{EXPORT_COMMAND}`") from error
        if rows % len(boxes):
            raise metadata_error(
                source, "default_boxes", f"holds {len(boxes)} boxes, but asked for every candidate the graph's NMS "
                f"outputs have {rows} rows, not a multiple of {len(boxes)}; the metadata is not this graph's"
            )
        shown = f"asked for every candidate, its NMS outputs have {rows} rows = A x K, A = {len(boxes)} default boxes"
        self.info.check_graph(source=source, num_classes=rows // len(boxes), shown=shown)

    @property
    def with_nms(self) -> bool:
        """Whether the graph decodes and runs NMS itself (``info.with_nms``)."""
        return self.info.with_nms

    def configure_postprocess(self, settings: PostprocessSettings) -> None:
        """Feed the Predictor's postprocessing settings to a ``with_nms`` graph (no effect on a raw graph)."""
        if self.with_nms:
            self.settings = setting_inputs(settings)

    def run(self, batch: np.ndarray) -> RawOutputs | list[Detections]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)  # a no-op for the Predictor's NCHW batches
        return run_in_fixed_batches(self._run, batch, self.fixed_batch, with_nms=self.with_nms)

    def _run(self, batch: np.ndarray) -> RawOutputs | list[Detections]:
        outputs = self.session.run(self.output_names, {INPUT_NAME: batch, **self.settings})
        if not self.with_nms:
            return RawOutputs(*outputs)
        return padded_detections(*outputs)

    def describe(self) -> str:
        kind = "INT8 " if self.info.quantization != "none" else ""
        postprocess = "NMS in graph" if self.with_nms else "raw outputs"
        threads = f", {self.threads} threads" if self.threads else ""
        return f"{self.name} ({kind}ONNX Runtime, {postprocess}{threads}, {self.path.name})"


def load_ort(path: str | os.PathLike, *, device: str = "cpu", threads: int | None = None) -> OnnxRuntimeBackend:
    """A float (or INT8) ``.onnx`` file made by ``tools/export.py --format onnx``."""
    _check_file_and_device(path, device, "ort")
    return OnnxRuntimeBackend(path, name="ort", threads=threads)


def load_int8(path: str | os.PathLike, *, device: str = "cpu", threads: int | None = None) -> OnnxRuntimeBackend:
    """An INT8 ``.onnx`` file made by ``tools/export.py --format onnx --int8 --calib DIR``."""
    _check_file_and_device(path, device, "int8")
    backend = OnnxRuntimeBackend(path, name="int8", threads=threads)
    if backend.info.quantization == "none":
        raise ValueError(
            f"{path} is a float ONNX model; for backend='int8' export a quantized one with "
            "`tools/export.py --format onnx --int8 --calib IMAGES_DIR`, or use backend='ort'"
        )
    return backend


def _check_file_and_device(path: Any, device: Any, backend: str) -> None:
    check_file_on_cpu(
        path, device, backend=backend, reads="an .onnx file", runtime="ONNX Runtime", export_command=EXPORT_COMMAND,
        hint=f", or with the full package: ssdlite.deploy.model_files.export_for_predictor(model, {backend!r}, FOLDER)",
    )
