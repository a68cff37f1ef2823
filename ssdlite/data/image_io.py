"""The image size from the header alone, for the readers that need boxes' image sizes but not the pixels.

Reading the pixels is :func:`ssdlite_runtime.image_io.read_image` (OpenCV, shared with the runtime that runs exported
files); this reads only the header, with PIL, and gives the size ``read_image`` would give: the displayed size, after the EXIF orientation.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from ssdlite_runtime.image_io import TOO_LARGE, TRUNCATED_JPEG, ImageReadError, is_truncated_jpeg

__all__ = ["TOO_LARGE", "read_image_size"]
_BOMB_SIZES = re.compile(r"\((\d+) pixels\) exceeds limit of (\d+) pixels")

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
        ImageReadError: missing file or unrecognised header; kind :data:`TOO_LARGE` for an image whose header
            states more pixels than Pillow opens (twice ``PIL.Image.MAX_IMAGE_PIXELS``, 179 million by default: its
            guard against decompression bombs, files that claim a huge size in a few bytes).
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except FileNotFoundError:
        raise ImageReadError(path, "file not found", "missing") from None
    except Image.DecompressionBombError as error:
        raise ImageReadError(path, _too_large_reason(error), TOO_LARGE) from None
    except (OSError, ValueError, SyntaxError) as error:  # PIL raises UnidentifiedImageError (an OSError) and friends
        if is_truncated_jpeg(np.fromfile(path, dtype=np.uint8)):
            raise ImageReadError(path, TRUNCATED_JPEG, "truncated") from None
        raise ImageReadError(path, f"unrecognised image header ({error})") from None
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return int(height), int(width)


def _too_large_reason(error: Exception) -> str:
    """What Pillow's DecompressionBombError means, with the image's and the limit's pixel counts when it gives them."""
    sizes = _BOMB_SIZES.search(str(error))
    if sizes is None:
        what = "the image has more pixels than Pillow opens"
    else:
        pixels, limit = (int(number) for number in sizes.groups())
        what = f"the image is {pixels:,} pixels, more than the {limit:,} that Pillow opens"
    return (
        f"{what} (its guard against decompression bombs, twice PIL.Image.MAX_IMAGE_PIXELS); resize the image or "
        "remove it from the set (from Python, PIL.Image.MAX_IMAGE_PIXELS can be raised for trusted files)"
    )
