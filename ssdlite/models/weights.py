"""Loading state dicts into modules with errors that say what differs and how to fix it; the width multipliers.

Reading the files is :mod:`ssdlite.models.checkpoints`.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

WIDTH_MULTIPLIERS = (0.35, 0.5, 0.75, 1.0, 1.4)
"""The width multipliers the MobileNetV2 paper reports; any positive value works."""


def check_width_mult(width_mult: float) -> float:
    """Returns ``width_mult`` as a float, or raises ValueError when it is not a positive number."""
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not width_mult > 0:
        raise ValueError(
            f"width_mult must be a number > 0 (usual values {', '.join(map(str, WIDTH_MULTIPLIERS))}), "
            f"got {width_mult!r}"
        )
    return float(width_mult)


def strip_prefix(state_dict: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Returns the entries whose key starts with ``prefix``, with the prefix removed."""
    return {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}


def state_dict_differences(module: nn.Module, state_dict: Mapping[str, Tensor]) -> list[str]:
    """Lists how ``state_dict`` differs from ``module.state_dict()``.

    Args:
        module: the module the weights are meant for.
        state_dict: the weights.

    Returns:
        Human-readable lines: missing keys, unexpected keys and shape mismatches (empty when they fit).
    """
    expected = module.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    shapes = [
        f"{key}: file {tuple(state_dict[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in expected
        if key in state_dict
        and isinstance(state_dict[key], Tensor)
        and tuple(state_dict[key].shape) != tuple(expected[key].shape)
    ]
    lines = []
    for title, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", shapes),
    ):
        if items:
            shown = ", ".join(items[:3]) + (f", ... ({len(items)} in all)" if len(items) > 3 else "")
            lines.append(f"{title}: {shown}")
    return lines


def load_weights(module: nn.Module, state_dict: Mapping[str, Tensor], *, source: str, expected: str) -> None:
    """Loads ``state_dict`` into ``module`` strictly, raising a ValueError that names the file and the model.

    Args:
        module: destination module.
        state_dict: weights whose keys and shapes must match ``module.state_dict()`` exactly.
        source: where the weights come from (a file name), for the message.
        expected: what ``module`` is (e.g. "MobileNetV2 backbone, width_mult=0.5"), for the message.

    Raises:
        ValueError: keys or shapes differ.
    """
    differences = state_dict_differences(module, state_dict)
    if differences:
        raise ValueError(
            f"weights from {source} do not fit the {expected}: " + "; ".join(differences) + ". "
            "Use weights saved from the same architecture and width, or build the model to match the weights."
        )
    module.load_state_dict(state_dict, strict=True)
