"""The network's input scaling: uint8 RGB pixel values 0..255 to float32 in [-1, 1], ``pixel / 127.5 - 1``.

MobileNet's Inception-style preprocessing (TF-slim's ``x / 127.5 - 1``; torchvision's SSDLite normalises [0, 1]
pixels with mean 0.5 and std 0.5, the same map). The one definition that the training and evaluation transforms
(``ssdlite.data.transforms``) read and that every exported file carries in its metadata (``mean`` and ``scale``:
input = (pixel - mean) * scale, see ``ssdlite.deploy.metadata.INPUT_SCALING``), from which the runtime's
preprocessing (``ssdlite_runtime.preprocess``) computes the same float32 numbers.
"""

from __future__ import annotations

import numpy as np

PIXEL_MEAN = 127.5
"""The pixel value that maps to 0 (all three RGB channels)."""

PIXEL_STD = 127.5
"""The pixel distance that maps to 1 (all three RGB channels); an exported file's ``scale`` is ``1 / PIXEL_STD``."""


def normalize_pixels(pixels: np.ndarray, *, in_place: bool = False) -> np.ndarray:
    """Scale pixel values to the network's input range: ``pixel / PIXEL_STD - PIXEL_MEAN / PIXEL_STD``.

    Computed in float32, a division then a subtraction (the arithmetic of ``image.float() / 127.5 - 1`` in torch),
    so every pipeline gives each pixel value the same float32 number, bit for bit (:data:`PIXEL_LOOKUP` holds them).

    Args:
        pixels: values 0..255 of any shape, uint8 (or float32 holding such values).
        in_place: scale ``pixels`` itself (it must then be float32) instead of a float32 copy.

    Returns:
        float32 array of the same shape, values in [-1, 1].

    Raises:
        ValueError: ``in_place`` with an array that is not float32.
    """
    if in_place and pixels.dtype != np.float32:
        raise ValueError(f"normalize_pixels(in_place=True) needs a float32 array, got {pixels.dtype}")
    output = pixels if in_place else pixels.astype(np.float32)
    output /= np.float32(PIXEL_STD)
    output -= np.float32(PIXEL_MEAN / PIXEL_STD)
    return output


PIXEL_LOOKUP: np.ndarray = normalize_pixels(np.arange(256, dtype=np.uint8))
"""float32 [256]: the network input value of each uint8 pixel value (for ``cv2.LUT``)."""
