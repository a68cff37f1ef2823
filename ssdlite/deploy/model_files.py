"""Reading a training checkpoint for inference (shared by the eager backend and the exporters), and exporting one:
as ``ssdlite-export`` does (:func:`export_checkpoint`), or for a runtime backend of the Predictor
(:func:`export_for_predictor`). Which checkpoint ``ssdlite-detect`` uses without ``--model`` is
:mod:`ssdlite.deploy.default_model`'s business.

No torch import at the top: the commands check their inputs before torch loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssdlite_runtime.backends.base import check_regular_file, file_kind, misnamed_model_file

if TYPE_CHECKING:
    from torch import nn

    from ssdlite.core.postprocess import PostprocessSettings

__all__ = ["EXPORTED_FOR_BACKEND", "export_checkpoint", "export_for_predictor", "load_checkpoint_for_inference",
           "model_and_labels"]

EXPORTED_FOR_BACKEND: dict[str, tuple[str, bool]] = {"ort": ("model.onnx", False), "int8": ("model.int8.onnx", True)}
"""The runtime backends :func:`export_for_predictor` exports for: the file each gets, and whether it is INT8."""


def load_checkpoint_for_inference(path: str | Path, *, map_location: Any = "cpu") -> tuple[nn.Module, dict]:
    """``ssdlite.models.load_checkpoint``, after telling an exported file or a FIFO given as a checkpoint apart.

    Returns:
        (model in eval mode, meta dict with class_names, category_ids, image_size).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file of another backend (names the backend; an ONNX or TFLite file without its suffix is
            recognised by its first bytes), not a regular file (a FIFO, a device), or what ``load_checkpoint``
            raises: one line naming the file (not a checkpoint, not ours, another architecture).
    """
    from ssdlite.models import load_checkpoint

    path = Path(path)
    check_regular_file(path)  # a FIFO or a device: said as such, never opened
    other = file_kind(path)
    if other is not None:
        backend, kind = other
        raise ValueError(f"{path} is {kind}; load it with backend={backend!r}, not as a training checkpoint")
    misnamed = misnamed_model_file(path) if path.is_file() else None  # an exported file without its suffix
    if misnamed is not None:
        raise ValueError(misnamed)
    return load_checkpoint(path, map_location=map_location)


def model_and_labels(
    model_or_path: nn.Module | str | Path,
    class_names: Sequence[str] | None = None,
    category_ids: Sequence[int] | None = None,
) -> tuple[nn.Module, Sequence[str] | None, Sequence[int] | None]:
    """A model and its labels: an ``SSDLite`` as given, or a training checkpoint loaded with its class names and
    category ids (``class_names`` / ``category_ids``, when given, win)."""
    from torch import nn

    if isinstance(model_or_path, nn.Module):
        return model_or_path, class_names, category_ids
    model, meta = load_checkpoint_for_inference(model_or_path, map_location="cpu")
    return (
        model,
        meta["class_names"] if class_names is None else class_names,
        meta["category_ids"] if category_ids is None else category_ids,
    )


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    *,
    format: str = "onnx",
    with_nms: bool = False,
    dynamic_batch: bool = False,
    int8: bool = False,
    calibration_images: str | Path | None = None,
    max_calibration_images: int | None = None,
    postprocess: PostprocessSettings | None = None,
) -> Path:
    """A training checkpoint written as ``format``, with its class names and category ids (``ssdlite-export``).

    The calibration folder and limit, and an ``out`` whose files would overwrite the checkpoint, are checked before
    the checkpoint is loaded, so they fail at once (the output name and folder are checked before converting). The
    other arguments are :func:`ssdlite.deploy.export.export_model`'s (``max_calibration_images`` None: its
    default).

    Returns:
        The written path.

    Raises:
        ValueError: ``int8`` without ``calibration_images``, a file that is not a checkpoint, an option the
            format does not take.
        FileNotFoundError: no such checkpoint or calibration folder.
    """
    if int8 and calibration_images is None:
        raise ValueError("--int8 needs --calib DIR, a folder of representative images to calibrate on")
    if calibration_images is not None and not Path(calibration_images).is_dir():
        raise FileNotFoundError(f"calibration folder not found: {calibration_images}")
    from ssdlite.deploy.export import export_model
    from ssdlite.deploy.export.base import check_calibration_limit, check_not_overwriting

    if max_calibration_images is not None:
        check_calibration_limit(max_calibration_images)
    check_not_overwriting(out, [checkpoint], format=format, int8=int8)

    model, meta = load_checkpoint_for_inference(checkpoint)
    limit = {} if max_calibration_images is None else {"max_calibration_images": max_calibration_images}
    return export_model(
        model,
        out,
        format=format,
        class_names=meta["class_names"],
        category_ids=meta["category_ids"],
        with_nms=with_nms,
        dynamic_batch=dynamic_batch,
        int8=int8,
        calibration_images=calibration_images,
        postprocess=postprocess,
        **limit,
    )


def export_for_predictor(
    model_or_checkpoint: nn.Module | str | Path,
    backend: str,
    out_dir: str | Path,
    *,
    calibration_images: str | Path | None = None,
    max_calibration_images: int | None = None,
    with_nms: bool = True,
    class_names: Sequence[str] | None = None,
    category_ids: Sequence[int] | None = None,
) -> Path:
    """The file that ``ssdlite_runtime.Predictor(file, backend=backend)`` runs, exported from a model or a training
    checkpoint into ``out_dir`` (batch dimension dynamic, the Predictor's batches vary).

    A checkpoint or model runs as it is with ``backend="eager"``; this is for running it as its exported file runs
    (ONNX Runtime's detections and speed, INT8's accuracy) without an ``ssdlite-export`` step first. The caller owns
    ``out_dir`` (a ``tempfile.TemporaryDirectory`` where the file is wanted for one run only)::

        with tempfile.TemporaryDirectory() as folder:
            model_file = export_for_predictor("best.ckpt", "int8", folder, calibration_images="data/shapes/train")
            detections = Predictor(model_file, backend="int8").predict(image_rgb)

    Args:
        model_or_checkpoint: an ``SSDLite`` or a training checkpoint.
        backend: a key of :data:`EXPORTED_FOR_BACKEND` ("ort", "int8").
        out_dir: folder of the exported file (created).
        calibration_images: folder of representative images ("int8").
        max_calibration_images: use at most this many of them (None: the INT8 exporter's default).
        with_nms: decoding + NMS in the graph (default) or the raw network.
        class_names, category_ids: the labels of an ``SSDLite`` (a checkpoint carries its own).

    Returns:
        The exported file, ``out_dir / EXPORTED_FOR_BACKEND[backend][0]``.

    Raises:
        ValueError: a backend not in :data:`EXPORTED_FOR_BACKEND`, or "int8" without ``calibration_images``.
    """
    if backend not in EXPORTED_FOR_BACKEND:
        raise ValueError(
            f"no export for backend {backend!r} here (only {', '.join(EXPORTED_FOR_BACKEND)}); a checkpoint runs "
            f"as it is with backend='eager', and ssdlite-export --format writes the other formats"
        )
    name, int8 = EXPORTED_FOR_BACKEND[backend]
    if int8 and calibration_images is None:
        raise ValueError(
            "backend='int8' with a model or checkpoint needs calibration_images=FOLDER (representative images); "
            "or pass an INT8 .onnx file made by `ssdlite-export --int8 --calib DIR`"
        )
    from ssdlite.deploy.export import export_model

    model, class_names, category_ids = model_and_labels(model_or_checkpoint, class_names, category_ids)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    limit = {} if max_calibration_images is None else {"max_calibration_images": max_calibration_images}
    return export_model(
        model, out_dir / name, format="onnx", class_names=class_names, category_ids=category_ids, with_nms=with_nms,
        dynamic_batch=True, int8=int8, calibration_images=calibration_images, **limit,
    )
