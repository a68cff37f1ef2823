"""Exponential moving average (EMA) of model weights, with a decay warm-up (timm ``ModelEmaV2`` / YOLOv5 ``ModelEMA``).

After every optimizer step the averaged copy moves towards the trained weights::

    decay_t = decay * (1 - exp(-t / warmup_steps))        # t = number of updates so far
    ema = decay_t * ema + (1 - decay_t) * weights

The warm-up keeps the average from being dominated by the random initial weights: early on ``decay_t`` is small and
the copy follows the weights closely. Floating-point buffers (BatchNorm running statistics) are averaged the same
way, integer buffers (``num_batches_tracked``) copied.

State dict layout, which :func:`ssdlite.models.load_checkpoint` relies on: ``module.*`` (the averaged
SSDLite) and ``n_averaged`` (the update count, as in ``torch.optim.swa_utils.AveragedModel``). Held by the
LightningModule as ``ema_model``, the checkpoint keys are ``ema_model.module.*``.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA(nn.Module):
    """An exponential moving average of ``model``'s weights and buffers.

    Args:
        model: the model being trained; a deep copy is averaged (it never receives gradients).
        decay: the decay once warmed up (0.9998 as YOLOv5 with ~100k steps; use less for short runs).
        warmup_steps: time constant ``tau`` of the decay warm-up, in updates.

    Attributes:
        module (nn.Module): the averaged copy, in eval mode.
        n_averaged (Tensor[] int64): number of updates so far.
    """

    def __init__(self, model: nn.Module, *, decay: float = 0.9998, warmup_steps: float = 2000.0) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        if warmup_steps <= 0:
            raise ValueError(f"EMA warmup_steps must be > 0, got {warmup_steps}")
        self.decay = float(decay)
        self.warmup_steps = float(warmup_steps)
        self.module = copy.deepcopy(model).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.register_buffer("n_averaged", torch.tensor(0, dtype=torch.long))

    def current_decay(self) -> float:
        """``decay * (1 - exp(-n_averaged / warmup_steps))``: the decay the next update uses."""
        return self.decay * (1.0 - math.exp(-(int(self.n_averaged) + 1) / self.warmup_steps))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Moves the average one step towards ``model`` (call after each optimizer step)."""
        decay = self.current_decay()
        averaged_floats, current_floats = [], []
        current_state = model.state_dict()
        for name, averaged in self.module.state_dict().items():
            current = current_state[name].detach()
            if averaged.is_floating_point():
                averaged_floats.append(averaged)
                current_floats.append(current.to(averaged.dtype))
            else:
                averaged.copy_(current)
        if averaged_floats:
            # ema + (1 - decay) * (weights - ema) == decay * ema + (1 - decay) * weights
            torch._foreach_lerp_(averaged_floats, current_floats, 1.0 - decay)
        self.n_averaged += 1

    def train(self, mode: bool = True) -> ModelEMA:
        """The averaged copy always stays in eval mode (it is evaluated, never trained)."""
        super().train(mode)
        self.module.eval()
        return self

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)
