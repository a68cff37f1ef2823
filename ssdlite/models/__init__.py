"""What the network is: MobileNetV1/V2 backbones, SSDLite, the model registry."""

from .factory import build_model, build_model_from_config, list_models, load_checkpoint, model_config
from .ssdlite import SSDLite

__all__ = [
    "SSDLite",
    "build_model",
    "build_model_from_config",
    "list_models",
    "load_checkpoint",
    "model_config",
]
