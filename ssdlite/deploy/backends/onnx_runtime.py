"""ONNX Runtime backends of the Predictor: "ort" (float) and "int8" (statically quantized network).

Both read an ``.onnx`` file written by :mod:`ssdlite.deploy.export.onnx` / :mod:`ssdlite.deploy.export.int8`, whose
metadata gives the class names, input size and output layout; given a model or a training checkpoint instead, they
export (and, for INT8, calibrate) one first, into a temporary folder.

* A file exported ``with_nms`` runs decoding + NMS inside ONNX Runtime; the Predictor's thresholds are fed to the
  graph's setting inputs, and its padded outputs are cut at ``num_detections``. This is the default for exports
  made here: end to end it is faster than raw outputs + the PyTorch postprocess (no tensor round trip, the
  best-first NMS runs in C++; ``ssdlite-benchmark --only latency`` compares the two).
* A raw-network file returns ``RawOutputs``; the Predictor decodes them with the default boxes rebuilt from the
  metadata (``model_config`` + ``feature_sizes``).

Session: ``ORT_ENABLE_ALL`` graph optimisation (on x86 this includes the NCHWc layout transform, which runs these
depthwise convolutions much faster than ``ORT_ENABLE_EXTENDED`` leaves them), sequential execution, ``threads`` intra-op threads
(default: ONNX Runtime's choice, the physical cores), one inter-op thread.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ssdlite.core.postprocess import PostprocessSettings
from ssdlite.deploy.backends.base import Backend, Detections, ModelInfo, RawOutputs, register_backend
from ssdlite.deploy.metadata import DETECTION_OUTPUT_NAMES, INPUT_NAME, RAW_OUTPUT_NAMES, setting_inputs
from ssdlite.deploy.model_files import model_and_labels
from ssdlite_runtime.errors import one_line

__all__ = ["OnnxRuntimeBackend", "load_onnx_session", "session_options"]


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


def load_onnx_session(path: str | Path, *, threads: int | None = None) -> tuple[Any, dict[str, str]]:
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
        raise ValueError(
            f"{path} is not a valid ONNX model ({reason}); export one with "
            "`tools/export.py --checkpoint MODEL.ckpt --format onnx --out FILE.onnx`"
        ) from error
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


def anchors_from_metadata(metadata: dict[str, str]) -> torch.Tensor:
    """Default boxes Tensor[A, 4] (cx, cy, w, h) of a raw-network file, rebuilt from its metadata."""
    from ssdlite.core.anchors import default_boxes
    from ssdlite.models import box_config_from

    config = json.loads(metadata["model_config"])
    feature_sizes = tuple(tuple(size) for size in json.loads(metadata["feature_sizes"]))
    box_config = box_config_from(config["default_boxes"], num_feature_maps=len(feature_sizes))
    return default_boxes(box_config, feature_sizes)


class OnnxRuntimeBackend(Backend):
    """Runs an ssdlite ONNX file (float or INT8) with ONNX Runtime on the CPU.

    Args:
        path: the ``.onnx`` file.
        name: "ort" or "int8" (what ``describe`` says).
        threads: intra-op threads (None: ONNX Runtime's default).

    Attributes:
        session: the ``onnxruntime.InferenceSession``.
        metadata: the file's metadata (strings).
        with_nms: whether the graph decodes and runs NMS itself.
    """

    def __init__(self, path: str | Path, *, name: str = "ort", threads: int | None = None) -> None:
        self.path = Path(path)
        self.session, self.metadata = load_onnx_session(self.path, threads=threads)
        self.name = name
        self.threads = threads
        self.with_nms = json.loads(self.metadata.get("with_nms", "false"))
        info = ModelInfo(
            class_names=json.loads(self.metadata["class_names"]),
            category_ids=json.loads(self.metadata["category_ids"]),
            image_size=int(self.metadata["input_size"]),
            anchors=None if self.with_nms else anchors_from_metadata(self.metadata),
        )
        super().__init__(info)
        batch_dim = self.session.get_inputs()[0].shape[0]
        self.fixed_batch = batch_dim if isinstance(batch_dim, int) else None
        self.output_names = list(DETECTION_OUTPUT_NAMES if self.with_nms else RAW_OUTPUT_NAMES)
        self.settings: dict[str, np.ndarray] = {}

    channels_last_input = False  # the Predictor writes contiguous NCHW, the graph's input layout

    def configure_postprocess(self, settings: PostprocessSettings) -> None:
        """Feed the Predictor's postprocessing settings to a ``with_nms`` graph (no effect on a raw graph)."""
        if self.with_nms:
            self.settings = setting_inputs(settings)

    def run(self, batch: np.ndarray) -> RawOutputs | list[Detections]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)  # a no-op for the Predictor's NCHW batches
        if self.fixed_batch is not None and batch.shape[0] != self.fixed_batch:
            parts = [self._run(batch[i : i + self.fixed_batch]) for i in range(0, batch.shape[0], self.fixed_batch)]
            if self.with_nms:
                return [detections for part in parts for detections in part]
            return RawOutputs(*(torch.cat(tensors) for tensors in zip(*parts)))
        return self._run(batch)

    def _run(self, batch: np.ndarray) -> RawOutputs | list[Detections]:
        outputs = self.session.run(self.output_names, {INPUT_NAME: batch, **self.settings})
        if not self.with_nms:
            return RawOutputs(torch.from_numpy(outputs[0]), torch.from_numpy(outputs[1]))
        boxes, scores, labels, counts = outputs
        return [
            {"boxes": boxes[i, :count], "scores": scores[i, :count], "labels": labels[i, :count]}
            for i, count in enumerate(counts.tolist())
        ]

    def describe(self) -> str:
        kind = "INT8 " if self.metadata.get("quantization", "none") != "none" else ""
        postprocess = "NMS in graph" if self.with_nms else "raw outputs"
        threads = f", {self.threads} threads" if self.threads else ""
        return f"{self.name} ({kind}ONNX Runtime, {postprocess}{threads}, {self.path.name})"


# ----------------------------------------------------------------------------------------------------- loaders


def _is_onnx_file(model_or_path: Any) -> bool:
    return not isinstance(model_or_path, nn.Module) and Path(model_or_path).suffix.lower() == ".onnx"


@register_backend(
    "ort", suffixes=(".onnx",), packages=("onnxruntime",), extra="export", file_kind="an ONNX file"
)
def load_ort(
    model_or_path: nn.Module | str | Path,
    *,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    with_nms: bool = True,
    class_names: Sequence[str] | None = None,
    category_ids: Sequence[int] | None = None,
    export_dir: str | Path | None = None,
) -> OnnxRuntimeBackend:
    """An ``.onnx`` file, or a model / checkpoint exported on the fly (``with_nms``) into ``export_dir``."""
    _check_cpu(device, "ort")
    if _is_onnx_file(model_or_path):
        return OnnxRuntimeBackend(model_or_path, name="ort", threads=threads)
    from ssdlite.deploy.export.onnx import export_onnx

    model, class_names, category_ids = model_and_labels(model_or_path, class_names, category_ids)
    path = _scratch_dir(export_dir) / "model.onnx"
    export_onnx(model, path, class_names=class_names, category_ids=category_ids, with_nms=with_nms, dynamic_batch=True)
    return OnnxRuntimeBackend(path, name="ort", threads=threads)


@register_backend("int8", packages=("onnxruntime",), extra="export")
def load_int8(
    model_or_path: nn.Module | str | Path,
    *,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    calibration_images: str | Path | None = None,
    max_calibration_images: int | None = None,
    with_nms: bool = True,
    class_names: Sequence[str] | None = None,
    category_ids: Sequence[int] | None = None,
    export_dir: str | Path | None = None,
) -> OnnxRuntimeBackend:
    """An INT8 ``.onnx`` file, or a model / checkpoint quantized on the fly with ``calibration_images`` (at most
    ``max_calibration_images`` of them; default: the INT8 exporter's)."""
    _check_cpu(device, "int8")
    if _is_onnx_file(model_or_path):
        backend = OnnxRuntimeBackend(model_or_path, name="int8", threads=threads)
        if backend.metadata.get("quantization", "none") == "none":
            raise ValueError(
                f"{model_or_path} is a float ONNX model; for backend='int8' export a quantized one with "
                "`tools/export.py --format onnx --int8 --calib IMAGES_DIR`, or use backend='ort'"
            )
        return backend
    if calibration_images is None:
        raise ValueError(
            "backend='int8' with a model or checkpoint needs calibration_images=FOLDER (representative images); "
            "or pass an INT8 .onnx file made by `tools/export.py --int8 --calib DIR`"
        )
    from ssdlite.deploy.export.int8 import quantize_model

    model, class_names, category_ids = model_and_labels(model_or_path, class_names, category_ids)
    path = _scratch_dir(export_dir) / "model.int8.onnx"
    limit = {} if max_calibration_images is None else {"max_calibration_images": max_calibration_images}
    quantize_model(
        model,
        path,
        calibration_images=calibration_images,
        class_names=class_names,
        category_ids=category_ids,
        with_nms=with_nms,
        dynamic_batch=True,
        **limit,
    )
    return OnnxRuntimeBackend(path, name="int8", threads=threads)


def _check_cpu(device: str | torch.device, backend: str) -> None:
    if torch.device(device).type != "cpu":
        raise ValueError(f"backend {backend!r} runs on the CPU (ONNX Runtime); got device={device!r}")


_SCRATCH: list[tempfile.TemporaryDirectory] = []


def _scratch_dir(export_dir: str | Path | None) -> Path:
    """``export_dir`` (created), or a temporary folder that lives as long as the process."""
    if export_dir is not None:
        Path(export_dir).mkdir(parents=True, exist_ok=True)
        return Path(export_dir)
    scratch = tempfile.TemporaryDirectory(prefix="ssdlite_ort_")
    _SCRATCH.append(scratch)
    return Path(scratch.name)
