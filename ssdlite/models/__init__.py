"""What the network is: MobileNetV1/V2 backbones, SSDLite, the model registry, configs and checkpoint loading.

Modules:
    _registry   the registry: a model's name is its preset function's name; ``list_models("ssdlite*")``
    _builder    ``SSDLiteConfig`` (frozen, self-validating) and the builders of detectors and classifiers
    presets     the registered detector presets
    checkpoints reading checkpoint files (the one ``torch.load``) and the key names the LightningModule writes
    _helpers    ``load_checkpoint``: the network a checkpoint holds, rebuilt and loaded
    complexity  parameters and multiply-adds per layer (MobileNets Table 1 style)
"""

from . import presets  # noqa: F401 -- registers the presets
from ._builder import (
    CLASSIFIERS,
    SSDLiteConfig,
    box_config_from,
    build_classifier,
    build_model,
    build_model_from_config,
    describe_config,
    model_config,
)
from ._helpers import infer_config, load_checkpoint, load_state_dict_checked
from ._registry import is_model, list_models, register_model
from .checkpoints import (
    CATEGORY_IDS_KEY,
    CLASS_NAMES_KEY,
    EMA_WEIGHTS_PREFIX,
    HYPER_PARAMETERS_KEY,
    MODEL_CONFIG_KEY,
    MODEL_WEIGHTS_PREFIX,
    STATE_DICT_KEY,
)
from .ssdlite import SSDLite

__all__ = [
    "CATEGORY_IDS_KEY",
    "CLASSIFIERS",
    "CLASS_NAMES_KEY",
    "EMA_WEIGHTS_PREFIX",
    "HYPER_PARAMETERS_KEY",
    "MODEL_CONFIG_KEY",
    "MODEL_WEIGHTS_PREFIX",
    "STATE_DICT_KEY",
    "SSDLite",
    "SSDLiteConfig",
    "box_config_from",
    "build_classifier",
    "build_model",
    "build_model_from_config",
    "describe_config",
    "infer_config",
    "is_model",
    "list_models",
    "load_checkpoint",
    "load_state_dict_checked",
    "model_config",
    "register_model",
]
