"""Loading a model from a file: training checkpoints, ``{model_config, state_dict}`` files and bare state dicts.

A training checkpoint is the one Lightning writes for :class:`ssdlite.engine.module.SSDLiteModule`; the key names
below are where it keeps what :func:`load_checkpoint` reads, and the module writes them from these constants.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ssdlite.core.anchors import boxes_per_location

from ._builder import (
    BACKBONE_TAPS,
    BOX_LAYOUTS,
    SSDLiteConfig,
    box_config_from,
    build_model_from_config,
    describe_config,
)
from ._registry import list_models, model_entrypoint
from .ssdlite import SSDLite
from .weights import read_state_dict, state_dict_differences, strip_prefix

HYPER_PARAMETERS_KEY = "hyper_parameters"
"""Lightning's checkpoint entry of the module's hyper-parameters (and what ``on_save_checkpoint`` adds)."""
STATE_DICT_KEY = "state_dict"
"""The weights: Lightning's checkpoint entry, and the entry of a ``{model_config, state_dict}`` file."""
MODEL_CONFIG_KEY = "model_config"
"""Hyper-parameter (or file entry) holding ``model.config``, the dict the network is rebuilt from."""
CLASS_NAMES_KEY = "class_names"
"""Hyper-parameter (or file entry): the names of labels 1..K."""
CATEGORY_IDS_KEY = "category_ids"
"""Hyper-parameter (or file entry): the dataset category id of labels 1..K."""
MODEL_WEIGHTS_PREFIX = "model."
"""State-dict prefix of the trained network, the LightningModule's ``model`` attribute."""
EMA_WEIGHTS_PREFIX = "ema_model."
"""State-dict prefix of the weight average, the LightningModule's ``ema_model`` attribute."""
_AVERAGED_MODULE_PREFIX = "module."
_AVERAGED_COUNT_KEY = "n_averaged"
"""How ``ModelEMA`` and ``torch.optim.swa_utils.AveragedModel`` lay out their state: the averaged copy and a count."""


def infer_config(state_dict: Mapping[str, Tensor]) -> SSDLiteConfig:
    """Infers the config of the SSDLite whose ``state_dict()`` this is (``image_size`` cannot be inferred: 320).

    Raises:
        ValueError: the keys are not those of an SSDLite of this package.
    """
    try:
        backbone, width_mult, shallow = _backbone_facts(state_dict)
        regression = [
            state_dict[f"regression_head.{index}.1.weight"].shape[0] // 4
            for index in range(_count_indices(state_dict, "regression_head."))
        ]
        classes_plus_background = state_dict["classification_head.0.1.weight"].shape[0] // regression[0]
        extra_channels = [
            int(state_dict[f"extras.{index}.2.0.weight"].shape[0])
            for index in range(_count_indices(state_dict, "extras."))
        ]
    except (KeyError, IndexError, ZeroDivisionError) as error:
        shown = ", ".join(list(state_dict)[:3])
        raise ValueError(
            f"the weights are not those of an SSDLite model (missing {error}; first keys: {shown})"
        ) from error
    layout = _box_layout(regression, num_feature_maps=BACKBONE_TAPS + len(extra_channels))
    return SSDLiteConfig(
        name=_preset_name(backbone, layout),
        backbone=backbone,
        width_mult=width_mult,
        num_classes=int(classes_plus_background) - 1,
        image_size=320,
        default_boxes=layout,
        extra_channels=tuple(extra_channels),
        shallow=shallow,
    )


def _backbone_facts(state_dict: Mapping[str, Tensor]) -> tuple[str, float, bool]:
    """(backbone, width_mult, shallow) from the backbone's weights (KeyError when they are not a MobileNet's)."""
    if "backbone.features.1.conv.0.0.weight" in state_dict:
        return "mobilenet_v2", round(state_dict["backbone.features.17.conv.2.weight"].shape[0] / 320, 2), False
    num_blocks = _count_indices(state_dict, "backbone.features.")
    width_mult = round(state_dict[f"backbone.features.{num_blocks - 1}.1.0.weight"].shape[0] / 1024, 2)
    return "mobilenet_v1", width_mult, num_blocks < 14


def _box_layout(regression_boxes: list[int], *, num_feature_maps: int) -> str:
    """The named default box layout with these boxes per location (ValueError when none has)."""
    for name in BOX_LAYOUTS:
        if boxes_per_location(box_config_from(name, num_feature_maps=num_feature_maps)) == regression_boxes:
            return name
    raise ValueError(
        f"the weights have {regression_boxes} boxes per location, matching no known default box layout"
    )


def _preset_name(backbone: str, layout: str) -> str:
    """The first registered preset with this backbone and box layout, else ``ssdlite_<backbone>``."""
    for name in list_models():
        preset = model_entrypoint(name)()
        if (preset.backbone, preset.default_boxes) == (backbone, layout):
            return name
    return f"ssdlite_{backbone}"


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
    """The SSDLite weights of a Lightning state dict: the EMA copy's if present, else the trained network's."""
    weights = strip_prefix(state_dict, EMA_WEIGHTS_PREFIX)
    if weights:
        weights = {key: value for key, value in weights.items() if key != _AVERAGED_COUNT_KEY}
        if all(key.startswith(_AVERAGED_MODULE_PREFIX) for key in weights):
            weights = strip_prefix(weights, _AVERAGED_MODULE_PREFIX)
        return weights
    return strip_prefix(state_dict, MODEL_WEIGHTS_PREFIX)


def _checkpoint_parts(content: dict[str, Any], source: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Splits a loaded file into (model weights, metadata with model_config / class_names / category_ids)."""
    if isinstance(content.get(HYPER_PARAMETERS_KEY), Mapping) and isinstance(content.get(STATE_DICT_KEY), Mapping):
        weights = _model_weights(content[STATE_DICT_KEY])
        if not weights:
            raise ValueError(
                f"{source} is a Lightning checkpoint without model weights (no '{MODEL_WEIGHTS_PREFIX}*' or "
                f"'{EMA_WEIGHTS_PREFIX}*' keys)"
            )
        return weights, dict(content[HYPER_PARAMETERS_KEY])
    if isinstance(content.get(STATE_DICT_KEY), Mapping):
        return dict(content[STATE_DICT_KEY]), content
    if content and all(isinstance(value, Tensor) for value in content.values()):
        return content, {}
    raise ValueError(
        f"{source} is neither a Lightning checkpoint, a {{'{MODEL_CONFIG_KEY}', '{STATE_DICT_KEY}'}} file nor a "
        f"state dict (top-level keys: {', '.join(map(str, list(content)[:6]))})"
    )


def _build_held_model(config: SSDLiteConfig | Mapping[str, Any], source: str) -> SSDLite:
    """The SSDLite a file's config describes, without downloading or reading any pretrained backbone."""
    try:
        if not isinstance(config, SSDLiteConfig):
            config = SSDLiteConfig.from_dict({**config, "pretrained_backbone": None})
        return build_model_from_config(config)
    except ValueError as error:
        raise ValueError(f"{source} holds a model config this package cannot build: {error}") from error


def _class_metadata(meta: Mapping[str, Any], num_classes: int, source: str) -> tuple[list[str], list[int]]:
    """(class_names, category_ids) of a file's metadata, "1".."K" and 1..K where it has none."""
    class_names = list(meta.get(CLASS_NAMES_KEY) or [str(label) for label in range(1, num_classes + 1)])
    category_ids = [int(i) for i in (meta.get(CATEGORY_IDS_KEY) or range(1, num_classes + 1))]
    if len(class_names) != num_classes or len(category_ids) != num_classes:
        raise ValueError(
            f"{source} has {len(class_names)} class_names and {len(category_ids)} category_ids for a model with "
            f"num_classes={num_classes}; they must match"
        )
    return class_names, category_ids


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
    config = meta.get(MODEL_CONFIG_KEY)
    if config is None:
        config = infer_config(weights)
    model = load_state_dict_checked(_build_held_model(config, source), weights, source=source)
    class_names, category_ids = _class_metadata(meta, model.num_classes, source)
    meta = {
        "class_names": class_names,
        "category_ids": category_ids,
        "image_size": model.image_size,
        "model_config": model.config,
    }
    return model.to(map_location).eval(), meta
