"""Reading a training checkpoint for inference (shared by the eager backend and the exporters), and exporting one
(``ssdlite-export``). Which checkpoint ``ssdlite-detect`` uses without ``--model`` is the runtime's business
(``ssdlite_runtime.jobs.find_latest_checkpoint``).

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

__all__ = ["export_checkpoint", "load_checkpoint_for_inference", "model_and_labels"]


def load_checkpoint_for_inference(path: str | Path, *, map_location: Any = "cpu") -> tuple[nn.Module, dict]:
    """``ssdlite.models.load_checkpoint`` with one clear error for any file that is not our checkpoint.

    Returns:
        (model in eval mode, meta dict with class_names, category_ids, image_size).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not an ssdlite checkpoint, or not one this code can rebuild (names the file and
            what was wrong), or a file of another backend (names the backend; an ONNX or TFLite file without its
            suffix is recognised by its first bytes), or not a regular file (a FIFO, a device).
    """
    from ssdlite.models import load_checkpoint
    from ssdlite.models.weights import NotACheckpointError

    path = Path(path)
    check_regular_file(path)  # a FIFO or a device: said as such, never opened
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    other = file_kind(path)
    if other is not None:
        backend, kind = other
        raise ValueError(f"{path} is {kind}; load it with backend={backend!r}, not as a training checkpoint")
    misnamed = misnamed_model_file(path)  # an exported file without its suffix: its bytes say which
    if misnamed is not None:
        raise ValueError(misnamed)
    try:
        return load_checkpoint(path, map_location=map_location)
    except NotACheckpointError:
        raise  # already names the file and says what a checkpoint is
    except Exception as error:  # unreadable, foreign or mismatched: one message that names the file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"cannot load {path}: {reason}; pass a checkpoint written by tools/train.py") from error


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
