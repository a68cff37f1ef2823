"""Optimizers for detector training: parameter groups without weight decay on norms and biases, lr scaling.

Weight decay is applied to convolution weights only: BatchNorm scales/shifts and biases (every parameter with fewer
than two dimensions) get none, as in the TF Object Detection API (its l2_regularizer covers conv kernels) and the
"bag of tricks" (He et al. 2019, section 3.1 "No bias decay").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
from torch import nn

OptimizerName = Literal["sgd", "adamw", "rmsprop"]
OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw", "rmsprop")


def parameter_groups(model: nn.Module, *, weight_decay: float) -> list[dict]:
    """Splits the trainable parameters of ``model`` into a decayed and a non-decayed group.

    Args:
        model: the network.
        weight_decay: decay of the conv / linear weights (parameters with ``ndim >= 2``).

    Returns:
        ``[{"params": weights, "weight_decay": weight_decay}, {"params": norms_and_biases, "weight_decay": 0.0}]``,
        empty groups left out; frozen parameters (``requires_grad=False``) are not included.
    """
    decayed, not_decayed = [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (decayed if parameter.ndim >= 2 else not_decayed).append(parameter)
    groups = [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": not_decayed, "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def build_optimizer(
    name: OptimizerName,
    groups: Iterable[dict],
    *,
    lr: float,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """The optimizer ``name`` over parameter ``groups`` (each carrying its own ``weight_decay``).

    Args:
        name: "sgd" (momentum, torchvision's detection references), "adamw" (decoupled decay, Loshchilov & Hutter
            2019; ``momentum`` is its beta1) or "rmsprop" (the TF Object Detection API's SSDLite recipe: decay 0.9,
            epsilon 1.0; TF's ``l2_regularizer`` is a gradient term, as torch's ``weight_decay`` for RMSprop).
        groups: from :func:`parameter_groups`.
        lr: learning rate (already scaled to the global batch).
        momentum: SGD / RMSprop momentum, AdamW beta1.

    Raises:
        ValueError: unknown optimizer name, or no trainable parameter.
    """
    groups = list(groups)
    if not groups:
        raise ValueError("the model has no trainable parameter (everything frozen?); unfreeze some layers")
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999))
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=0.9, eps=1.0, momentum=momentum)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def scaled_learning_rate(base_lr: float, *, global_batch_size: int, base_batch_size: int | None) -> float:
    """The linear scaling rule (Goyal et al. 2017): ``base_lr * global_batch_size / base_batch_size``.

    Args:
        base_lr: learning rate of the recipe, given for ``base_batch_size`` images per optimizer step.
        global_batch_size: images per optimizer step of this run (batch size x devices x nodes x accumulation).
        base_batch_size: the recipe's reference batch; None disables scaling.
    """
    if base_batch_size is None:
        return base_lr
    if base_batch_size < 1:
        raise ValueError(f"base_batch_size must be >= 1 (or null to disable lr scaling), got {base_batch_size}")
    return base_lr * global_batch_size / base_batch_size
