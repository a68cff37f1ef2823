"""The "tflite" backend of the Predictor: LiteRT (``ai-edge-litert``, the successor of ``tflite-runtime``) on a
``.tflite`` file written by the full package's TFLite exporter (``ssdlite-export --format tflite``, with ``--int8``
for INT8).

Such a file decodes boxes and runs class-wise NMS itself, with its postprocessing settings baked in at export. It
takes one NHWC image ``images`` float32 [1, S, S, 3] and returns TensorFlow's detection layout, which this backend
turns into the Predictor's: ``detection_boxes`` (ymin, xmin, ymax, xmax) -> xyxy, ``detection_classes`` (0-based
floats) -> labels 1..K, cut at ``num_detections``. A quantized input or output tensor (an all-integer file) is
quantized / dequantized here with the tensor's own scale and zero point.

The file's metadata (:class:`~ssdlite_runtime.metadata.ModelInfo`'s keys) are entries of the flatbuffer's
``metadata`` list, one per key, read with the flatbuffer schema that ``ai_edge_litert`` ships (no interpreter).

Of the Predictor's settings, the score threshold and ``max_detections`` apply (the Predictor keeps what is above its
threshold; at most ``max_detections`` rows are returned); a lower score threshold, more detections or another NMS
IoU than the file was made with cannot be applied: a warning says so, and re-exporting with those settings
(``ssdlite-export --score-threshold ... --nms-iou ... --max-detections ...``) is the fix. Interpreter threads are
the Predictor's ``threads`` option (None: LiteRT's default).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ssdlite_runtime.backends.base import Backend, Detections, check_file_on_cpu
from ssdlite_runtime.errors import one_line
from ssdlite_runtime.metadata import INPUT_NAME, TFLITE_OUTPUT_NAMES, ModelInfo
from ssdlite_runtime.postprocess import PostprocessSettings

__all__ = ["OUTPUT_NAMES", "TFLiteBackend", "read_tflite_metadata"]

logger = logging.getLogger(__name__)

EXPORT_COMMAND = "ssdlite-export --checkpoint MODEL.ckpt --format tflite --out FILE.tflite"
"""How an ssdlite .tflite file is made (in the full package), for messages."""

OUTPUT_NAMES = TFLITE_OUTPUT_NAMES

SIGNATURE = "serving_default"


def read_tflite_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``metadata`` entries of a .tflite flatbuffer whose buffers hold UTF-8 text, as ``{name: text}``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a TFLite flatbuffer (another format, or truncated); the message names the file.
    """
    from ai_edge_litert import schema_py_generated as schema

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TFLite model not found: {path}")
    content = path.read_bytes()
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ValueError(f"{path} is not a TFLite model (no TFL3 flatbuffer identifier); export one with "
                         f"`{EXPORT_COMMAND}`")
    metadata = {}
    try:
        model = schema.Model.GetRootAs(content, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            if isinstance(data, np.ndarray):
                try:
                    metadata[entry.Name().decode()] = data.tobytes().decode()
                except UnicodeDecodeError:  # a binary entry of the converter, not ours
                    continue
    except Exception as error:  # a truncated flatbuffer reads out of range: struct.error, IndexError, ...
        raise ValueError(
            f"{path} is not a valid TFLite model (truncated or corrupt: its flatbuffer points past the end of the "
            f"file's {len(content)} bytes); export it again with `{EXPORT_COMMAND}`"
        ) from error
    return metadata


class TFLiteBackend(Backend):
    """Runs an ssdlite ``.tflite`` file (float or INT8) with the LiteRT interpreter on the CPU.

    Args:
        path: the ``.tflite`` file.
        threads: interpreter threads (None: LiteRT's default).

    Attributes:
        interpreter: the ``ai_edge_litert.interpreter.Interpreter``.
        metadata: the file's metadata (strings).
    """

    name = "tflite"
    channels_last_input = True  # the file's input is NHWC: the Predictor's channels-last batch transposes for free

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        self.metadata = read_tflite_metadata(self.path)
        if "ssdlite_format" not in self.metadata:
            raise ValueError(
                f"{self.path} is a TFLite model but not one exported by ssdlite (it has no ssdlite metadata: class "
                f"names, input size, output layout); export it with `{EXPORT_COMMAND}`"
            )
        super().__init__(ModelInfo.from_metadata(self.metadata, source=str(self.path)))
        self.threads = threads
        try:
            self.interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
            self.interpreter.allocate_tensors()
            self.runner = self.interpreter.get_signature_runner(SIGNATURE)
        except Exception as error:  # RuntimeError / ValueError from the interpreter: not a loadable model
            reason = one_line(error)[:300] or type(error).__name__
            raise ValueError(f"{self.path} is not a valid TFLite model ({reason}); export it again with "
                             f"`{EXPORT_COMMAND}`") from error
        inputs = self.runner.get_input_details()
        self.outputs: dict[str, dict[str, Any]] = self.runner.get_output_details()
        if list(inputs) != [INPUT_NAME] or set(self.outputs) != set(OUTPUT_NAMES) or not self.info.with_nms:
            raise ValueError(
                f"{self.path} has inputs {list(inputs)} and outputs {sorted(self.outputs)}; an ssdlite TFLite file "
                f"has input {INPUT_NAME!r} and outputs {list(OUTPUT_NAMES)}; export it again with `{EXPORT_COMMAND}`"
            )
        self.input = inputs[INPUT_NAME]
        self.max_detections = self.info.postprocess.max_detections

    def configure_postprocess(self, settings: PostprocessSettings) -> None:
        """Return at most ``settings.max_detections`` rows; warn about settings the file cannot apply."""
        baked = self.info.postprocess
        self.max_detections = settings.max_detections
        cannot = []
        if settings.score_threshold < baked.score_threshold:
            cannot.append(f"score threshold {settings.score_threshold:g} (the file keeps scores > "
                          f"{baked.score_threshold:g})")
        if settings.nms_iou != baked.nms_iou:
            cannot.append(f"NMS IoU {settings.nms_iou:g} (the file's is {baked.nms_iou:g})")
        if settings.max_detections > baked.max_detections:
            cannot.append(f"max detections {settings.max_detections} (the file returns at most "
                          f"{baked.max_detections})")
        if cannot:
            logger.warning(
                f"{self.path.name} has its postprocessing baked in; not applied: {'; '.join(cannot)}. Export it "
                "with those settings (ssdlite-export --format tflite --score-threshold ... --nms-iou ... "
                "--max-detections ...)"
            )

    def run(self, batch: np.ndarray) -> list[Detections]:
        images = batch.transpose(0, 2, 3, 1)  # NHWC; contiguous for the Predictor's channels-last batches
        return [self._run_one(images[i : i + 1]) for i in range(images.shape[0])]

    def _run_one(self, image: np.ndarray) -> Detections:
        outputs = self.runner(**{INPUT_NAME: _quantized(np.ascontiguousarray(image, np.float32), self.input)})
        boxes, classes, scores, count = (_dequantized(outputs[name], self.outputs[name]) for name in OUTPUT_NAMES)
        count = min(int(round(float(count.reshape(-1)[0]))), self.max_detections, scores.shape[1])
        return {
            "boxes": np.clip(boxes[0, :count][:, [1, 0, 3, 2]], 0.0, 1.0),
            "scores": scores[0, :count],
            "labels": np.rint(classes[0, :count]).astype(np.int64) + 1,
        }

    def describe(self) -> str:
        kind = "INT8 " if self.info.quantization != "none" else ""
        threads = f", {self.threads} threads" if self.threads else ""
        return f"{self.name} ({kind}LiteRT, NMS in graph{threads}, {self.path.name})"


def _quantized(values: np.ndarray, details: dict[str, Any]) -> np.ndarray:
    """``values`` as the input tensor's type: quantized with its scale and zero point if it is an integer tensor."""
    dtype = details["dtype"]
    if dtype == np.float32:
        return values
    scale, zero_point = details["quantization_parameters"]["scales"][0], details["quantization_parameters"][
        "zero_points"][0]
    limits = np.iinfo(dtype)
    return np.clip(np.rint(values / scale + zero_point), limits.min, limits.max).astype(dtype)


def _dequantized(values: np.ndarray, details: dict[str, Any]) -> np.ndarray:
    if values.dtype == np.float32:
        return values
    parameters = details["quantization_parameters"]
    return ((values.astype(np.float32) - parameters["zero_points"][0]) * parameters["scales"][0]).astype(np.float32)


def load_tflite(path: str | os.PathLike, *, device: str = "cpu", threads: int | None = None) -> TFLiteBackend:
    """A float or INT8 ``.tflite`` file made by ``ssdlite-export --format tflite``."""
    check_file_on_cpu(path, device, backend="tflite", reads="a .tflite file", runtime="LiteRT",
                      export_command=EXPORT_COMMAND)
    return TFLiteBackend(path, threads=threads)
