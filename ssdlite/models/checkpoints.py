"""Reading checkpoint files: the one module that opens a file ``torch.save`` wrote and checks what it holds.

Three layouts are read:

* a training checkpoint, the one Lightning writes for :class:`ssdlite.engine.module.SSDLiteModule`:
  ``hyper_parameters`` with ``model_config``, ``class_names`` and ``category_ids``, the trained weights under
  ``model.`` and their average under ``ema_model.``, and ``optimizer_states`` / ``global_step`` for resuming;
* a ``{"model_config", "state_dict"[, "class_names", "category_ids"]}`` file;
* a bare state dict (an SSDLite's, or a backbone's torchvision weights).

Every file is read with ``torch.load(weights_only=True)`` after its size and first bytes are checked, so a file that
``torch.save`` did not write (empty, text, another format, cut short) is one error saying so, instead of the "101."
that ``torch.load`` says. The key names below are where the LightningModule writes what this module reads.
Rebuilding the network a file describes is :func:`ssdlite.models.load_checkpoint`.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .weights import strip_prefix

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
OPTIMIZER_STATES_KEY = "optimizer_states"
GLOBAL_STEP_KEY = "global_step"
"""Lightning's entries that make a checkpoint one a run resumes from."""
_AVERAGED_MODULE_PREFIX = "module."
_AVERAGED_COUNT_KEY = "n_averaged"
"""How ``ModelEMA`` and ``torch.optim.swa_utils.AveragedModel`` lay out their state: the averaged copy and a count."""

CHECKPOINT_HELP = (
    "A checkpoint is the file torch.save writes (a zip archive of tensors and settings), such as tools/train.py's "
    "runs/NAME/best.ckpt and last.ckpt or torch.save(model.state_dict(), PATH); check the path, or copy the file "
    "again if it was cut short"
)
"""What a checkpoint is, for the errors about files that are not one."""
NOT_OURS_HELP = "pass a checkpoint written by tools/train.py"
"""The fix, for the errors about a checkpoint that holds something else than an SSDLite of this package."""

_ZIP_SIGNATURE = b"PK\x03\x04"
"""How torch.save's file (a zip archive since torch 1.6) starts."""
_PICKLE_PROTOCOL_OPCODE = 0x80
"""How torch.save's legacy format (``_use_new_zipfile_serialization=False``) starts: a pickle PROTO opcode."""


class NotACheckpointError(ValueError):
    """The file is not something ``torch.save`` wrote: empty, text, another format, or a cut-short archive."""


def read_state_dict(path: str | Path, *, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict:
    """Reads a ``.pth``/``.ckpt`` file with ``torch.load(weights_only=True)``: the only ``torch.load`` of a
    checkpoint in the package.

    Args:
        path: file to read.
        map_location: device the tensors are loaded to.
        mmap: map the tensors instead of reading them (to look at a large checkpoint's settings only).

    Returns:
        Whatever dict the file holds (a state dict or a checkpoint dict).

    Raises:
        FileNotFoundError: the file does not exist.
        NotACheckpointError: the file is not one ``torch.save`` wrote (empty, text, another format, cut short).
        ValueError: the file is not a dict of tensors that ``weights_only`` loading accepts.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}; check the path")
    reason = not_a_checkpoint_reason(path)
    if reason is not None:
        raise NotACheckpointError(f"{path} is not a checkpoint: {reason}. {CHECKPOINT_HELP}")
    try:
        content = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        raise ValueError(
            f"cannot read {path} with torch.load(weights_only=True) ({_first_line(error)}): the file is damaged or "
            f"holds more than tensors and plain settings. {CHECKPOINT_HELP}"
        ) from error
    if not isinstance(content, Mapping):
        raise ValueError(f"{path} holds a {type(content).__name__}, not a state dict or a checkpoint. {CHECKPOINT_HELP}")
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


@dataclass(frozen=True)
class CheckpointContents:
    """What a checkpoint file holds for rebuilding its network (:func:`read_checkpoint`).

    Attributes:
        source: the file, as messages name it (``checkpoint 'PATH'``).
        weights: the network's state dict, keys as ``SSDLite.state_dict()`` (the EMA copy's when the file has one).
        model_config: the ``model.config`` dict the network is rebuilt from; None for a bare state dict.
        class_names: the names of labels 1..K; None when the file has none.
        category_ids: the dataset category ids of labels 1..K; None when the file has none.
    """

    source: str
    weights: dict[str, Tensor]
    model_config: Mapping[str, Any] | None
    class_names: Sequence[str] | None
    category_ids: Sequence[int] | None

    def labels(self, num_classes: int) -> tuple[list[str], list[int]]:
        """(class_names, category_ids) of a network with ``num_classes`` classes: "1".."K" and 1..K where the file
        has none.

        Raises:
            ValueError: the file's names or ids are not ``num_classes`` long.
        """
        class_names = list(self.class_names or [str(label) for label in range(1, num_classes + 1)])
        category_ids = [int(i) for i in (self.category_ids or range(1, num_classes + 1))]
        if len(class_names) != num_classes or len(category_ids) != num_classes:
            raise ValueError(
                f"{self.source} has {len(class_names)} class_names and {len(category_ids)} category_ids for a model "
                f"with num_classes={num_classes}; they must match"
            )
        return class_names, category_ids


def read_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> CheckpointContents:
    """Reads any of the three layouts (see the module docstring) into the network's weights and its settings.

    Raises:
        FileNotFoundError: no such file.
        NotACheckpointError: not a file ``torch.save`` wrote.
        ValueError: a file ``torch.save`` wrote that holds none of the three layouts.
    """
    source = f"checkpoint {str(path)!r}"
    content = read_state_dict(path, map_location=map_location)
    hyper_parameters, state_dict = content.get(HYPER_PARAMETERS_KEY), content.get(STATE_DICT_KEY)
    if isinstance(hyper_parameters, Mapping) and isinstance(state_dict, Mapping):
        weights = _model_weights(state_dict)
        if not weights:
            raise ValueError(
                f"cannot load {path}: a Lightning checkpoint without model weights (no '{MODEL_WEIGHTS_PREFIX}*' or "
                f"'{EMA_WEIGHTS_PREFIX}*' keys); {NOT_OURS_HELP}"
            )
        return _contents(source, weights, hyper_parameters)
    if isinstance(state_dict, Mapping):
        return _contents(source, dict(state_dict), content)
    if content and all(isinstance(value, Tensor) for value in content.values()):
        return CheckpointContents(source, content, None, None, None)
    raise ValueError(
        f"cannot load {path}: it is neither a Lightning checkpoint, a {{'{MODEL_CONFIG_KEY}', '{STATE_DICT_KEY}'}} "
        f"file nor a state dict (top-level keys: {', '.join(map(str, list(content)[:6]))}); {NOT_OURS_HELP}"
    )


def read_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """The hyper-parameters of a checkpoint a run can resume from (with ``model_config`` and ``class_names``).

    Raises:
        FileNotFoundError: no such file.
        NotACheckpointError: not a file ``torch.save`` wrote.
        ValueError: a weights file, without the optimizer state or the model config a run resumes from.
    """
    content = read_state_dict(path)
    hyper_parameters = content.get(HYPER_PARAMETERS_KEY)
    if (
        not isinstance(hyper_parameters, Mapping)
        or OPTIMIZER_STATES_KEY not in content
        or MODEL_CONFIG_KEY not in hyper_parameters
    ):
        raise ValueError(
            f"{path} is not a training checkpoint of tools/train.py (no optimizer state or model config), so no run "
            f"resumes from it; to start from its weights use --model.init_from {path} instead"
        )
    return dict(hyper_parameters)


def checkpoint_step(path: str | Path) -> int:
    """The optimizer step a training checkpoint was saved at (its tensors are mapped, not read).

    Raises:
        ValueError: the file has no ``global_step`` (not a training checkpoint).
    """
    step = read_state_dict(path, mmap=True).get(GLOBAL_STEP_KEY)
    if step is None:
        raise ValueError(f"{path} has no {GLOBAL_STEP_KEY}: it is not a training checkpoint of tools/train.py")
    return int(step)


def _contents(source: str, weights: dict[str, Tensor], settings: Mapping[str, Any]) -> CheckpointContents:
    config = settings.get(MODEL_CONFIG_KEY)
    if config is not None and not isinstance(config, Mapping):
        raise ValueError(f"{source} has a {MODEL_CONFIG_KEY} of type {type(config).__name__}, expected a dict")
    return CheckpointContents(
        source, weights, config, settings.get(CLASS_NAMES_KEY) or None, settings.get(CATEGORY_IDS_KEY) or None
    )


def _model_weights(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The SSDLite weights of a Lightning state dict: the EMA copy's if present, else the trained network's."""
    weights = strip_prefix(state_dict, EMA_WEIGHTS_PREFIX)
    if weights:
        weights = {key: value for key, value in weights.items() if key != _AVERAGED_COUNT_KEY}
        if all(key.startswith(_AVERAGED_MODULE_PREFIX) for key in weights):
            weights = strip_prefix(weights, _AVERAGED_MODULE_PREFIX)
        return weights
    return strip_prefix(state_dict, MODEL_WEIGHTS_PREFIX)


def _first_line(error: BaseException) -> str:
    """The first line of an exception's message (torch's unpickling errors run to a page), else its type."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
