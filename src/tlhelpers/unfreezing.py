"""Gradual unfreezing: the head on a frozen body first, then all with discriminative learning rates (chapter 5).

This is fastai's ``fine_tune`` recipe (Howard & Ruder, 2018).  A new head
starts from random weights, so its first gradients are large and noisy;
trained together with the pretrained layers from the first step, it pushes
them around before it knows anything.  :func:`gradual_fit` first trains the
head alone, with the body frozen, then unfreezes the body and trains both,
the body with a smaller learning rate than the head.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from tlhelpers import surgery, train
from tlhelpers.schedules import Builder


def stage_groups(model: nn.Module, head_name: str | None = None) -> dict[str, list]:
    """The trainable parameters of ``model``, split into ``{"head": [...], "body": [...]}`` (chapter 5).

    ``body`` holds what is trainable now outside the head: the layers that
    :func:`gradual_fit` keeps frozen in its first stage.
    """
    head = head_name or surgery.find_head_name(model)
    groups = {"head": [], "body": []}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            groups["head" if name == head or name.startswith(head + ".") else "body"].append(parameter)
    if not groups["head"]:
        raise ValueError(f"the head {head!r} has no trainable parameter")
    return groups


def _steps(loader: Iterable, epochs: int) -> int:
    return max(1, epochs * len(loader))


def gradual_fit(
    model: nn.Module,
    train_loader,
    val_loader=None,
    *,
    head_epochs: int,
    epochs: int,
    head_lr: float,
    body_lr: float,
    head_name: str | None = None,
    schedule: Builder | None = None,
    **fit_kwargs,
) -> train.History:
    """Train the head alone for ``head_epochs``, then head and body for the rest of ``epochs`` (chapter 5).

    The body is whatever is trainable outside the head when it is called (the
    last block after ``surgery.unfreeze_last(model, 1)``, everything after a
    plain ``replace_head``).  Stage 1: the body frozen, Adam on the head at
    ``head_lr``.  Stage 2: the body unfrozen, Adam with two parameter groups,
    ``head_lr`` for the head and ``body_lr`` for the body.  ``schedule`` (a
    builder of :mod:`tlhelpers.schedules`) runs once per stage, stepped per
    batch.  Other keyword arguments go to :func:`tlhelpers.train.fit`.
    Returns one :class:`~tlhelpers.train.History` over all ``epochs``.
    """
    if not 0 <= head_epochs <= epochs:
        raise ValueError(f"need 0 <= head_epochs <= epochs, got {head_epochs} and {epochs}")
    groups = stage_groups(model, head_name)
    history = train.History()
    stages = [
        (head_epochs, [{"params": groups["head"], "lr": head_lr}]),
        (
            epochs - head_epochs,
            [
                {"params": groups["head"], "lr": head_lr, "name": "head"},
                {"params": groups["body"], "lr": body_lr, "name": "body"},
            ],
        ),
    ]
    try:
        for stage, (stage_epochs, param_groups) in enumerate(stages):
            if stage_epochs == 0:
                continue
            for parameter in groups["body"]:
                parameter.requires_grad_(stage == 1)
            param_groups = [group for group in param_groups if group["params"]]
            optimizer = torch.optim.Adam(param_groups)
            scheduler = schedule(optimizer, _steps(train_loader, stage_epochs)) if schedule else None
            part = train.fit(
                model,
                train_loader,
                val_loader,
                epochs=stage_epochs,
                optimizer=optimizer,
                scheduler=scheduler,
                scheduler_interval="batch",
                **fit_kwargs,
            )
            for row in part:
                history.append({**row, "epoch": len(history) + 1})
    finally:  # an interrupt (Ctrl-C) or an error must not leave the body frozen
        for parameter in groups["body"]:
            parameter.requires_grad_(True)
    return history
