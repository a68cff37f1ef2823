"""The network a checkpoint holds: its architecture (from the file's config, else inferred from the weights), built
and loaded with errors that say which architecture the weights are and which the model is.

Reading the file and checking its layout is :mod:`ssdlite.models.checkpoints`; this module builds what it read.
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
from .checkpoints import NOT_OURS_HELP, read_checkpoint
from .ssdlite import SSDLite
from .weights import state_dict_differences


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


def _build_held_model(config: SSDLiteConfig | Mapping[str, Any], source: str) -> SSDLite:
    """The SSDLite a file's config describes, without downloading or reading any pretrained backbone."""
    try:
        if not isinstance(config, SSDLiteConfig):
            config = SSDLiteConfig.from_dict({**config, "pretrained_backbone": None})
        return build_model_from_config(config)
    except (ValueError, TypeError) as error:  # TypeError: a value of the wrong type for its field
        raise ValueError(f"{source} holds a model config this package cannot build: {error}") from error


def load_checkpoint(
    path: str | Path, *, map_location: str | torch.device = "cpu"
) -> tuple[SSDLite, dict[str, Any]]:
    """Loads a model from a Lightning checkpoint, a ``{"model_config", "state_dict"}`` file or a bare state dict.

    The file is read by :func:`ssdlite.models.checkpoints.read_checkpoint`. The architecture is rebuilt from
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
        NotACheckpointError: a file ``torch.save`` did not write (empty, text, cut short).
        ValueError: a file of another layout, a model config this package cannot build (e.g. image_size above
            2048), or weights that do not fit the architecture the file describes; one line naming the file.
    """
    contents = read_checkpoint(path, map_location=map_location)
    config = contents.model_config
    if config is None:
        try:
            config = infer_config(contents.weights)
        except ValueError as error:
            raise ValueError(f"cannot load {path}: {error}; {NOT_OURS_HELP}") from error
    model = _build_held_model(config, contents.source)
    load_state_dict_checked(model, contents.weights, source=contents.source)
    class_names, category_ids = contents.labels(model.num_classes)
    meta = {
        "class_names": class_names,
        "category_ids": category_ids,
        "image_size": model.image_size,
        "model_config": model.config,
    }
    return model.to(map_location).eval(), meta
