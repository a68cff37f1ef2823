"""Fine-tuning: start from another checkpoint's weights, as far as they fit, and optionally freeze the backbone (or
its first layers).

``load_compatible_weights`` copies every tensor whose name and shape match from a trained SSDLite (any of our
checkpoints: width, classes, input size may differ) into a freshly built one. The final 1x1 convolutions of the
classification head are re-initialised whenever the class lists differ -- also when only the names or their order
differ, because a class head that maps to the wrong names is worse than a fresh one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ssdlite.models import load_checkpoint

CLASS_HEAD_PREFIX = "classification_head."


@dataclass
class WeightTransfer:
    """What :func:`load_compatible_weights` did.

    Attributes:
        source: the checkpoint path.
        loaded: names of the tensors copied.
        skipped: name -> reason for every tensor of the model left as initialised.
        class_head_reset: whether the class head was re-initialised because the classes differ.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    class_head_reset: bool = False

    def summary(self) -> str:
        """A few lines for the log: counts, then the skipped tensors grouped by reason."""
        total = len(self.loaded) + len(self.skipped)
        lines = [f"init_from {self.source}: loaded {len(self.loaded)}/{total} tensors"]
        if self.class_head_reset:
            lines.append("  class head re-initialised (the checkpoint's classes differ from the data's)")
        by_reason: dict[str, list[str]] = {}
        for name, reason in self.skipped.items():
            by_reason.setdefault(reason, []).append(name)
        for reason, names in by_reason.items():
            shown = ", ".join(names[:4]) + (f", ... ({len(names)} in all)" if len(names) > 4 else "")
            lines.append(f"  not loaded ({reason}): {shown}")
        return "\n".join(lines)


def is_class_logits_layer(name: str) -> bool:
    """True for the final 1x1 convolution of a classification prediction block (``classification_head.k.1.*``)."""
    parts = name.split(".")
    return name.startswith(CLASS_HEAD_PREFIX) and len(parts) >= 3 and parts[2] == "1"


def load_compatible_weights(
    model: nn.Module, checkpoint: str | Path, *, class_names: Sequence[str] | None = None
) -> WeightTransfer:
    """Copies the shape-compatible weights of ``checkpoint`` into ``model`` (in place).

    Args:
        model: the SSDLite to initialise.
        checkpoint: a training checkpoint (EMA weights when it has them) or a ``{model_config, state_dict}`` file.
        class_names: the classes ``model`` will learn; the class head is not copied when they differ from the
            checkpoint's (None: compare the class counts only).

    Returns:
        A :class:`WeightTransfer` report.

    Raises:
        FileNotFoundError: no such checkpoint.
        ValueError: the file is not an SSDLite checkpoint.
    """
    source_model, meta = load_checkpoint(checkpoint, map_location="cpu")
    source = source_model.state_dict()
    transfer = WeightTransfer(source=str(checkpoint))
    same_classes = (
        list(class_names) == list(meta["class_names"])
        if class_names is not None
        else source_model.num_classes == getattr(model, "num_classes", None)
    )
    transfer.class_head_reset = not same_classes
    state = model.state_dict()
    for name, tensor in state.items():
        if not same_classes and is_class_logits_layer(name):
            transfer.skipped[name] = "class head, classes differ"
        elif name not in source:
            transfer.skipped[name] = "not in the checkpoint"
        elif tuple(source[name].shape) != tuple(tensor.shape):
            transfer.skipped[name] = "shape differs"
        else:
            tensor.copy_(source[name])
            transfer.loaded.append(name)
    if not transfer.loaded:
        raise ValueError(
            f"init_from {checkpoint}: no weight of the checkpoint fits the model (it holds "
            f"{meta['model_config'].get('name')} with width_mult={meta['model_config'].get('width_mult')}); "
            "check the model name and width_mult"
        )
    return transfer


def freeze_backbone(model: nn.Module) -> int:
    """Stops gradients into ``model.backbone``; returns the number of frozen parameters.

    The backbone's BatchNorm layers must also be kept in eval mode while training (their running statistics
    would otherwise keep moving): :class:`ssdlite.engine.module.SSDLiteModule` does that in ``train()``.
    """
    return _freeze(model.backbone)


def _block_strides(features: nn.Sequential) -> list[int]:
    """The output stride of each block of a backbone's ``features`` (the product of its convolutions' strides)."""
    strides, stride = [], 1
    for block in features:
        for module in block.modules():
            if isinstance(module, nn.Conv2d):
                stride *= module.stride[0]
        strides.append(stride)
    return strides


def frozen_block_count(model: nn.Module, stride: int) -> int:
    """How many of the backbone's first ``features`` blocks output at a stride <= ``stride``.

    Raises:
        ValueError: ``stride`` is not the output stride of one of the backbone's blocks below its last stride.
    """
    strides = _block_strides(model.backbone.features)
    choices = sorted(set(strides) - {strides[-1]})
    if stride not in choices:
        raise ValueError(
            f"freeze_backbone_stride={stride}: the backbone's blocks output at strides {choices} below its last "
            f"({strides[-1]}); pick one of those, 0 to train every layer, or freeze_backbone: true for all of it"
        )
    return sum(1 for value in strides if value <= stride)


def freeze_backbone_blocks(model: nn.Module, count: int) -> int:
    """Stops gradients into the backbone's first ``count`` ``features`` blocks; returns the frozen parameters.

    Their BatchNorm layers must stay in eval mode as well (``SSDLiteModule.train`` does that). Autograd then
    skips their whole backward pass, not only their weight gradients: the first blocks run at the largest
    resolution, so this is the cheapest part of the network to stop training.
    """
    return _freeze(model.backbone.features[:count])


def _freeze(module: nn.Module) -> int:
    """Stops gradients into ``module``'s parameters; returns how many numbers they hold."""
    frozen = 0
    for parameter in module.parameters():
        parameter.requires_grad_(False)
        frozen += parameter.numel()
    return frozen
