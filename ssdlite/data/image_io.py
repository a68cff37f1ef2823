"""The image size from the header alone, for the readers that need boxes' image sizes but not the pixels.

Reading the pixels is :func:`ssdlite_runtime.image_io.read_image` (OpenCV, shared with the runtime that runs exported
files); this reads only the header, with PIL, and gives the size ``read_image`` would give: the displayed size, after
the EXIF orientation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ssdlite_runtime.image_io import TRUNCATED_JPEG, ImageReadError, is_truncated_jpeg

__all__ = ["read_image_size"]

_EXIF_ORIENTATION_TAG = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


def read_image_size(path: str | Path) -> tuple[int, int]:
    """Reads only the header of an image and returns its displayed size.

    Cheap (no pixel decoding); used where boxes need the image size but not the pixels (YOLO -> COCO conversion,
    dataset checks).

    Args:
        path: an image file.

    Returns:
        (height, width) after the EXIF orientation is applied, the same as ``read_image(path).shape[:2]``.

    Raises:
        ImageReadError: missing file or unrecognised header.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except FileNotFoundError:
        raise ImageReadError(path, "file not found", "missing") from None
    except (OSError, ValueError, SyntaxError) as error:  # PIL raises UnidentifiedImageError (an OSError) and friends
        if is_truncated_jpeg(np.fromfile(path, dtype=np.uint8)):
            raise ImageReadError(path, TRUNCATED_JPEG, "truncated") from None
        raise ImageReadError(path, f"unrecognised image header ({error})") from None
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return int(height), int(width)
