"""Optimizers for detector training: parameter groups without weight decay on norms and biases, lr scaling.

Weight decay is applied to convolution weights only: BatchNorm scales/shifts and biases (every parameter with fewer
than two dimensions) get none, as in the TF Object Detection API (its l2_regularizer covers conv kernels) and the
"bag of tricks" (He et al. 2019, section 3.1 "No bias decay").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Literal

import torch
from torch import nn

OptimizerName = Literal["sgd", "adamw", "rmsprop"]
OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw", "rmsprop")


def parameter_groups(
    model: nn.Module,
    *,
    weight_decay: float,
    overrides: Mapping[str, float] | None = None,
    lr_factors: Mapping[str, float] | None = None,
) -> list[dict]:
    """Splits the trainable parameters of ``model`` into groups by weight decay and learning-rate factor.

    Args:
        model: the network.
        weight_decay: decay of the conv / linear weights (parameters with ``ndim >= 2``).
        overrides: decay of the conv / linear weights under a module, by its dotted name in ``model`` (say
            ``{"regression_head": 4e-5}``); the longest matching name wins. Norms and biases stay undecayed.
        lr_factors: a factor on the learning rate of every parameter under a module, by its dotted name (say
            ``{"backbone": 0.1}`` for a pretrained backbone); the longest matching name wins; others get 1.

    Returns:
        One group per distinct (decay, factor), ``{"params": [...], "weight_decay": d, "lr_factor": f}``, the main
        weights first and the norms and biases (decay 0) last; empty groups left out; frozen parameters
        (``requires_grad=False``) are not included. :func:`build_optimizer` turns ``lr_factor`` into the group's
        learning rate.

    Raises:
        ValueError: an override names no module of ``model``, or a decay is negative or not finite.
    """
    overrides = dict(overrides or {})
    lr_factors = dict(lr_factors or {})
    for key, decay in [("weight_decay", weight_decay), *((f"weight_decay_overrides.{n}", d) for n, d in overrides.items())]:
        if not math.isfinite(decay) or decay < 0:
            raise ValueError(f"{key} must be a finite number >= 0, got {decay}")
    for name, factor in lr_factors.items():
        if not math.isfinite(factor) or factor < 0:
            raise ValueError(f"the learning-rate factor of {name} must be a finite number >= 0, got {factor}")
    modules = dict(model.named_modules())
    for option, names in (("weight_decay_overrides", overrides), ("learning-rate factors", lr_factors)):
        unknown = sorted(name for name in names if not name or name not in modules)
        if unknown:
            children = ", ".join(name for name, _ in model.named_children())
            raise ValueError(
                f"{option}: no module named {', '.join(map(repr, unknown))} in "
                f"{type(model).__name__}; use a dotted module name such as one of: {children}"
            )
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        decay = 0.0 if parameter.ndim < 2 else _longest_match(name, overrides, weight_decay)
        groups.setdefault((decay, _longest_match(name, lr_factors, 1.0)), []).append(parameter)
    ordered = sorted(groups.items(), key=lambda item: item[0][0] == 0.0)  # stable: decayed weights first
    return [{"params": params, "weight_decay": decay, "lr_factor": factor} for (decay, factor), params in ordered]


def _longest_match(name: str, values: Mapping[str, float], default: float) -> float:
    """The value of the longest module name in ``values`` that parameter ``name`` lies under, else ``default``."""
    owners = [prefix for prefix in values if name.startswith(prefix + ".")]
    return values[max(owners, key=len)] if owners else default


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
    groups = [
        {**{key: value for key, value in group.items() if key != "lr_factor"}, "lr": lr * group.get("lr_factor", 1.0)}
        for group in groups
    ]
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
