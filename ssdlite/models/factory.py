"""One way to name, build and load every model variant (a registry in the style of timm).

A model is described by a plain JSON-able config dict; a registered name maps to the default config of a preset::

    model = build_model("ssdlite_mobilenet_v2", num_classes=20, width_mult=0.5)
    same = build_model_from_config(model.config)

Config keys:
    name: preset name (informative).
    backbone: "mobilenet_v2" or "mobilenet_v1".
    width_mult: width multiplier alpha (> 0).
    num_classes: K object classes (background excluded).
    image_size: square input side S (64 to 2048).
    default_boxes: "paper" (TF ssd_anchor_generator, 3 boxes in the lowest map), "torchvision" (6 boxes everywhere)
        or a dict of :class:`ssdlite.core.anchors.DefaultBoxConfig` fields.
    extra_channels: output channels of the four extra layers; None means TF's rule
        ``max(16, int(c * width_mult))`` for c in (512, 256, 256, 128), resolved by :func:`model_config`.
    pretrained_backbone: None, "imagenet" (MobileNetV2 width 1.0 only) or a path to a local ``.pth``.
    shallow: MobileNetV1 only: drop the five 14x14x512 blocks.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models import mobilenet_v2

from ssdlite.core.anchors import DefaultBoxConfig, boxes_per_location

from .mobilenet_v1 import MobileNetV1, MobileNetV1Backbone
from .mobilenet_v2 import MobileNetV2Backbone
from .ssdlite import EXTRA_CHANNELS, SSDLite, check_image_size
from .weights import check_width_mult, read_state_dict, state_dict_differences, strip_prefix

MIN_EXTRA_DEPTH = 16
"""TF's ``min_depth`` for the SSDLite extra layers under a width multiplier."""

BACKBONES = ("mobilenet_v2", "mobilenet_v1")
BOX_LAYOUTS = ("paper", "torchvision")
CONFIG_KEYS = (
    "name",
    "backbone",
    "width_mult",
    "num_classes",
    "image_size",
    "default_boxes",
    "extra_channels",
    "pretrained_backbone",
    "shallow",
)

_MODEL_REGISTRY: dict[str, Callable[[], dict[str, Any]]] = {}


def register_model(name: str) -> Callable[[Callable[[], dict[str, Any]]], Callable[[], dict[str, Any]]]:
    """Decorator registering a function that returns the default config dict of a preset under ``name``."""

    def register(default_config: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
        if name in _MODEL_REGISTRY:
            raise ValueError(f"model name {name!r} is already registered; pick another name")
        _MODEL_REGISTRY[name] = default_config
        return default_config

    return register


def list_models() -> list[str]:
    """Names of the registered detector presets, sorted."""
    return sorted(_MODEL_REGISTRY)


def _preset(name: str, *, backbone: str, default_boxes: str, image_size: int = 320) -> dict[str, Any]:
    return {
        "name": name,
        "backbone": backbone,
        "width_mult": 1.0,
        "num_classes": 90,
        "image_size": image_size,
        "default_boxes": default_boxes,
        "extra_channels": None,
        "pretrained_backbone": None,
        "shallow": False,
    }


@register_model("ssdlite_mobilenet_v2")
def ssdlite_mobilenet_v2() -> dict[str, Any]:
    """The MobileNetV2 paper's SSDLite (section 6.2, Table 6): 320 input, TF's box layout, 2034 boxes (1917 at 300).

    About 4.5M parameters and 0.8B multiply-adds with 90 object classes.
    """
    return _preset("ssdlite_mobilenet_v2", backbone="mobilenet_v2", default_boxes="paper")


@register_model("ssdlite320_mobilenet_v2")
def ssdlite320_mobilenet_v2() -> dict[str, Any]:
    """torchvision's SSDLite320 layout on MobileNetV2: 6 boxes per location everywhere, 3234 boxes at 320."""
    return _preset("ssdlite320_mobilenet_v2", backbone="mobilenet_v2", default_boxes="torchvision")


@register_model("ssdlite_mobilenet_v1")
def ssdlite_mobilenet_v1() -> dict[str, Any]:
    """MobileNetV1 + SSDLite (MobileNetV2 paper, Table 6): 320 input, TF's box layout, taps Conv2d_11/13_pointwise."""
    return _preset("ssdlite_mobilenet_v1", backbone="mobilenet_v1", default_boxes="paper")


def model_config(name: str, **overrides: Any) -> dict[str, Any]:
    """The config dict of preset ``name`` with ``overrides`` applied and ``extra_channels`` resolved.

    Args:
        name: a name from :func:`list_models`.
        **overrides: config keys to change (num_classes, width_mult, image_size, pretrained_backbone, shallow,
            default_boxes, extra_channels).

    Returns:
        A new, validated config dict.

    Raises:
        ValueError: unknown name, unknown key or invalid value.
    """
    if name not in _MODEL_REGISTRY:
        raise ValueError(f"unknown model name {name!r}; available: {', '.join(list_models())}")
    config = _MODEL_REGISTRY[name]()
    allowed = [key for key in CONFIG_KEYS if key != "name"]
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for model {name!r}; allowed: {', '.join(allowed)}")
    config.update(copy.deepcopy(overrides))
    return validate_config(config)


def default_extra_channels(width_mult: float) -> list[int]:
    """TF's extra layer depths under a width multiplier: ``max(16, int(c * width_mult))`` for (512, 256, 256, 128)."""
    return [max(MIN_EXTRA_DEPTH, int(channels * width_mult)) for channels in EXTRA_CHANNELS]


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Checks a config dict and returns a copy with defaults filled in (``extra_channels``, ``shallow``).

    Raises:
        ValueError: a key is unknown or missing, or a value is invalid; the message names the value and the choices.
    """
    config = dict(config)
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"unknown model config key(s) {unknown}; allowed: {', '.join(CONFIG_KEYS)}")
    config.setdefault("name", f"ssdlite_{config.get('backbone')}")
    config.setdefault("extra_channels", None)
    config.setdefault("pretrained_backbone", None)
    config.setdefault("shallow", False)
    missing = [
        key
        for key in ("backbone", "width_mult", "num_classes", "image_size", "default_boxes")
        if key not in config
    ]
    if missing:
        raise ValueError(f"model config lacks key(s) {missing}; a full config has: {', '.join(CONFIG_KEYS)}")
    if config["backbone"] not in BACKBONES:
        raise ValueError(f"unknown backbone {config['backbone']!r}; available: {', '.join(BACKBONES)}")
    config["width_mult"] = check_width_mult(config["width_mult"])
    check_image_size(config["image_size"])
    num_classes = config["num_classes"]
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            f"num_classes must be an integer >= 1 (object classes, background excluded), got {num_classes!r}"
        )
    if config["shallow"] and config["backbone"] != "mobilenet_v1":
        raise ValueError(f"shallow=True applies to MobileNetV1 only, not to backbone {config['backbone']!r}")
    if config["extra_channels"] is None:
        config["extra_channels"] = default_extra_channels(config["width_mult"])
    config["extra_channels"] = [int(channels) for channels in config["extra_channels"]]
    pretrained = config["pretrained_backbone"]
    if pretrained is not None:
        config["pretrained_backbone"] = str(pretrained)
    box_config_from(config["default_boxes"], num_feature_maps=2 + len(config["extra_channels"]))
    return config


def box_config_from(default_boxes: str | Mapping[str, Any], *, num_feature_maps: int = 6) -> DefaultBoxConfig:
    """The :class:`DefaultBoxConfig` a config's ``default_boxes`` value names.

    Args:
        default_boxes: "paper", "torchvision" or a dict of DefaultBoxConfig fields (lists are turned into tuples).
        num_feature_maps: feature maps of the model (for the named layouts).
    """
    if isinstance(default_boxes, str):
        if default_boxes not in BOX_LAYOUTS:
            raise ValueError(
                f"unknown default_boxes layout {default_boxes!r}; available: {', '.join(BOX_LAYOUTS)} or a dict"
            )
        return getattr(DefaultBoxConfig, default_boxes)(num_feature_maps)
    if isinstance(default_boxes, Mapping):
        fields = dict(default_boxes)
        fields["aspect_ratios"] = tuple(
            tuple(float(r) for r in ratios) for ratios in fields.get("aspect_ratios", ())
        )
        try:
            return DefaultBoxConfig(**fields)
        except TypeError as error:
            raise ValueError(f"invalid default_boxes dict {default_boxes!r}: {error}") from error
    raise ValueError(
        f"default_boxes must be one of {', '.join(BOX_LAYOUTS)} or a dict, got {default_boxes!r}"
    )


def build_backbone(config: Mapping[str, Any]) -> nn.Module:
    """The backbone module a (validated) config describes."""
    if config["backbone"] == "mobilenet_v2":
        return MobileNetV2Backbone(width_mult=config["width_mult"], pretrained=config["pretrained_backbone"])
    return MobileNetV1Backbone(
        width_mult=config["width_mult"], shallow=config["shallow"], pretrained=config["pretrained_backbone"]
    )


def build_model_from_config(config: Mapping[str, Any]) -> SSDLite:
    """Builds the SSDLite a config dict describes (``model.config`` of any built model rebuilds it).

    Raises:
        ValueError: invalid config (see :func:`validate_config`).
    """
    config = validate_config(config)
    num_feature_maps = 2 + len(config["extra_channels"])
    return SSDLite(
        backbone=build_backbone(config),
        num_classes=config["num_classes"],
        image_size=config["image_size"],
        box_config=box_config_from(config["default_boxes"], num_feature_maps=num_feature_maps),
        extra_channels=config["extra_channels"],
        config=config,
    )


def build_model(name: str = "ssdlite_mobilenet_v2", **overrides: Any) -> SSDLite:
    """Builds preset ``name`` with config ``overrides`` (see :func:`model_config`).

    Example:
        >>> model = build_model("ssdlite_mobilenet_v2", num_classes=20, width_mult=0.35, image_size=128)
        >>> model(torch.zeros(1, 3, 128, 128))["cls_logits"].shape[-1]
        21
    """
    return build_model_from_config(model_config(name, **overrides))


# --- classifiers (for complexity tables) -----------------------------------------------------------------------

CLASSIFIERS = ("mobilenet_v1", "mobilenet_v2")


def build_classifier(
    name: str, *, width_mult: float = 1.0, num_classes: int = 1000, shallow: bool = False
) -> nn.Module:
    """An ImageNet-style MobileNet classifier: ``mobilenet_v1`` (Table 1) or torchvision's ``mobilenet_v2``.

    Raises:
        ValueError: unknown name, invalid width, or ``shallow`` for MobileNetV2.
    """
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; available: {', '.join(CLASSIFIERS)}")
    width_mult = check_width_mult(width_mult)
    if name == "mobilenet_v1":
        return MobileNetV1(width_mult=width_mult, num_classes=num_classes, shallow=shallow)
    if shallow:
        raise ValueError("shallow=True applies to MobileNetV1 only, not to 'mobilenet_v2'")
    return mobilenet_v2(width_mult=width_mult, num_classes=num_classes)


# --- checkpoints -------------------------------------------------------------------------------------------------


def describe_config(config: Mapping[str, Any]) -> str:
    """One-line description of an architecture, e.g. "ssdlite_mobilenet_v2 (mobilenet_v2, width_mult=1.0, ...)"."""
    shallow = ", shallow" if config.get("shallow") else ""
    boxes = config.get("default_boxes")
    boxes = boxes if isinstance(boxes, str) else "custom"
    return (
        f"{config.get('name')} ({config.get('backbone')}{shallow}, width_mult={config.get('width_mult')}, "
        f"num_classes={config.get('num_classes')}, default_boxes={boxes})"
    )


def infer_config(state_dict: Mapping[str, Tensor]) -> dict[str, Any]:
    """Infers the config of the SSDLite whose ``state_dict()`` this is (``image_size`` cannot be inferred: 320).

    Raises:
        ValueError: the keys are not those of an SSDLite of this package.
    """
    try:
        stem_block = "mobilenet_v2" if "backbone.features.1.conv.0.0.weight" in state_dict else "mobilenet_v1"
        regression = [
            state_dict[f"regression_head.{index}.1.weight"].shape[0] // 4
            for index in range(_count_indices(state_dict, "regression_head."))
        ]
        classes_plus_background = state_dict["classification_head.0.1.weight"].shape[0] // regression[0]
        extra_channels = [
            int(state_dict[f"extras.{index}.2.0.weight"].shape[0])
            for index in range(_count_indices(state_dict, "extras."))
        ]
        if stem_block == "mobilenet_v2":
            width_mult = round(state_dict["backbone.features.17.conv.2.weight"].shape[0] / 320, 2)
            shallow = False
        else:
            num_blocks = _count_indices(state_dict, "backbone.features.")
            width_mult = round(
                state_dict[f"backbone.features.{num_blocks - 1}.1.0.weight"].shape[0] / 1024, 2
            )
            shallow = num_blocks < 14
    except (KeyError, IndexError, ZeroDivisionError) as error:
        shown = ", ".join(list(state_dict)[:3])
        raise ValueError(
            f"the weights are not those of an SSDLite model (missing {error}; first keys: {shown})"
        ) from error
    num_maps = 2 + len(extra_channels)
    layout = next(
        (
            name
            for name in BOX_LAYOUTS
            if boxes_per_location(box_config_from(name, num_feature_maps=num_maps)) == regression
        ),
        None,
    )
    if layout is None:
        raise ValueError(
            f"the weights have {regression} boxes per location, matching no known default box layout"
        )
    name = {
        ("mobilenet_v2", "paper"): "ssdlite_mobilenet_v2",
        ("mobilenet_v2", "torchvision"): "ssdlite320_mobilenet_v2",
        ("mobilenet_v1", "paper"): "ssdlite_mobilenet_v1",
    }.get((stem_block, layout), f"ssdlite_{stem_block}")
    return {
        "name": name,
        "backbone": stem_block,
        "width_mult": width_mult,
        "num_classes": int(classes_plus_background) - 1,
        "image_size": 320,
        "default_boxes": layout,
        "extra_channels": extra_channels,
        "pretrained_backbone": None,
        "shallow": shallow,
    }


def _count_indices(state_dict: Mapping[str, Tensor], prefix: str) -> int:
    """1 + the largest integer N among keys ``prefix + "N." + ...`` (0 when there is none)."""
    indices = {int(key[len(prefix) :].split(".")[0]) for key in state_dict if key.startswith(prefix)}
    return max(indices) + 1 if indices else 0


def load_state_dict_checked(model: SSDLite, state_dict: Mapping[str, Tensor], *, source: str) -> SSDLite:
    """Loads ``state_dict`` into ``model`` strictly; on any mismatch raises a ValueError that says which architecture
    the weights hold and which the model is.

    Args:
        model: the destination SSDLite.
        state_dict: its weights (keys as ``model.state_dict()``).
        source: where they come from (file name), for the message.

    Returns:
        ``model``.
    """
    differences = state_dict_differences(model, state_dict)
    if differences:
        try:
            held = describe_config(infer_config(state_dict))
        except ValueError as error:
            held = f"weights of an unknown architecture ({error})"
        expected = describe_config(model.config) if model.config else type(model).__name__
        raise ValueError(
            f"{source} holds {held} but the model is {expected}; " + "; ".join(differences) + ". "
            "Load it with load_checkpoint (which rebuilds the architecture it holds) or build the model with the "
            "same name, width_mult and num_classes."
        )
    model.load_state_dict(state_dict, strict=True)
    return model


def _model_weights(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The SSDLite weights of a Lightning state dict: ``ema_model.*`` if present, else ``model.*``."""
    weights = strip_prefix(state_dict, "ema_model.")
    if weights:
        weights = {key: value for key, value in weights.items() if key != "n_averaged"}
        if all(key.startswith("module.") for key in weights):  # torch.optim.swa_utils.AveragedModel
            weights = strip_prefix(weights, "module.")
        return weights
    return strip_prefix(state_dict, "model.")


def _checkpoint_parts(content: dict[str, Any], source: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Splits a loaded file into (model weights, metadata with model_config / class_names / category_ids)."""
    if isinstance(content.get("hyper_parameters"), Mapping) and isinstance(
        content.get("state_dict"), Mapping
    ):
        weights = _model_weights(content["state_dict"])
        if not weights:
            raise ValueError(
                f"{source} is a Lightning checkpoint without model weights (no 'model.*' or 'ema_model.*' keys)"
            )
        return weights, dict(content["hyper_parameters"])
    if isinstance(content.get("state_dict"), Mapping):
        return dict(content["state_dict"]), content
    if content and all(isinstance(value, Tensor) for value in content.values()):
        return content, {}
    raise ValueError(
        f"{source} is neither a Lightning checkpoint, a {{'model_config', 'state_dict'}} file nor a state dict "
        f"(top-level keys: {', '.join(map(str, list(content)[:6]))})"
    )


def load_checkpoint(
    path: str | Path, *, map_location: str | torch.device = "cpu"
) -> tuple[SSDLite, dict[str, Any]]:
    """Loads a model from a Lightning checkpoint, a ``{"model_config", "state_dict"}`` file or a bare state dict.

    The file is read with ``torch.load(weights_only=True)``. The architecture is rebuilt from
    ``hyper_parameters["model_config"]`` (or the file's ``model_config``; inferred from the weights when absent,
    with image_size 320) without downloading any pretrained backbone. Weights are ``ema_model.*`` when present
    (EMA), else ``model.*``.

    Args:
        path: checkpoint file.
        map_location: device for the weights and the model.

    Returns:
        (model in eval mode, meta) with meta keys ``class_names`` (label i + 1 = class_names[i]; "1".."K" when the
        file has none), ``category_ids`` (label i + 1 -> category_ids[i]; 1..K when absent), ``image_size`` and
        ``model_config``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable file, a model config this package cannot build (e.g. image_size above 2048), or
            weights that do not fit the architecture the file describes.
    """
    source = f"checkpoint {str(path)!r}"
    weights, meta = _checkpoint_parts(read_state_dict(path, map_location=map_location), source)
    config = meta.get("model_config")
    if config is None:
        config = infer_config(weights)
    config = {**dict(config), "pretrained_backbone": None}
    try:
        model = build_model_from_config(config)
    except ValueError as error:
        raise ValueError(f"{source} holds a model config this package cannot build: {error}") from error
    model = load_state_dict_checked(model, weights, source=source)
    num_classes = model.num_classes
    class_names = list(meta.get("class_names") or [str(label) for label in range(1, num_classes + 1)])
    category_ids = [int(i) for i in (meta.get("category_ids") or range(1, num_classes + 1))]
    if len(class_names) != num_classes or len(category_ids) != num_classes:
        raise ValueError(
            f"{source} has {len(class_names)} class_names and {len(category_ids)} category_ids for a model with "
            f"num_classes={num_classes}; they must match"
        )
    meta = {
        "class_names": class_names,
        "category_ids": category_ids,
        "image_size": model.image_size,
        "model_config": model.config,
    }
    return model.to(map_location).eval(), meta
