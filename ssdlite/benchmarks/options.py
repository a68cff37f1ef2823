"""What every measurement may read: the options of one benchmark run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

INFERENCE_THREADS = 2
"""torch intra-op threads and ONNX Runtime intra-op threads of the model measurements (smoke: 1)."""


@dataclass(frozen=True)
class BenchmarkOptions:
    """What every measurement may read.

    Attributes:
        smoke: tiny inputs and short timings (checks that a measurement runs, numbers meaningless).
        image_size: network input side S.
        seconds: timed seconds per pipeline (split into rounds).
        raccoon_root: VOC folder of real photos; generated shapes when None or not a folder.
        checkpoint: model for latency / accuracy (default: ssdlite_mobilenet_v2, 90 classes, random weights).
        val_images, val_annotations: COCO validation set for int8_accuracy.
        threads: torch and ONNX Runtime intra-op threads for the model measurements.
        formats: the export formats the ``formats`` measurement takes (None: every registered one), e.g.
            ``("onnx", "openvino")``; a format's INT8 exporter comes with it.
        calibration_images: INT8 calibration folder (default: generated shapes; for int8_accuracy the ``train``
            folder next to ``val_images`` when there is one).
    """

    smoke: bool = False
    image_size: int = 320
    seconds: float = 6.0
    raccoon_root: Path | None = None
    checkpoint: Path | None = None
    val_images: Path | None = None
    val_annotations: Path | None = None
    calibration_images: Path | None = None
    formats: tuple[str, ...] | None = None
    threads: int = INFERENCE_THREADS
