"""The "ncnn" backend: an ncnn model (``NAME.ncnn.param`` + ``NAME.ncnn.bin``) written by the full package's
``ssdlite-export --format ncnn``, with its metadata in ``NAME.ncnn.json`` beside it (ncnn files have no metadata
slot; the JSON is ``ModelInfo.to_metadata()``).

The file holds the raw network (input blob ``images`` [3, S, S], outputs ``cls_logits`` [A, K + 1] and
``box_deltas`` [A, 4]); this backend returns :class:`RawOutputs` and the Predictor decodes them and runs class-wise
NMS in numpy (:mod:`ssdlite_runtime.postprocess`), the same code as for every raw file. Why not ncnn's own
``DetectionOutput`` layer (Caffe-SSD decoding + per-class NMS, which can be appended to the ``.param``): it decodes
without clamping the log-sizes and runs NMS on unclipped boxes, so its detections are not ours -- in the
feasibility study (/work/exp/REPORT.md, NCNN) boxes crossed the image border by up to 1.8 px, the shapes model lost
AP (30.14 vs eager 30.70; 30.68 with the boxes clipped afterwards), and on a model with boxes far outside the image
NMS kept different boxes (one 105 px off at score >= 0.3). The numpy path is exact by construction.

ncnn runs one image per forward pass (it has no batch axis); a batch is run image by image. Threads: the
Predictor's ``threads`` option (default: ncnn's own, the big cores). ncnn's OpenMP worker threads busy-wait between
layers, which on a machine shared with other work made 2 threads 5x slower than 1 in the study; so the backend sets
``OMP_WAIT_POLICY=PASSIVE`` before ncnn is first imported, unless the environment already sets it. Arithmetic is
float32 (ncnn's fp16 storage and arithmetic, its default on ARMv8.2 CPUs, are switched off so that the results are
the exported model's); ``fp16=True`` gives them back (faster on such CPUs, detections may move slightly).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ssdlite_runtime.backends.base import Backend, RawOutputs, check_file_on_cpu
from ssdlite_runtime.errors import one_line
from ssdlite_runtime.metadata import INPUT_NAME, RAW_OUTPUT_NAMES, ModelInfo

__all__ = ["NcnnBackend", "metadata_file", "weights_file"]

EXPORT_COMMAND = "ssdlite-export --checkpoint MODEL.ckpt --format ncnn --out NAME.ncnn.param"
"""How an ssdlite ncnn model is made (in the full package), for messages."""

OMP_WAIT_POLICY = "OMP_WAIT_POLICY"


def weights_file(param: str | os.PathLike) -> Path:
    """``NAME.ncnn.bin`` beside ``NAME.ncnn.param``."""
    param = Path(param)
    return param.with_name(param.name[: -len(".param")] + ".bin")


def metadata_file(param: str | os.PathLike) -> Path:
    """``NAME.ncnn.json`` beside ``NAME.ncnn.param``: the metadata the exporter writes (``ModelInfo``'s keys)."""
    param = Path(param)
    return param.with_name(param.name[: -len(".param")] + ".json")


@contextlib.contextmanager
def _ncnn_messages() -> Iterator[list[str]]:
    """Collects what ncnn prints on the C-level stderr meanwhile (its load errors) into the yielded list, so a
    failure is one line that quotes them instead of loose lines before it."""
    messages: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield messages
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            messages.extend(line for line in sink.read().decode(errors="replace").splitlines() if line.strip())


class NcnnBackend(Backend):
    """Runs an ssdlite ncnn model on the CPU.

    Args:
        path: the ``.ncnn.param`` file (``.ncnn.bin`` and ``.ncnn.json`` beside it).
        threads: ncnn threads (None: ncnn's default).
        fp16: let ncnn use fp16 storage and arithmetic where the CPU has them (default: float32 throughout).

    Attributes:
        net: the ``ncnn.Net``.
        metadata: the sidecar's metadata (strings).

    Raises:
        FileNotFoundError: no ``.ncnn.param``, ``.ncnn.bin`` or ``.ncnn.json`` (names which).
        ValueError: a file that ncnn cannot read (corrupt, truncated), or metadata that is not ssdlite's.
    """

    channels_last_input = False  # ncnn takes each image as a contiguous [3, S, S] Mat
    name = "ncnn"

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None, fp16: bool = False) -> None:
        self.path = Path(path)
        weights, sidecar = weights_file(self.path), metadata_file(self.path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ncnn model not found: {self.path}")
        if not weights.is_file():
            raise FileNotFoundError(
                f"{self.path}: its weights {weights} are missing; export again with `{EXPORT_COMMAND}`"
            )
        if not sidecar.is_file():
            raise FileNotFoundError(
                f"{self.path}: its metadata {sidecar} (class names, input size, default boxes) is missing; keep the "
                f"three files of `{EXPORT_COMMAND}` together"
            )
        try:
            self.metadata = {str(key): str(value) for key, value in json.loads(sidecar.read_text()).items()}
        except (ValueError, AttributeError, UnicodeDecodeError):
            raise ValueError(
                f"{sidecar} is not a JSON object of ssdlite metadata; export again with `{EXPORT_COMMAND}`"
            ) from None
        super().__init__(ModelInfo.from_metadata(self.metadata, source=str(sidecar)))
        if self.info.with_nms or self.info.default_boxes is None:
            raise ValueError(f"{sidecar} describes a file with NMS inside; an ncnn model holds the raw network")
        self.threads = threads
        self.net = self._load(weights, threads=threads, fp16=fp16)

    def _load(self, weights: Path, *, threads: int | None, fp16: bool) -> Any:
        os.environ.setdefault(OMP_WAIT_POLICY, "PASSIVE")  # read when ncnn's OpenMP runtime loads, i.e. below
        import ncnn

        net = ncnn.Net()
        if threads is not None:
            net.opt.num_threads = int(threads)
        net.opt.use_fp16_packed = net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = bool(fp16)
        net.opt.use_bf16_storage = False
        with _ncnn_messages() as messages:
            failed = net.load_param(str(self.path)) != 0
        if failed:
            said = f"ncnn: {one_line('; '.join(messages))}" if messages else "ncnn could not parse it"
            raise ValueError(
                f"{self.path} is not a valid ncnn .param file ({said}); export again with `{EXPORT_COMMAND}`"
            )
        with _ncnn_messages() as messages:
            failed = net.load_model(str(weights)) != 0
        if failed:
            said = f"ncnn: {one_line('; '.join(messages))}" if messages else "ncnn could not read it"
            raise ValueError(
                f"{weights} is truncated or not the weights of {self.path.name} ({said}); export again with "
                f"`{EXPORT_COMMAND}`"
            )
        inputs, outputs = list(net.input_names()), set(net.output_names())
        if inputs != [INPUT_NAME] or not set(RAW_OUTPUT_NAMES) <= outputs:
            raise ValueError(
                f"{self.path} has input blobs {inputs} and outputs {sorted(outputs)}; an ssdlite ncnn model has "
                f"input {INPUT_NAME!r} and outputs {list(RAW_OUTPUT_NAMES)}; export it with `{EXPORT_COMMAND}`"
            )
        return net

    def run(self, batch: np.ndarray) -> RawOutputs:
        import ncnn

        batch = np.ascontiguousarray(batch, dtype=np.float32)
        anchors, columns = len(self.info.default_boxes), self.info.num_classes + 1
        logits, deltas = [], []
        for image in batch:
            extractor = self.net.create_extractor()
            extractor.input(INPUT_NAME, ncnn.Mat(image).clone())
            outputs = []
            for name, width in zip(RAW_OUTPUT_NAMES, (columns, 4)):
                status, mat = extractor.extract(name)
                output = np.array(mat)
                if status != 0 or output.shape != (anchors, width):
                    raise ValueError(
                        f"{self.path}: output {name!r} is {output.shape} (status {status}), but its metadata "
                        f"{metadata_file(self.path).name} says [{anchors}, {width}]; the .ncnn.* files are not from "
                        f"one export: export again with `{EXPORT_COMMAND}`"
                    )
                outputs.append(output)
            logits.append(outputs[0])
            deltas.append(outputs[1])
        return RawOutputs(np.stack(logits), np.stack(deltas))

    def describe(self) -> str:
        threads = f", {self.threads} threads" if self.threads else ""
        return f"ncnn (NCNN, raw outputs + numpy NMS{threads}, {self.path.name})"


def load_ncnn(
    path: str | os.PathLike, *, device: str = "cpu", threads: int | None = None, fp16: bool = False
) -> NcnnBackend:
    """An ``.ncnn.param`` file made by ``ssdlite-export --format ncnn`` (with its ``.ncnn.bin`` and ``.ncnn.json``)."""
    check_file_on_cpu(path, device, backend="ncnn", reads="an .ncnn.param file", runtime="ncnn",
                      export_command=EXPORT_COMMAND)
    return NcnnBackend(path, threads=threads, fp16=fp16)
