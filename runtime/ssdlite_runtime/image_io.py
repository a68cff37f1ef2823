"""Image loading: every reader goes through :func:`read_image` (the detect command, and the full package's dataset
readers, which add ``ssdlite.data.image_io.read_image_size``).

Decoder choice: OpenCV's ``cv2.imdecode`` (opencv-python-headless, this package's one dependency besides numpy). It
decodes a JPEG
faster than PIL's ``open + exif_transpose + convert``, and with ``IMREAD_COLOR_RGB`` it does everything we need in
one call:

* EXIF orientation is applied (``IMREAD_COLOR*`` honours it for ``imdecode`` as for ``imread``; pinned by
  tests/data/test_image_io.py, since a decoder that ignored it would silently misplace every box of a phone photo);
* grayscale is expanded to three channels and the alpha channel of RGBA / LA images is dropped (not composited:
  the colour under the alpha is what the camera or the annotator saw);
* 16-bit images are scaled to 8 bit (``value >> 8``), where PIL's ``convert("RGB")`` clips them to 255;
* truncated or corrupt files return ``None`` (OpenCV 5 refuses a JPEG that lacks its end-of-image marker).
  For older OpenCV releases, which returned a half-grey picture, a JPEG without an end-of-image marker is rejected
  here as well.

We read the bytes ourselves (``np.fromfile``) rather than calling ``cv2.imread`` so that non-ASCII paths work on
every platform and so that a missing file and an undecodable one give different messages.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS", "TRUNCATED_JPEG", "ImageReadError", "decode_image", "is_truncated_jpeg", "list_images",
    "read_image",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

_JPEG_START = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"
TRUNCATED_JPEG = "truncated JPEG (no end-of-image marker)"
"""The reason an :class:`ImageReadError` gives for a JPEG without its end-of-image marker."""
# IMREAD_COLOR_RGB appeared in OpenCV 4.10; older releases decode to BGR and we swap channels ourselves.
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)


TOO_LARGE = "too_large"
"""The ``kind`` of an :class:`ImageReadError` for an image with more pixels than the decoder opens (OpenCV's
2**30, Pillow's decompression-bomb guard): datasets stop on it rather than skip the image."""


class ImageReadError(OSError):
    """An image file is missing, truncated or not an image.

    Args:
        path: the file that could not be read.
        reason: what went wrong, in a few words.
        kind: "missing", "truncated", "too_large" (:data:`TOO_LARGE`: more pixels than the decoder opens) or
            "unreadable" (empty, corrupt, not an image).

    Attributes:
        path (str): the offending file, so callers can report or skip it.
        reason (str): the short reason.
        kind (str): as above, for dataset checks.
    """

    def __init__(self, path: str | Path, reason: str = "not a readable image", kind: str = "unreadable") -> None:
        self.path = str(path)
        self.reason = reason
        self.kind = kind
        super().__init__(
            f"cannot read image {self.path}: {reason}; re-download or replace the file, "
            "or remove it from the annotations"
        )

    def __reduce__(self):  # keeps the exception picklable across DataLoader worker processes
        return (type(self), (self.path, self.reason, self.kind))


def read_image(path: str | Path) -> np.ndarray:
    """Reads an image file as RGB.

    Args:
        path: a JPEG, PNG, BMP or WebP file (grayscale, RGB, RGBA, 8 or 16 bit).

    Returns:
        np.ndarray[H, W, 3] uint8 RGB, C-contiguous, with the EXIF orientation applied (H, W are the displayed
        size, i.e. after rotation).

    Raises:
        ImageReadError: the file is missing, empty, truncated, too large to decode or cannot be decoded; the
            message names the file.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError(path, "file not found", "missing") from None
    except OSError as error:
        raise ImageReadError(path, f"cannot open the file ({error.strerror or error})") from None
    return decode_image(data, path)


def decode_image(data: bytes | np.ndarray, source: str | Path = "<bytes>") -> np.ndarray:
    """Decodes the bytes of an image file as RGB, exactly as :func:`read_image` decodes a file (``ssdlite-serve``
    gets its images as request bodies, not files).

    Args:
        data: the encoded image (JPEG, PNG, BMP or WebP bytes), as ``bytes`` or a uint8 array.
        source: what the bytes are, for the error (a file name, "the request body").

    Returns:
        np.ndarray[H, W, 3] uint8 RGB, C-contiguous, EXIF orientation applied.

    Raises:
        ImageReadError: the bytes are empty, a truncated JPEG, too large to decode or not an image; its ``reason``
            says which in a few words.
    """
    if not isinstance(data, np.ndarray):
        data = np.frombuffer(data, dtype=np.uint8)
    if data.size == 0:
        raise ImageReadError(source, "the file is empty")
    if is_truncated_jpeg(data):
        raise ImageReadError(source, TRUNCATED_JPEG, "truncated")
    try:
        image = _decode(data)
    except cv2.error as error:  # e.g. over OpenCV's pixel limit (CV_IO_MAX_IMAGE_PIXELS)
        if "CV_IO_MAX_IMAGE_PIXELS" in str(error):
            limit = os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", str(2**30))
            raise ImageReadError(source, f"the image has more than {limit} pixels, the most OpenCV decodes here (the "
                                 "environment variable OPENCV_IO_MAX_IMAGE_PIXELS sets it); resize the image or "
                                 "remove it from the set", TOO_LARGE) from None
        raise ImageReadError(source, f"OpenCV cannot decode it ({str(error).strip().splitlines()[-1]})") from None
    if image is None:
        raise ImageReadError(source, "truncated or corrupt image data, or not an image format OpenCV can decode")
    return image


def is_truncated_jpeg(data: np.ndarray) -> bool:
    """True for a JPEG byte buffer without its end-of-image marker (trailing bytes after the marker are allowed)."""
    if data[:2].tobytes() != _JPEG_START or data[-2:].tobytes() == _JPEG_END:
        return False
    return data.tobytes().rfind(_JPEG_END) < 2  # rare: bytes after the marker (camera trailers, padding)


def _decode(data: np.ndarray) -> np.ndarray | None:
    if _IMREAD_RGB is not None:
        image = cv2.imdecode(data, _IMREAD_RGB)
    else:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if image is not None:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image is None or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        return None
    return np.ascontiguousarray(image)


def list_images(directory: str | Path) -> list[Path]:
    """Lists the image files directly inside a directory (sorted, case-insensitive extensions)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"image directory {directory} does not exist; pass the folder holding the images")
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
