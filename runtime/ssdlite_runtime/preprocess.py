"""The preprocessing every backend shares (and the full package's INT8 calibration): resize, then the input scaling.

Resize to the network's S x S with cv2 ``INTER_LINEAR`` (a stretch, no letterbox, as the evaluation transform), then
``input = (pixel - mean) * scale`` with the file's ``mean`` and ``scale`` (:class:`~ssdlite_runtime.metadata.ModelInfo`),
computed as ``ssdlite.core.normalization.normalize_pixels`` computes it -- a float32 division by ``std = 1 / scale``,
then a subtraction of ``mean / std`` -- so that every pipeline gives each pixel value the same float32 number, bit for bit
(tests/deploy/test_one_definition.py). numpy and cv2 only.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["preprocess_images"]


def preprocess_images(
    images: Sequence[np.ndarray],
    image_size: int,
    *,
    mean: Sequence[float],
    scale: Sequence[float],
    channels_last: bool = True,
) -> np.ndarray:
    """Resize to S x S (cv2 INTER_LINEAR) and scale each channel: ``(pixel - mean) * scale``.

    Args:
        images: uint8 RGB (H, W, 3) arrays.
        image_size: S.
        mean, scale: three values each, per RGB channel (an exported file's ``mean`` and ``scale``).
        channels_last: return an NCHW view of NHWC memory (True) or contiguous NCHW memory (False); the values
            are identical.

    Returns:
        float32 [B, 3, S, S].
    """
    size = (image_size, image_size)
    std = 1.0 / np.asarray(scale, np.float64)  # normalize_pixels' PIXEL_STD, 127.5
    divisor, offset = std.astype(np.float32), (np.asarray(mean, np.float64) / std).astype(np.float32)
    if channels_last:
        batch = np.stack([cv2.resize(image, size, interpolation=cv2.INTER_LINEAR) for image in images])
        batch = batch.astype(np.float32)
        batch /= divisor
        batch -= offset
        return batch.transpose(0, 3, 1, 2)
    # channel planes written straight into NCHW: no strided copy of the float batch, as a transpose would make
    batch = np.empty((len(images), 3, image_size, image_size), np.float32)
    for index, image in enumerate(images):
        for channel, plane in enumerate(cv2.split(cv2.resize(image, size, interpolation=cv2.INTER_LINEAR))):
            batch[index, channel] = plane
    batch /= divisor[:, None, None]
    batch -= offset[:, None, None]
    return batch
