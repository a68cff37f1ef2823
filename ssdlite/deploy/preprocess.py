"""The deployment preprocessing that every backend and the INT8 calibration share: resize, then the input scaling.

Resize to the network's S x S with cv2 ``INTER_LINEAR`` (a stretch, no letterbox, as the evaluation transform), then
:func:`ssdlite.core.normalization.normalize_pixels` (``pixel / 127.5 - 1``, the same float32 numbers as training).
numpy and cv2 only.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ssdlite.core.normalization import normalize_pixels

__all__ = ["preprocess_images"]


def preprocess_images(images: Sequence[np.ndarray], image_size: int, *, channels_last: bool = True) -> np.ndarray:
    """Resize to S x S (cv2 INTER_LINEAR) and scale to [-1, 1] (``normalize_pixels``: ``pixel / 127.5 - 1``).

    Args:
        images: uint8 RGB (H, W, 3) arrays.
        image_size: S.
        channels_last: return an NCHW view of NHWC memory (True) or contiguous NCHW memory (False); the values
            are identical.

    Returns:
        float32 [B, 3, S, S].
    """
    size = (image_size, image_size)
    if channels_last:
        batch = np.stack([cv2.resize(image, size, interpolation=cv2.INTER_LINEAR) for image in images])
        batch = batch.astype(np.float32)
    else:  # channel planes written straight into NCHW: no strided copy of the float batch, as a transpose would make
        batch = np.empty((len(images), 3, image_size, image_size), np.float32)
        for index, image in enumerate(images):
            for channel, plane in enumerate(cv2.split(cv2.resize(image, size, interpolation=cv2.INTER_LINEAR))):
                batch[index, channel] = plane
    normalize_pixels(batch, in_place=True)
    return batch.transpose(0, 3, 1, 2) if channels_last else batch
