"""The full package's Predictor: :class:`ssdlite_runtime.predictor.Predictor`, which runs exported files and
checkpoints, and which here also takes a model or a checkpoint for a backend of exported files ("ort", "int8"):
the model is exported (for "int8", quantized on ``calibration_images``) into a scratch folder first.

Example::

    predictor = Predictor(model, backend="int8", calibration_images="data/shapes/train")
    [detections] = predictor.predict(image_rgb)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ssdlite_runtime import predictor as runtime
from ssdlite_runtime.predictor import AUTO_BACKEND, DISPLAY_POSTPROCESS, DISPLAY_SCORE_THRESHOLD

__all__ = ["AUTO_BACKEND", "DISPLAY_POSTPROCESS", "DISPLAY_SCORE_THRESHOLD", "Predictor"]

EXPORTED_ON_THE_FLY = {"ort": "model.onnx", "int8": "model.int8.onnx"}
"""The backends of exported files that take a model or checkpoint too, and the file each exports it to."""


class Predictor(runtime.Predictor):
    """:class:`ssdlite_runtime.predictor.Predictor`; with ``backend="ort"`` or ``"int8"``, ``model_or_path`` may
    also be an ``SSDLite`` or a training checkpoint, exported on the fly.

    Args:
        model_or_path: as the runtime's Predictor takes it, or a model / checkpoint for "ort" / "int8".
        backend: as the runtime's Predictor takes it.
        with_nms: export with decoding + NMS in the graph (default) or the raw network.
        class_names, category_ids: the labels of an ``SSDLite`` (a checkpoint carries its own).
        export_dir: where the exported file goes (default: a temporary folder that lives as long as the process).
        calibration_images: folder of representative images ("int8" with a model or checkpoint).
        max_calibration_images: use at most this many of them (default: the INT8 exporter's).
        **options: the runtime Predictor's (thresholds, classes, device, threads, ...).

    Raises:
        ValueError: "int8" with a model but no ``calibration_images``, or what the runtime's Predictor raises.
    """

    def __init__(
        self,
        model_or_path: Any,
        *,
        backend: str = AUTO_BACKEND,
        with_nms: bool = True,
        class_names: Sequence[str] | None = None,
        category_ids: Sequence[int] | None = None,
        export_dir: str | Path | None = None,
        calibration_images: str | Path | None = None,
        max_calibration_images: int | None = None,
        **options: Any,
    ) -> None:
        if backend in EXPORTED_ON_THE_FLY and not _is_onnx_file(model_or_path):
            model_or_path = _export_for(
                backend,
                model_or_path,
                with_nms=with_nms,
                class_names=class_names,
                category_ids=category_ids,
                export_dir=export_dir,
                calibration_images=calibration_images,
                max_calibration_images=max_calibration_images,
            )
        elif class_names is not None or category_ids is not None:  # the eager backend takes them
            options.update(class_names=class_names, category_ids=category_ids)
        super().__init__(model_or_path, backend=backend, **options)


def _is_onnx_file(model_or_path: Any) -> bool:
    return isinstance(model_or_path, (str, os.PathLike)) and Path(model_or_path).suffix.lower() == ".onnx"


def _export_for(
    backend: str,
    model_or_path: Any,
    *,
    with_nms: bool,
    class_names: Sequence[str] | None,
    category_ids: Sequence[int] | None,
    export_dir: str | Path | None,
    calibration_images: str | Path | None,
    max_calibration_images: int | None,
) -> Path:
    """The ``.onnx`` file of ``model_or_path`` (an SSDLite or a checkpoint) for ``backend`` ("ort" or "int8")."""
    from ssdlite.deploy.export import export_model
    from ssdlite.deploy.model_files import model_and_labels

    int8 = backend == "int8"
    if int8 and calibration_images is None:
        raise ValueError(
            "backend='int8' with a model or checkpoint needs calibration_images=FOLDER (representative images); "
            "or pass an INT8 .onnx file made by `tools/export.py --int8 --calib DIR`"
        )
    model, class_names, category_ids = model_and_labels(model_or_path, class_names, category_ids)
    limit = {} if max_calibration_images is None else {"max_calibration_images": max_calibration_images}
    return export_model(
        model,
        _scratch_dir(export_dir) / EXPORTED_ON_THE_FLY[backend],
        format="onnx",
        class_names=class_names,
        category_ids=category_ids,
        with_nms=with_nms,
        dynamic_batch=True,
        int8=int8,
        calibration_images=calibration_images,
        **limit,
    )


_SCRATCH: list[tempfile.TemporaryDirectory] = []


def _scratch_dir(export_dir: str | Path | None) -> Path:
    """``export_dir`` (created), or a temporary folder that lives as long as the process."""
    if export_dir is not None:
        Path(export_dir).mkdir(parents=True, exist_ok=True)
        return Path(export_dir)
    scratch = tempfile.TemporaryDirectory(prefix="ssdlite_ort_")
    _SCRATCH.append(scratch)
    return Path(scratch.name)
