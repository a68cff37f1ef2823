"""The named detector presets: each function's name is the model's name, its result the preset's default config.

``build_model(name, **overrides)`` builds one; ``list_models()`` lists them.
"""

from __future__ import annotations

from ._builder import SSDLiteConfig
from ._registry import register_model


@register_model
def ssdlite_mobilenet_v2() -> SSDLiteConfig:
    """The MobileNetV2 paper's SSDLite (section 6.2, Table 6): 320 input, TF's box layout, 2034 boxes (1917 at 300).

    About 4.5M parameters and 0.8B multiply-adds with 90 object classes.
    """
    return SSDLiteConfig(backbone="mobilenet_v2", default_boxes="paper")


@register_model
def ssdlite320_mobilenet_v2() -> SSDLiteConfig:
    """torchvision's SSDLite320 layout on MobileNetV2: 6 boxes per location everywhere, 3234 boxes at 320."""
    return SSDLiteConfig(backbone="mobilenet_v2", default_boxes="torchvision")


@register_model
def ssdlite_mobilenet_v1() -> SSDLiteConfig:
    """MobileNetV1 + SSDLite (MobileNetV2 paper, Table 6): 320 input, TF's box layout, taps Conv2d_11/13_pointwise."""
    return SSDLiteConfig(backbone="mobilenet_v1", default_boxes="paper")
