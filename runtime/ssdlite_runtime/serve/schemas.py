"""The JSON bodies of ``ssdlite-serve``'s answers, as dataclasses: FastAPI describes them in ``/openapi.json`` (and
``/docs``) without this module importing pydantic. The endpoints build the same shapes as plain dicts.

A detection uses the keys of the COCO-style records of :mod:`ssdlite_runtime.records` (``category_id``,
``category_name``, ``score``), with the box as ``[x1, y1, x2, y2]`` in pixels rather than COCO's ``bbox`` [x, y, w, h].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["DetectResponse", "Detection", "ErrorResponse", "HealthResponse", "ImageSize", "ReadyResponse", "Timing"]


def _described(text: str) -> Any:
    """A required field with ``text`` as its description in the OpenAPI schema."""
    return field(metadata={"description": text})


@dataclass
class Detection:
    box: list[float] = _described("[x1, y1, x2, y2] in the image's pixels (0, 0: its top-left corner)")
    score: float = _described("confidence in 0..1; only detections above the server's --score-threshold")
    category_id: int = _described("the model's category id (the dataset's own, as in COCO results)")
    category_name: str = _described("the class name")


@dataclass
class ImageSize:
    width: int = _described("pixels, after the EXIF orientation is applied")
    height: int = _described("pixels, after the EXIF orientation is applied")


@dataclass
class Timing:
    queue: float = _described("ms the image waited for its batch")
    inference: float = _described("ms its batch took in the model (shared by the batch's images)")
    total: float = _described("ms from the request's arrival to the answer (upload, decoding, queue, inference)")


@dataclass
class DetectResponse:
    image: ImageSize = _described("the decoded image's size")
    detections: list[Detection] = _described("best first")
    batch_size: int = _described("images in the batch this one ran in")
    timing_ms: Timing = _described("where the time went, in milliseconds")


@dataclass
class ErrorResponse:
    error: str = _described("what went wrong, on one line")


@dataclass
class HealthResponse:
    status: str = _described('"alive"')


@dataclass
class ReadyResponse:
    status: str = _described('"ready"')
    model: str = _described("the model file")
    backend: str = _described("the backend, its input size, classes and score threshold")
    max_batch: int = _described("images per batch at most")
