"""Building a model: the detector's config, the SSDLite it describes, and the ImageNet classifiers.

A detector is described by a frozen, self-validating :class:`SSDLiteConfig`; a registered name gives the default
config of a preset (:mod:`ssdlite.models.presets`)::

    model = build_model("ssdlite_mobilenet_v2", num_classes=20, width_mult=0.5)
    same = build_model_from_config(model.config)

``model.config`` is the config as a plain dict (:meth:`SSDLiteConfig.to_dict`), the form checkpoints and exported
files store it in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import nn
from torchvision.models import mobilenet_v2

from ssdlite.core.anchors import DefaultBoxConfig

from ._registry import model_entrypoint
from .blocks import BATCHNORM_EPS, TORCHVISION_BATCHNORM_EPS
from .mobilenet_v1 import MobileNetV1, MobileNetV1Backbone
from .mobilenet_v2 import MobileNetV2Backbone
from .ssdlite import EXTRA_CHANNELS, SSDLite, check_image_size, check_num_classes
from .weights import check_width_mult

MIN_EXTRA_DEPTH = 16
"""TF's ``min_depth`` for the SSDLite extra layers under a width multiplier."""

BACKBONES = ("mobilenet_v2", "mobilenet_v1")
BOX_LAYOUTS = ("paper", "torchvision")
BACKBONE_TAPS = 2
"""Feature maps both backbones hand to the head (stride 16 and stride 32); the extra layers add the rest."""


def default_extra_channels(width_mult: float) -> list[int]:
    """TF's extra layer depths under a width multiplier: ``max(16, int(c * width_mult))`` for (512, 256, 256, 128)."""
    return [max(MIN_EXTRA_DEPTH, int(channels * width_mult)) for channels in EXTRA_CHANNELS]


@dataclasses.dataclass(frozen=True, kw_only=True)
class SSDLiteConfig:
    """What an SSDLite detector is: everything :func:`build_model_from_config` needs.

    Frozen and checked on construction: an invalid value raises a ValueError that names it and the choices.

    Attributes:
        name: preset name (informative); None gives ``ssdlite_<backbone>``.
        backbone: "mobilenet_v2" or "mobilenet_v1".
        width_mult: width multiplier alpha (> 0).
        num_classes: K object classes (background excluded).
        image_size: square input side S (64 to 2048).
        default_boxes: "paper" (TF ssd_anchor_generator, 3 boxes in the lowest map), "torchvision" (6 boxes
            everywhere) or a :class:`~ssdlite.core.anchors.DefaultBoxConfig` (a dict of its fields is converted).
        extra_channels: output channels of the four extra layers; None means TF's rule
            ``max(16, int(c * width_mult))`` for c in (512, 256, 256, 128) (see :attr:`resolved_extra_channels`).
        pretrained_backbone: None, "imagenet" (MobileNetV2 width 1.0 only) or a path to a local ``.pth``.
        shallow: MobileNetV1 only: drop the five 14x14x512 blocks.
        backbone_bn_eps: the backbone's BatchNorm epsilon. None resolves to torchvision's 1e-5 when
            ``pretrained_backbone`` is set (the epsilon its weights were trained with: thousands of their channels
            have running variances below 1e-3, which the detector's 1e-3 would flatten) and to the detector's 1e-3
            otherwise; checkpoints store the resolved value.
    """

    name: str | None = None
    backbone: str
    width_mult: float = 1.0
    num_classes: int = 90
    image_size: int = 320
    default_boxes: str | DefaultBoxConfig = "paper"
    extra_channels: tuple[int, ...] | None = None
    pretrained_backbone: str | None = None
    shallow: bool = False
    backbone_bn_eps: float | None = None

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; available: {', '.join(BACKBONES)}")
        self._set("width_mult", check_width_mult(self.width_mult))
        check_image_size(self.image_size)
        check_num_classes(self.num_classes)
        if self.shallow and self.backbone != "mobilenet_v1":
            raise ValueError(f"shallow=True applies to MobileNetV1 only, not to backbone {self.backbone!r}")
        if self.name is None:
            self._set("name", f"ssdlite_{self.backbone}")
        if self.extra_channels is not None:
            self._set("extra_channels", tuple(int(channels) for channels in self.extra_channels))
        if self.pretrained_backbone is not None:
            self._set("pretrained_backbone", str(self.pretrained_backbone))
        if self.backbone_bn_eps is not None:
            if isinstance(self.backbone_bn_eps, bool) or not (
                isinstance(self.backbone_bn_eps, (int, float)) and 0 < self.backbone_bn_eps < 1
            ):
                raise ValueError(f"backbone_bn_eps must be a number in (0, 1), got {self.backbone_bn_eps!r}")
            self._set("backbone_bn_eps", float(self.backbone_bn_eps))
        if not isinstance(self.default_boxes, DefaultBoxConfig):
            layout = box_config_from(self.default_boxes, num_feature_maps=self.num_feature_maps)
            self._set("default_boxes", self.default_boxes if isinstance(self.default_boxes, str) else layout)

    def _set(self, field: str, value: Any) -> None:
        object.__setattr__(self, field, value)  # normalising a frozen dataclass's own fields in __post_init__

    @property
    def resolved_extra_channels(self) -> tuple[int, ...]:
        """The extra layers' output channels: ``extra_channels``, or TF's rule for ``width_mult`` when None."""
        if self.extra_channels is None:
            return tuple(default_extra_channels(self.width_mult))
        return self.extra_channels

    @property
    def resolved_backbone_bn_eps(self) -> float:
        """The backbone's BatchNorm epsilon: ``backbone_bn_eps``, or the rule given for it when None."""
        if self.backbone_bn_eps is not None:
            return self.backbone_bn_eps
        return TORCHVISION_BATCHNORM_EPS if self.pretrained_backbone is not None else BATCHNORM_EPS

    @property
    def num_feature_maps(self) -> int:
        """Maps the head predicts from: the backbone taps plus one per extra layer."""
        return BACKBONE_TAPS + len(self.resolved_extra_channels)

    @property
    def box_config(self) -> DefaultBoxConfig:
        """The default box layout, for :attr:`num_feature_maps` maps when ``default_boxes`` is a layout name."""
        return box_config_from(self.default_boxes, num_feature_maps=self.num_feature_maps)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> SSDLiteConfig:
        """The config a plain dict describes (``model.config``, a checkpoint's ``model_config``).

        Raises:
            ValueError: a key is unknown or missing, or a value is invalid.
        """
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ValueError(f"unknown model config key(s) {unknown}; allowed: {', '.join(CONFIG_KEYS)}")
        missing = [key for key in REQUIRED_KEYS if key not in config]
        if missing:
            raise ValueError(f"model config lacks key(s) {missing}; a full config has: {', '.join(CONFIG_KEYS)}")
        return cls(**config)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able types, ``extra_channels`` resolved (what checkpoints store)."""
        config = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        if isinstance(self.default_boxes, DefaultBoxConfig):
            fields = dataclasses.asdict(self.default_boxes)
            fields["aspect_ratios"] = [list(ratios) for ratios in self.default_boxes.aspect_ratios]
            config["default_boxes"] = fields
        config["extra_channels"] = list(self.resolved_extra_channels)
        config["backbone_bn_eps"] = self.resolved_backbone_bn_eps
        return config


CONFIG_KEYS = tuple(field.name for field in dataclasses.fields(SSDLiteConfig))
"""The keys of ``SSDLiteConfig.to_dict()``, in order."""
REQUIRED_KEYS = ("backbone", "width_mult", "num_classes", "image_size", "default_boxes")
"""Keys a stored config dict must have (``SSDLiteConfig.from_dict``); the others have defaults."""


def box_config_from(default_boxes: str | Mapping[str, Any] | DefaultBoxConfig, *, num_feature_maps: int = 6
                    ) -> DefaultBoxConfig:
    """The :class:`DefaultBoxConfig` a config's ``default_boxes`` value names.

    Args:
        default_boxes: "paper", "torchvision", a DefaultBoxConfig or a dict of its fields (lists become tuples).
        num_feature_maps: feature maps of the model (for the named layouts).

    Raises:
        ValueError: an unknown layout name, a dict that is not DefaultBoxConfig fields, or another type.
    """
    if isinstance(default_boxes, DefaultBoxConfig):
        return default_boxes
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


def describe_config(config: SSDLiteConfig | Mapping[str, Any]) -> str:
    """One-line description of an architecture, e.g. "ssdlite_mobilenet_v2 (mobilenet_v2, width_mult=1.0, ...)".

    Args:
        config: a config, or a config dict (keys it lacks are shown as None).
    """
    if isinstance(config, SSDLiteConfig):
        config = config.to_dict()
    shallow = ", shallow" if config.get("shallow") else ""
    boxes = config.get("default_boxes")
    boxes = boxes if isinstance(boxes, str) else "custom"
    return (
        f"{config.get('name')} ({config.get('backbone')}{shallow}, width_mult={config.get('width_mult')}, "
        f"num_classes={config.get('num_classes')}, default_boxes={boxes})"
    )


def model_config(name: str, **overrides: Any) -> SSDLiteConfig:
    """The config of preset ``name`` with ``overrides`` applied.

    Args:
        name: a name from :func:`ssdlite.models.list_models`.
        **overrides: :class:`SSDLiteConfig` fields to change (num_classes, width_mult, image_size,
            pretrained_backbone, shallow, default_boxes, extra_channels).

    Raises:
        ValueError: unknown name, unknown key or invalid value.
    """
    default = model_entrypoint(name)()
    allowed = [key for key in CONFIG_KEYS if key != "name"]
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for model {name!r}; allowed: {', '.join(allowed)}")
    return dataclasses.replace(default, name=name, **overrides)


def build_backbone(config: SSDLiteConfig) -> nn.Module:
    """The backbone module a config describes, its BatchNorm layers with ``config.resolved_backbone_bn_eps``."""
    if config.backbone == "mobilenet_v2":
        backbone = MobileNetV2Backbone(width_mult=config.width_mult, pretrained=config.pretrained_backbone)
    else:
        backbone = MobileNetV1Backbone(
            width_mult=config.width_mult, shallow=config.shallow, pretrained=config.pretrained_backbone
        )
    for module in backbone.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps = config.resolved_backbone_bn_eps
    return backbone


def build_model_from_config(config: SSDLiteConfig | Mapping[str, Any]) -> SSDLite:
    """Builds the SSDLite a config (or its dict: ``model.config`` of any built model) describes.

    Raises:
        ValueError: invalid config (see :class:`SSDLiteConfig`).
    """
    if not isinstance(config, SSDLiteConfig):
        config = SSDLiteConfig.from_dict(config)
    return SSDLite(
        backbone=build_backbone(config),
        num_classes=config.num_classes,
        image_size=config.image_size,
        box_config=config.box_config,
        extra_channels=config.resolved_extra_channels,
        config=config.to_dict(),
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
