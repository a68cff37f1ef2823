"""The "tflite" exporter: a trained SSDLite as a TFLite (LiteRT) flatbuffer with decoding + NMS inside, float32 or INT8.

Conversion: ``litert_torch.convert(module.eval(), sample_kwargs={"images": example}).export(path)`` (torch.export,
then LiteRT's MLIR converter; no TensorFlow). The converted module is
:class:`~ssdlite.deploy.export.tflite_postprocess.DetectionGraph`: the BatchNorm-folded network, softmax, box
decoding against the default boxes and class-wise NMS written as plain tensor ops (``torchvision.ops.nms`` has no
LiteRT lowering), with the postprocessing settings baked in (``ssdlite-export --score-threshold ...``; the
evaluation settings by default). The file takes one image and runs on LiteRT's CPU kernels (XNNPACK).

Tensors (the layout of TensorFlow's detection models, what Android's TFLite Task Library ``ObjectDetector`` and
the usual Android detection samples read):

* input ``images`` float32 [1, S, S, 3]: NHWC (TFLite's native layout), RGB, stretched to S x S (bilinear), scaled
  as ``(pixel - 127.5) / 127.5`` (the metadata's ``mean`` / ``scale``);
* outputs, in this order: ``detection_boxes`` float32 [1, D, 4] (ymin, xmin, ymax, xmax) normalised to [0, 1],
  ``detection_classes`` float32 [1, D] 0-based (``class_names[int(c)]``), ``detection_scores`` float32 [1, D]
  best first, ``num_detections`` float32 [1]; rows past ``num_detections`` are zeros. D = ``max_detections``.

Why not TFLite's own ``TFLite_Detection_PostProcess`` custom op (what TensorFlow's detection models use): it can be
spliced in, but in regular-NMS mode (class-wise, our postprocessing) ai-edge-litert 2.3 returned wrong results with
2 or 3 interpreter threads (whole classes missing; 1 and 4 threads agreed), it is slow (it sorts every class over all
anchors), its fast mode keeps one class per anchor (not our postprocessing), and it does not clip boxes to the
image, so boxes and NMS decisions at the border differ from training's evaluation. The plain-op NMS gives the eager
detections with any thread count.

Metadata: every key of :mod:`ssdlite_runtime.metadata` (``ModelInfo.to_metadata()``) is appended to the flatbuffer's
``metadata`` list as its own entry (name = key, a buffer holding the UTF-8 value), read back without an interpreter
by ``ssdlite_runtime.backends.tflite``; interpreters ignore it. (TFLite-Support metadata, which the Task Library can
use for labels and normalisation, needs the unmaintained ``tflite-support`` package and is not written: an Android
app passes the labels and the input scaling itself.)

INT8 (``--int8 --calib DIR``): ai-edge-quantizer post-training static quantization, calibrated on the folder's
images preprocessed exactly as the Predictor does (the ONNX INT8 exporter's reader, ``ImageFolderCalibrationReader``).
The network is quantized full-integer with the ``static_wi8_ai8`` recipe's configuration (int8 weights per channel,
int8 activations, integer kernels); decoding and NMS stay float32, and so do the input and the four outputs: run
through the same recipe, the postprocessing became int8 too, and its outputs saturated (class indices clipped at
the largest class seen in calibration, ``num_detections`` at 51, scores rounded to 1/260). If full-integer
quantization fails, the exporter falls back to dynamic-range quantization (int8 weights, float activations,
``dynamic_wi8_afp32``; no calibration) and says so in a warning; the file's ``quantization`` metadata says which.
"""

from __future__ import annotations

import re
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ssdlite.core.postprocess import EVALUATION_POSTPROCESS, PostprocessSettings
from ssdlite.deploy.export.base import (
    DEFAULT_MAX_CALIBRATION_IMAGES,
    ExportOptions,
    inference_network,
    register_exporter,
)
from ssdlite.deploy.export.tflite_postprocess import DetectionGraph
from ssdlite.deploy.metadata import model_metadata
from ssdlite_runtime.metadata import INPUT_NAME

if TYPE_CHECKING:
    from ssdlite.deploy.export.int8 import ImageFolderCalibrationReader

__all__ = ["add_tflite_metadata", "export_tflite", "quantize_tflite"]

_NOTE = "TFLite files take one image and always decode and run NMS inside (Android's detection layout)"


def export_tflite(
    model: nn.Module,
    path: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    category_ids: Sequence[int] | None = None,
    postprocess: PostprocessSettings | None = None,
    calibration_images: str | Path | None = None,
    max_calibration_images: int = DEFAULT_MAX_CALIBRATION_IMAGES,
    float_tflite: str | Path | None = None,
) -> Path:
    """Export ``model`` to a ``.tflite`` file with decoding + NMS inside (see the module docstring for the layout).

    Args:
        model: an SSDLite (left unchanged; the file has BatchNorm folded into the convolutions).
        path: output file (parent folders are created).
        class_names, category_ids: stored in the metadata.
        postprocess: the settings baked into the graph (default: the evaluation settings).
        calibration_images: a folder of images: quantize to INT8, calibrated on them (None: float32).
        max_calibration_images: use at most this many calibration images.
        float_tflite: a float file already exported from ``model`` with the same ``postprocess``: quantized
            instead of converting again (INT8 only).

    Returns:
        The written path.
    """
    from ssdlite.deploy.export.int8 import ImageFolderCalibrationReader

    path = Path(path)
    settings = postprocess or EVALUATION_POSTPROCESS
    size = int(model.image_size)
    calibration = None  # read before converting, so a folder of unreadable images fails at once
    if calibration_images is not None:
        calibration = ImageFolderCalibrationReader(
            calibration_images, image_size=size, max_images=max_calibration_images
        )
    graph = DetectionGraph(inference_network(model), model.anchors, int(model.num_classes), settings).eval()
    with tempfile.TemporaryDirectory(prefix="ssdlite_tflite_") as scratch:
        float_file = Path(scratch) / "float.tflite"
        if float_tflite is not None and calibration_images is not None:
            float_file = Path(float_tflite)
        else:
            convert_tflite(graph, float_file, image_size=size)
        if calibration is None:
            content, quantization = float_file.read_bytes(), "none"
        else:
            content, quantization = quantize_tflite(float_file, calibration, image_size=size)
    metadata = model_metadata(
        model, class_names=class_names, category_ids=category_ids, postprocess=settings, quantization=quantization
    )
    metadata.update(
        input_layout=f"NHWC float32 [1, {size}, {size}, 3]",
        box_format="(ymin, xmin, ymax, xmax) normalised to [0, 1] of the image",
        output_layout=(
            f"detection_boxes float32 [1, D, 4] (ymin, xmin, ymax, xmax), detection_classes float32 [1, D] "
            f"(0-based: class_names[int(c)]), detection_scores float32 [1, D] (best first), num_detections float32 "
            f"[1]; rows past num_detections are zeros; D = {graph.num_detections}"
        ),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(add_tflite_metadata(content, metadata))
    return path


def convert_tflite(graph: DetectionGraph, path: Path, *, image_size: int) -> Path:
    """``graph`` converted by LiteRT's converter to ``path`` (no metadata), input ``images`` [1, S, S, 3]."""
    import litert_torch

    example = torch.zeros(1, image_size, image_size, 3)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # converter chatter (deprecations inside torch.export / litert_torch)
        litert_torch.convert(graph, sample_kwargs={INPUT_NAME: example}).export(str(path))
    return path


def quantize_tflite(
    float_file: str | Path,
    calibration_images: str | Path | ImageFolderCalibrationReader,
    *,
    image_size: int,
    max_images: int = DEFAULT_MAX_CALIBRATION_IMAGES,
) -> tuple[bytes, str]:
    """The INT8 version of a float ssdlite ``.tflite`` file (network full-integer, postprocessing float).

    Args:
        float_file: a file written by the converter (signature ``serving_default``, input ``images``).
        calibration_images: folder of representative images, or a reader over one already made (then
            ``max_images`` is the reader's).
        image_size: the network's input side S.
        max_images: use at most this many (evenly spread).

    Returns:
        (the quantized flatbuffer, the ``quantization`` metadata value describing it).

    Raises:
        FileNotFoundError: the calibration folder does not exist.
        ValueError: it holds no images.
    """
    from ai_edge_quantizer import quantizer, recipe

    from ssdlite.deploy.export.int8 import ImageFolderCalibrationReader

    reader = calibration_images
    if not isinstance(reader, ImageFolderCalibrationReader):
        reader = ImageFolderCalibrationReader(calibration_images, image_size=image_size, max_images=max_images)
    started = time.perf_counter()
    feeds = []
    while (feed := reader.get_next()) is not None:  # NCHW batches of one image -> NHWC
        feeds.append({INPUT_NAME: feed[INPUT_NAME].transpose(0, 2, 3, 1).copy()})
    try:
        with warnings.catch_warnings():  # calibration keeps every tensor, which LiteRT calls a debugging option
            warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
            engine = quantizer.Quantizer(str(float_file), _network_only(recipe.static_wi8_ai8()))
            result = engine.quantize(engine.calibrate({"serving_default": feeds}, num_threads=1))
        description = (
            f"int8 static (ai-edge-quantizer static_wi8_ai8 on the network: int8 per-channel weights, int8 "
            f"activations), calibrated on {len(feeds)} images of {reader.folder.name}/ in "
            f"{time.perf_counter() - started:.0f} s; decoding, NMS, input and outputs float32"
        )
    except Exception as error:  # the quantizer's failures have no common type
        warnings.warn(
            f"TFLite full-integer INT8 quantization failed ({' '.join(str(error).split())[:300]}); falling back to "
            "dynamic-range quantization (int8 weights, float activations: smaller, not faster)",
            stacklevel=2,
        )
        engine = quantizer.Quantizer(str(float_file), recipe.dynamic_wi8_afp32())
        result = engine.quantize()
        description = "int8 dynamic-range (ai-edge-quantizer dynamic_wi8_afp32: int8 weights, float activations)"
    return bytes(result.quantized_model), description


def _network_only(recipe: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``recipe`` restricted to the tensors of the network: the converter names them by module path, and the
    network is ``DetectionGraph.network``."""
    scope = f".*{re.escape(DetectionGraph.__name__)}/[^/;]*_network[/;].*"
    return [{**entry, "regex": scope} for entry in recipe]


def add_tflite_metadata(content: bytes, metadata: dict[str, str]) -> bytes:
    """``content`` (a .tflite flatbuffer) with one ``metadata`` entry per key (its buffer: the UTF-8 value),
    replacing entries of the same names."""
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    for buffer in model.buffers:  # data stored after the flatbuffer (the quantizer's output): move it inside
        if buffer.offset > 1:
            buffer.data = np.frombuffer(content, dtype=np.uint8, count=buffer.size, offset=buffer.offset)
            buffer.offset = buffer.size = 0
    model.metadata = [entry for entry in model.metadata or [] if entry.name.decode() not in metadata]
    for key, value in metadata.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(value.encode(), dtype=np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = key.encode()
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    builder = flatbuffers.Builder(len(content) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@register_exporter(
    "tflite",
    title="TFLite",
    suffix=".tflite",
    flags=("with_nms",),
    packages=("litert_torch", "ai_edge_litert"),
    extra="tflite",
    note=_NOTE,
)
def _export(model: nn.Module, path: Path, options: ExportOptions) -> Path:
    return export_tflite(
        model,
        path,
        class_names=options.class_names,
        category_ids=options.category_ids,
        postprocess=options.postprocess,
    )


@register_exporter(
    "tflite",
    precision="int8",
    title="TFLite",
    suffix=".tflite",
    flags=("with_nms",),
    packages=("litert_torch", "ai_edge_litert", "ai_edge_quantizer"),
    extra="tflite",
    note=_NOTE,
)
def _export_int8(model: nn.Module, path: Path, options: ExportOptions) -> Path:
    return export_tflite(
        model,
        path,
        class_names=options.class_names,
        category_ids=options.category_ids,
        postprocess=options.postprocess,
        calibration_images=options.calibration_images,
        max_calibration_images=options.max_calibration_images,
    )
