"""The INT8 exporter of the "onnx" format: post-training static quantization with ONNX Runtime (QDQ format,
per-channel weights).

Pipeline: the BatchNorm-folded network is exported to ONNX without postprocessing, prepared with ONNX Runtime's
``quant_pre_process`` (shape inference + graph optimisation), calibrated on a folder of images preprocessed exactly
as the Predictor does (``ssdlite_runtime.preprocess.preprocess_images``: resize to S x S with cv2 INTER_LINEAR,
``pixel / 127.5 - 1``), and quantized with ``quantize_static``: activations uint8 (asymmetric, MinMax ranges),
weights int8 per output channel -- the combination ONNX Runtime's x86 kernels (VNNI) run fastest, and per-channel
weights keep the depthwise convolutions accurate. Weights use 7 of their 8 bits (``reduce_range``): x86 CPUs
without VNNI (AVX2 only) multiply uint8 x int8 pairs into saturating int16 sums, which full-range weights overflow,
and an exported file must detect the same on every CPU it runs on. Decoding and NMS are then appended in float
(:mod:`ssdlite.deploy.export.onnx_postprocess`): the postprocessing is never quantized. ``ssdlite-benchmark --only
int8_accuracy`` and ``--only latency`` measure what INT8 costs in AP and gains in latency.

ONNX Runtime rather than PyTorch's own quantization: its INT8 kernels run faster than its float ones on x86 CPUs,
PyTorch's FX graph mode cannot trace the MobileNetV2 backbone (it slices ``features[:14]`` inside ``forward``), and
one ONNX file serves every runtime.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from torch import nn

from ssdlite.core.postprocess import PostprocessSettings
from ssdlite.deploy.export.base import (
    DEFAULT_MAX_CALIBRATION_IMAGES,
    ExportOptions,
    check_calibration_limit,
    register_exporter,
)
from ssdlite.deploy.export.onnx import export_network_onnx, export_onnx, onnx_arguments
from ssdlite.deploy.metadata import INPUT_SCALING
from ssdlite_runtime.metadata import INPUT_NAME
from ssdlite_runtime.preprocess import preprocess_images

__all__ = ["ImageFolderCalibrationReader", "quantize_model", "quantize_network_onnx", "readable_images"]

logger = logging.getLogger(__name__)


class ImageFolderCalibrationReader:
    """ONNX Runtime ``CalibrationDataReader`` over the images of a folder, one preprocessed image per call.

    The picked images are read once when the reader is made, and those that cannot be read (truncated, corrupt,
    not an image) are left out with a warning naming each: a bad file fails here, before any conversion, and one
    bad file among many does not stop the export.

    Args:
        folder: folder of images (jpg, png, ...; read with ``ssdlite_runtime.image_io.read_image``).
        image_size: the network's input side S.
        max_images: use at most this many (evenly spread over the sorted file list), a positive integer.

    Attributes:
        folder (Path): the calibration folder.
        paths (list[Path]): the images calibrated on, all readable.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: it holds no image, none of the picked images can be read, or ``max_images`` is below 1.
    """

    def __init__(self, folder: str | Path, *, image_size: int, max_images: int = DEFAULT_MAX_CALIBRATION_IMAGES):
        from ssdlite_runtime.image_io import list_images

        check_calibration_limit(max_images)
        folder = Path(folder)
        paths = list_images(folder)
        if not paths:
            raise ValueError(
                f"calibration folder {folder} holds no images (jpg/png/...); pass a folder of representative images, "
                "e.g. part of the training set"
            )
        if len(paths) > max_images:
            picks = np.linspace(0, len(paths) - 1, max_images).round().astype(int)
            paths = [paths[i] for i in picks]
        self.folder = folder
        self.paths = readable_images(paths, folder)
        self.image_size = int(image_size)
        self._iterator: Iterator[dict[str, np.ndarray]] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def _feeds(self) -> Iterator[dict[str, np.ndarray]]:
        from ssdlite_runtime.image_io import read_image

        for path in self.paths:
            image = read_image(path)
            yield {INPUT_NAME: preprocess_images([image], self.image_size, channels_last=False, **INPUT_SCALING)}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iterator is None:
            self._iterator = self._feeds()
        return next(self._iterator, None)

    def rewind(self) -> None:
        self._iterator = None


def readable_images(paths: Sequence[Path], folder: Path) -> list[Path]:
    """The images of ``paths`` that decode, warning about each one that does not (named, with the reason).

    Raises:
        ValueError: none of them can be read.
    """
    from ssdlite_runtime.image_io import ImageReadError, read_image

    readable, reasons = [], []
    for path in paths:
        try:
            read_image(path)
        except ImageReadError as error:
            reasons.append(f"{path.name}: {error.reason}")
            logger.warning(f"skipping calibration image {path}: {error.reason}")
            continue
        readable.append(path)
    if not readable:
        raise ValueError(
            f"calibration folder {folder}: none of the {len(paths)} images picked from it can be read ({reasons[0]}"
            f"{', ...' if len(reasons) > 1 else ''}); pass a folder of readable images (jpg/png/...)"
        )
    return readable


def quantize_network_onnx(
    float_network: str | Path,
    out_path: str | Path,
    *,
    calibration: ImageFolderCalibrationReader,
) -> Path:
    """Quantize a raw-network ONNX file (QDQ, uint8 activations, per-channel int8 weights, MinMax calibration).

    Args:
        float_network: ONNX file of the float network (``images`` -> ``cls_logits``, ``box_deltas``).
        out_path: where the quantized network goes.
        calibration: the calibration images.

    Returns:
        ``out_path``.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_path = Path(out_path)
    prepared = out_path.with_name(out_path.stem + ".prepared.onnx")
    quant_pre_process(str(float_network), str(prepared), skip_symbolic_shape=False)
    calibration.rewind()
    quantize_static(
        str(prepared),
        str(out_path),
        calibration,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        reduce_range=True,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
    )
    prepared.unlink(missing_ok=True)
    return out_path


def quantize_model(
    model: nn.Module,
    path: str | Path,
    *,
    calibration_images: str | Path,
    class_names: Sequence[str] | None = None,
    category_ids: Sequence[int] | None = None,
    with_nms: bool = False,
    dynamic_batch: bool = False,
    postprocess: PostprocessSettings | None = None,
    max_calibration_images: int = DEFAULT_MAX_CALIBRATION_IMAGES,
    network_onnx: str | Path | None = None,
) -> Path:
    """Export ``model`` as an INT8 ONNX file calibrated on the images of a folder.

    Args:
        model: an SSDLite (left unchanged).
        path: output ``.onnx`` file.
        calibration_images: folder of representative images (a few hundred are plenty).
        class_names, category_ids: stored in the metadata.
        with_nms: append float decoding + NMS (outputs padded detections, see :mod:`ssdlite.deploy.export.onnx`).
        dynamic_batch: symbolic batch dimension (otherwise 1).
        postprocess: default in-graph postprocessing settings.
        max_calibration_images: use at most this many calibration images.
        network_onnx: the float raw network already exported from ``model`` (skips exporting it again).

    Returns:
        The written path. Its metadata ``quantization`` says how it was calibrated.

    Raises:
        FileNotFoundError: the calibration folder does not exist.
        ValueError: it holds no images.
    """
    path = Path(path)
    calibration = ImageFolderCalibrationReader(
        calibration_images, image_size=int(model.image_size), max_images=max_calibration_images
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ssdlite_int8_") as scratch:
        if network_onnx is None:
            network_onnx = export_network_onnx(model, Path(scratch) / "network.onnx", dynamic_batch=dynamic_batch)
        quantized = quantize_network_onnx(network_onnx, Path(scratch) / "network.int8.onnx", calibration=calibration)
        description = (
            f"int8 static, ONNX Runtime QDQ, uint8 activations (MinMax), int8 per-channel weights, calibrated on "
            f"{len(calibration)} images of {Path(calibration_images).name}/ in "
            f"{time.perf_counter() - started:.0f} s; postprocessing float"
        )
        return export_onnx(
            model,
            path,
            class_names=class_names,
            category_ids=category_ids,
            with_nms=with_nms,
            postprocess=postprocess,
            network_onnx=quantized,
            quantization=description,
        )


@register_exporter(
    "onnx",
    precision="int8",
    title="ONNX",
    suffix=".onnx",
    flags=("with_nms", "dynamic_batch"),
    packages=("onnx", "onnxscript", "onnxruntime"),
    extra="export",
)
def _export(model: nn.Module, path: Path, options: ExportOptions) -> Path:
    return quantize_model(
        model,
        path,
        calibration_images=options.calibration_images,
        max_calibration_images=options.max_calibration_images,
        **onnx_arguments(options),
    )
