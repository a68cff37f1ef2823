"""The learning-rate schedule: linear warm-up, cosine decay, time-budget end, and linear lr scaling."""

import math
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import Timer

from ssdlite.engine.optim import scaled_learning_rate
from ssdlite.engine.schedule import TimeBudget, WarmupCosineLR


def make_scheduler(**kwargs) -> tuple[torch.optim.Optimizer, WarmupCosineLR]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.9)
    return optimizer, WarmupCosineLR(optimizer, **kwargs)


def learning_rates(optimizer, scheduler, steps: int) -> list[float]:
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_warmup_is_linear_then_cosine_reaches_the_minimum():
    optimizer, scheduler = make_scheduler(total_steps=20, warmup_steps=5, warmup_start_factor=0.01, min_factor=0.1)
    rates = learning_rates(optimizer, scheduler, 21)
    assert rates[0] == pytest.approx(0.1 * 0.01)
    assert rates[:6] == pytest.approx([0.1 * (0.01 + 0.99 * step / 5) for step in range(6)])
    for step in range(5, 21):
        progress = (step - 5) / 15
        expected = 0.1 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
        assert rates[step] == pytest.approx(expected), step
    assert rates[20] == pytest.approx(0.01)  # stays at the minimum past the end


def test_matches_torch_cosine_annealing_without_warmup():
    optimizer, scheduler = make_scheduler(total_steps=30, warmup_steps=0, min_factor=0.0)
    reference_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(reference_optimizer, T_max=30)
    ours = learning_rates(optimizer, scheduler, 30)
    theirs = learning_rates(reference_optimizer, reference, 30)
    assert ours == pytest.approx(theirs, abs=1e-9)


def test_time_budget_ends_the_decay_early_and_the_state_round_trips():
    optimizer, scheduler = make_scheduler(total_steps=None, warmup_steps=2)
    assert learning_rates(optimizer, scheduler, 4)[2:] == pytest.approx([0.1, 0.1])  # no end known: peak lr
    scheduler.budget_steps = 12
    assert scheduler.decay_end() == 12
    assert scheduler.factor(7) == pytest.approx(0.5)  # half-way between the warm-up end (2) and 12
    assert scheduler.factor(12) == pytest.approx(0.0)
    _, restored = make_scheduler(total_steps=None)
    restored.load_state_dict(scheduler.state_dict())
    assert restored.budget_steps == 12 and restored.last_epoch == scheduler.last_epoch


def test_the_time_budget_callback_estimates_the_steps_that_fit_every_few_steps():
    _, scheduler = make_scheduler(total_steps=None, warmup_steps=2)
    timer = Timer(duration="00:00:01:40")
    timer.time_elapsed = lambda stage: 10.0  # 10 s of the 100 s budget spent
    timer.time_remaining = lambda stage: 90.0
    trainer = SimpleNamespace(callbacks=[timer], lr_scheduler_configs=[SimpleNamespace(scheduler=scheduler)],
                              global_step=0, strategy=SimpleNamespace(broadcast=lambda value, src: value))
    budget = TimeBudget(update_every_steps=4)
    budget.on_train_start(trainer, None)
    assert scheduler.time_budget_s == 100.0
    for step, expected in ((3, None), (4, 40), (5, 40), (8, 80)):  # steps * 100 s / 10 s, every 4 steps
        trainer.global_step = step
        budget.on_train_batch_start(trainer, None, None, 0)
        assert scheduler.budget_steps == expected, step
    with pytest.raises(ValueError, match="update_every_steps must be >= 1"):
        TimeBudget(update_every_steps=0)


def test_linear_scaling_rule():
    assert scaled_learning_rate(0.15, global_batch_size=24, base_batch_size=192) == pytest.approx(0.01875)
    assert scaled_learning_rate(0.01, global_batch_size=64, base_batch_size=None) == 0.01
    with pytest.raises(ValueError, match="base_batch_size"):
        scaled_learning_rate(0.01, global_batch_size=64, base_batch_size=0)
