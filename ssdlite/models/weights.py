"""Reading weight files and loading state dicts with errors that say what went wrong and how to fix it."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

WIDTH_MULTIPLIERS = (0.35, 0.5, 0.75, 1.0, 1.4)
"""The width multipliers the MobileNetV2 paper reports; any positive value works."""

CHECKPOINT_HELP = (
    "A checkpoint is the file torch.save writes (a zip archive of tensors and settings), such as tools/train.py's "
    "runs/NAME/best.ckpt and last.ckpt or torch.save(model.state_dict(), PATH); check the path, or copy the file "
    "again if it was cut short"
)
"""What a checkpoint is, for the errors about files that are not one."""

_ZIP_SIGNATURE = b"PK\x03\x04"
"""How torch.save's file (a zip archive since torch 1.6) starts."""
_PICKLE_PROTOCOL_OPCODE = 0x80
"""How torch.save's legacy format (``_use_new_zipfile_serialization=False``) starts: a pickle PROTO opcode."""


class NotACheckpointError(ValueError):
    """The file is not something ``torch.save`` wrote: empty, text, another format, or a cut-short archive."""


def check_width_mult(width_mult: float) -> float:
    """Returns ``width_mult`` as a float, or raises ValueError when it is not a positive number."""
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not width_mult > 0:
        raise ValueError(
            f"width_mult must be a number > 0 (usual values {', '.join(map(str, WIDTH_MULTIPLIERS))}), "
            f"got {width_mult!r}"
        )
    return float(width_mult)


def read_state_dict(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict:
    """Reads a ``.pth``/``.ckpt`` file with ``torch.load(weights_only=True)``.

    Args:
        path: file to read.
        map_location: device the tensors are loaded to.

    Returns:
        Whatever dict the file holds (a state dict or a checkpoint dict).

    Raises:
        FileNotFoundError: the file does not exist.
        NotACheckpointError: the file is not one ``torch.save`` wrote (empty, text, another format, cut short).
        ValueError: the file is not a dict of tensors that ``weights_only`` loading accepts.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist; check the path")
    reason = not_a_checkpoint_reason(path)
    if reason is not None:
        raise NotACheckpointError(f"{path} is not a checkpoint: {reason}. {CHECKPOINT_HELP}")
    try:
        content = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        raise ValueError(
            f"cannot read {path} with torch.load(weights_only=True) ({error}): the file is damaged or holds more "
            f"than tensors and plain settings. {CHECKPOINT_HELP}"
        ) from error
    if not isinstance(content, Mapping):
        raise ValueError(
            f"weights file {str(path)!r} holds a {type(content).__name__}, expected a state dict"
        )
    return dict(content)


def not_a_checkpoint_reason(path: str | Path) -> str | None:
    """Why ``path`` cannot be a file ``torch.save`` wrote, judged from its size and first bytes; None if it may be.

    torch.save writes a zip archive holding ``data.pkl`` (or, in its legacy format, a pickle), so an empty file, text,
    another format or an archive without its end record (a copy or download cut short) is recognised before
    ``torch.load`` fails with a message such as "101." or "." that says nothing about the file.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "the file is empty (0 bytes)"
    with path.open("rb") as file:
        head = file.read(64)
    if head.startswith(_ZIP_SIGNATURE):
        if not zipfile.is_zipfile(path):
            return f"it is a zip archive cut short or damaged ({size:,} bytes, no end-of-archive record)"
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
            return f"it is a zip archive without the data.pkl torch.save writes (it holds {', '.join(names[:3])})"
        return None
    if head[0] == _PICKLE_PROTOCOL_OPCODE:
        return None
    text = head.decode("utf-8", errors="ignore")
    if text and all(character.isprintable() or character.isspace() for character in text):
        first_line = text.strip().splitlines()[0][:40] if text.strip() else ""
        return f"it holds text ({first_line!r})"
    return f"it starts with the bytes {head[:8].hex(' ')}, not with those of a zip archive"


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
