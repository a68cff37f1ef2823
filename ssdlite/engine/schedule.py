"""Learning-rate schedule: linear warm-up, then cosine decay, stepped once per optimizer step.

``lr(t) = base_lr * factor(t)`` with

* warm-up (``t < warmup_steps``): ``factor`` rises linearly from ``warmup_start_factor`` to 1 (torchvision's
  detection references use 1/1000 over the first 1000 iterations, Goyal et al. 2017 "Accurate, Large Minibatch
  SGD", section 2.2);
* decay: ``factor = min_factor + (1 - min_factor) * (1 + cos(pi * progress)) / 2`` (SGDR, Loshchilov & Hutter 2017,
  without restarts), ``progress`` going from 0 after the warm-up to 1 at ``total_steps``.

Time budget: when training is limited by wall time (Lightning's ``max_time``) the decay should end when the time
runs out, not at a step count that will never be reached. The :class:`TimeBudget` callback (``ssdlite-train`` adds
it to every run) then keeps ``budget_steps`` current (the steps that fit in the time at the speed so far) and the
decay ends at ``min(total_steps, budget_steps)``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from lightning.pytorch.callbacks import Callback, Timer
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

logger = logging.getLogger(__name__)

DEFAULT_BUDGET_UPDATE_STEPS = 20
"""How often (optimizer steps) :class:`TimeBudget` refreshes its estimate of the steps that fit in ``max_time``."""


class WarmupCosineLR(LRScheduler):
    """Linear warm-up then cosine decay to ``min_factor * base_lr`` (see the module docstring).

    Args:
        optimizer: the optimizer whose param groups' ``initial_lr`` are the base learning rates.
        total_steps: optimizer steps of the whole run (warm-up included); None when only time limits it.
        warmup_steps: steps of linear warm-up (0: none).
        warmup_start_factor: factor at step 0.
        min_factor: factor at the end of the decay.

    Attributes:
        budget_steps (int | None): estimated steps that fit in the wall-time budget (None: no time budget); until
            it is known and without ``total_steps`` the learning rate stays at its peak after the warm-up.
        time_budget_s (float | None): the wall-time budget in seconds (set by :class:`TimeBudget`, informative).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        total_steps: int | None,
        warmup_steps: int = 0,
        warmup_start_factor: float = 0.001,
        min_factor: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        self.total_steps = None if total_steps is None else max(1, int(total_steps))
        self.warmup_steps = max(0, int(warmup_steps))
        self.warmup_start_factor = float(warmup_start_factor)
        self.min_factor = float(min_factor)
        self.budget_steps: int | None = None
        self.time_budget_s: float | None = None
        super().__init__(optimizer, last_epoch)

    def decay_end(self) -> int | None:
        """The step at which the decay reaches ``min_factor``: ``min(total_steps, budget_steps)`` (None: unknown)."""
        ends = [end for end in (self.total_steps, self.budget_steps) if end is not None]
        return min(ends) if ends else None

    def factor(self, step: int) -> float:
        """The learning-rate multiplier at optimizer step ``step`` (0-based)."""
        if step < self.warmup_steps:
            fraction = step / self.warmup_steps
            return self.warmup_start_factor + (1.0 - self.warmup_start_factor) * fraction
        end = self.decay_end()
        if end is None:
            return 1.0
        progress = (step - self.warmup_steps) / max(1, end - self.warmup_steps)
        progress = min(1.0, max(0.0, progress))
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def get_lr(self) -> list[float]:
        factor = self.factor(self.last_epoch)
        return [base_lr * factor for base_lr in self.base_lrs]


def warmup_cosine_scheduler(trainer: Any) -> WarmupCosineLR | None:
    """The Trainer's :class:`WarmupCosineLR` (None when it has none, e.g. before ``configure_optimizers``)."""
    schedulers = [config.scheduler for config in trainer.lr_scheduler_configs]
    return next((scheduler for scheduler in schedulers if isinstance(scheduler, WarmupCosineLR)), None)


class TimeBudget(Callback):
    """Fits the cosine decay of :class:`WarmupCosineLR` to ``trainer.max_time``, so that it ends with the time.

    Every ``update_every_steps`` optimizer steps it estimates from the speed so far how many steps fit in the time
    and sets the scheduler's ``budget_steps`` (see the module docstring). The estimate is taken on rank 0 and
    broadcast, so every rank follows the same learning rate. Without ``max_time`` (Lightning's ``Timer`` callback)
    it does nothing, except refusing a schedule that would have no end at all.

    Args:
        update_every_steps: optimizer steps between two estimates.
    """

    def __init__(self, update_every_steps: int = DEFAULT_BUDGET_UPDATE_STEPS) -> None:
        if update_every_steps < 1:
            raise ValueError(f"update_every_steps must be >= 1, got {update_every_steps}")
        self.update_every_steps = int(update_every_steps)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        """Checks that the schedule ends and says how the time budget ends it."""
        if warmup_cosine_scheduler(trainer) is None:
            return
        budget = _time_budget_s(trainer)
        if budget is None and math.isinf(trainer.estimated_stepping_batches):
            raise ValueError(
                "the learning-rate schedule needs an end: set trainer.max_epochs, trainer.max_steps or "
                "trainer.max_time"
            )
        if budget is not None and trainer.is_global_zero:
            logger.info(
                f"max_time {budget:g} s: the cosine decay ends when the time runs out (the steps that fit are "
                f"estimated every {self.update_every_steps} steps)"
            )

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        scheduler = warmup_cosine_scheduler(trainer)
        if scheduler is not None:
            scheduler.time_budget_s = _time_budget_s(trainer)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        scheduler = warmup_cosine_scheduler(trainer)
        step = trainer.global_step
        if scheduler is None or not scheduler.time_budget_s or step == 0 or step % self.update_every_steps:
            return
        timer = _timer(trainer)
        elapsed = timer.time_elapsed("train") if timer is not None else 0.0
        estimate = int(step * scheduler.time_budget_s / elapsed) if elapsed > 0 else None
        estimate = trainer.strategy.broadcast(estimate, src=0)
        if estimate is not None:
            scheduler.budget_steps = estimate


def _timer(trainer: Any) -> Timer | None:
    return next((callback for callback in trainer.callbacks if isinstance(callback, Timer)), None)


def _time_budget_s(trainer: Any) -> float | None:
    """``trainer.max_time`` in seconds, or None."""
    timer = _timer(trainer)
    if timer is None:
        return None
    remaining = timer.time_remaining("train")
    return None if remaining is None else timer.time_elapsed("train") + remaining
