"""Learning-rate schedules from ``torch.optim.lr_scheduler``, stepped once per batch (chapter 5).

Every builder takes the optimizer (whose learning rates are the peak values)
and the total number of optimizer steps, and returns a scheduler to step
after every batch (``train.fit(..., scheduler_interval="batch")``):

* :func:`constant` keeps the learning rate;
* :func:`warmup_cosine` rises linearly from 1 % over the first steps, then
  falls along a half cosine to zero;
* :func:`one_cycle` is Smith's one-cycle policy (``OneCycleLR``): up to the
  peak in the first 30 % of the steps, then down to almost zero, with the
  momentum moving the other way.

:func:`lr_curve` gives the learning rate of each step, for plotting.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch.optim import lr_scheduler

Builder = Callable[[torch.optim.Optimizer, int], lr_scheduler.LRScheduler]


def _check(total_steps: int) -> None:
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, got {total_steps}")


def constant(optimizer: torch.optim.Optimizer, total_steps: int) -> lr_scheduler.LRScheduler:
    """The learning rate stays where the optimizer set it (chapter 5, indirectly)."""
    _check(total_steps)
    return lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup: float = 0.1) -> lr_scheduler.LRScheduler:
    """Linear warm-up, then cosine decay to 0 (chapter 5).

    The warm-up takes the first ``warmup`` fraction of the steps (at least one).
    """
    _check(total_steps)
    if not 0 <= warmup < 1:
        raise ValueError(f"warmup must be a fraction in [0, 1), got {warmup}")
    warm = max(1, round(warmup * total_steps)) if total_steps > 1 else 0

    def cosine(step):
        return 0.5 * (1 + math.cos(math.pi * step / max(1, total_steps - warm)))

    # One LambdaLR rather than SequentialLR: the same curve, without its warnings.
    return lr_scheduler.LambdaLR(
        optimizer, lambda step: (0.01 + 0.99 * step / warm) if step < warm else cosine(step - warm)
    )


def one_cycle(optimizer: torch.optim.Optimizer, total_steps: int, pct_start: float = 0.3) -> lr_scheduler.LRScheduler:
    """``OneCycleLR`` peaking at each parameter group's current learning rate (chapter 5, indirectly)."""
    _check(total_steps)
    peaks = [group["lr"] for group in optimizer.param_groups]
    return lr_scheduler.OneCycleLR(optimizer, max_lr=peaks, total_steps=total_steps, pct_start=pct_start)


SCHEDULES: dict[str, Builder] = {"constant": constant, "cosine with warm-up": warmup_cosine, "one-cycle": one_cycle}
"""The three schedules chapter 5 compares, by the names it prints."""


def lr_curve(builder: Builder, total_steps: int, lr: float = 1.0) -> list[float]:
    """The learning rate used at each of ``total_steps`` steps by ``builder``'s schedule, peak ``lr`` (chapter 5)."""
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=lr)
    scheduler = builder(optimizer, total_steps)
    lrs = []
    for _ in range(total_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs
