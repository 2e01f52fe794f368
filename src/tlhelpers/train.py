"""One training loop for every chapter, its learning-rate schedules and gradual unfreezing (chapters 2–5).

Chapter 3 ("Freezing versus full fine-tuning") introduces :func:`fit` and
runs it for every strategy and seed; :func:`tlhelpers.heads.fit_linear` runs
it on stored features (chapters 2 and 4).  :func:`fit` picks the device by
itself (:func:`tlhelpers.runtime.pick_device`), uses mixed precision and
channels-last memory on CUDA, keeps frozen BatchNorm layers in eval mode
(:func:`tlhelpers.surgery.train_mode`), skips the ``None`` batches of
:func:`tlhelpers.data.loader` and shows ``tqdm.auto`` progress bars (widgets
in Jupyter, so no rates end up in stored outputs).

**Learning-rate schedules** from ``torch.optim.lr_scheduler``, stepped once per batch (chapter 5).

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

**Gradual unfreezing**: the head on a frozen body first, then all with discriminative learning rates (chapter 5).

This is fastai's ``fine_tune`` recipe (Howard & Ruder, 2018).  A new head
starts from random weights, so its first gradients are large and noisy;
trained together with the pretrained layers from the first step, it pushes
them around before it knows anything.  :func:`gradual_fit` first trains the
head alone, with the body frozen, then unfreezes the body and trains both,
the body with a smaller learning rate than the head.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import torch
from torch import nn
from torch.optim import lr_scheduler
from tqdm.auto import tqdm

from tlhelpers import runtime, surgery

HISTORY_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")


@dataclass
class History:
    """Per-epoch records of a training run.

    Each row is a dict with the keys of :data:`HISTORY_FIELDS`: ``epoch``
    (from 1), ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc`` (``None``
    without validation data), ``lr`` (of the first parameter group) and
    ``seconds`` (wall time of the epoch; never print it in a notebook whose
    outputs are compared).  Accuracies are fractions in [0, 1].
    """

    rows: list[dict] = field(default_factory=list)

    def append(self, row: dict) -> None:
        self.rows.append(row)

    def column(self, metric: str) -> list:
        """The values of one metric, epoch by epoch: ``history.column("val_acc")``."""
        return [row.get(metric) for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.rows[index]


def _inputs(batch, device: torch.device, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = batch[0], batch[1]
    x = x.to(device, non_blocking=True)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(device, non_blocking=True)


def _autocast(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.float16)


def fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable | None = None,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    loss_fn: Callable | None = None,
    device: torch.device | str | None = None,
    amp: bool | None = None,
    channels_last: bool | None = None,
    scheduler=None,
    scheduler_interval: str = "epoch",
    frozen_bn_eval: bool = True,
    progress: bool = True,
) -> History:
    """Train ``model`` for ``epochs`` and return its :class:`History`.

    * ``optimizer``: any optimizer over the model's parameters (e.g. with
      :func:`tlhelpers.surgery.param_groups`); by default ``Adam(lr=lr)`` over
      the trainable parameters.
    * ``device``: default :func:`tlhelpers.runtime.pick_device`; the model is moved there.
    * ``amp``: float16 autocast with gradient scaling; default on CUDA only.
    * ``channels_last``: NHWC memory layout (faster convolutions on tensor
      cores); default on CUDA only.
    * ``scheduler``: stepped once per epoch, or per batch with
      ``scheduler_interval="batch"`` (OneCycleLR).
    * ``frozen_bn_eval``: keep BatchNorm layers whose parameters are frozen in
      eval mode while training (see :func:`tlhelpers.surgery.train_mode`);
      ``False`` is plain ``model.train()``.

    Batches are ``(images, labels, ...)``; ``None`` batches (every file
    unreadable) are skipped.  The model is left in eval mode.
    """
    if scheduler_interval not in ("epoch", "batch"):
        raise ValueError(f"scheduler_interval must be 'epoch' or 'batch', not {scheduler_interval!r}")
    device = torch.device(device) if device is not None else runtime.pick_device()
    amp = device.type == "cuda" if amp is None else amp
    channels_last = device.type == "cuda" if channels_last is None else channels_last
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if optimizer is None:
        trainable = [p for p in model.parameters() if p.requires_grad]
        if not trainable:
            raise ValueError("the model has no trainable parameters: unfreeze something first")
        optimizer = torch.optim.Adam(trainable, lr=lr)
    scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda")

    history = History()
    epoch_bar = tqdm(range(1, epochs + 1), desc="epochs", disable=not progress)
    for epoch in epoch_bar:
        start = time.perf_counter()
        lr_now = optimizer.param_groups[0]["lr"]
        scores = one_epoch(
            model,
            train_loader,
            optimizer,
            loss_fn=loss_fn,
            device=device,
            amp=amp,
            channels_last=channels_last,
            scaler=scaler,
            scheduler=scheduler if scheduler_interval == "batch" else None,
            frozen_bn_eval=frozen_bn_eval,
            progress=progress,
            desc=f"epoch {epoch}",
        )
        if scheduler is not None and scheduler_interval == "epoch":
            scheduler.step()
        row = {
            "epoch": epoch,
            "train_loss": scores["loss"],
            "train_acc": scores["acc"],
            "val_loss": None,
            "val_acc": None,
            "lr": lr_now,
        }
        if val_loader is not None:
            scores = evaluate(model, val_loader, device=device, loss_fn=loss_fn, amp=amp)
            row["val_loss"], row["val_acc"] = scores["loss"], scores["acc"]
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        epoch_bar.set_postfix(
            {k: round(v, 3) for k, v in row.items() if k in ("train_loss", "train_acc", "val_acc") and v is not None}
        )
    model.eval()
    return history


def one_epoch(
    model: nn.Module,
    train_loader: Iterable,
    optimizer: torch.optim.Optimizer,
    *,
    loss_fn: Callable | None = None,
    device: torch.device | str | None = None,
    amp: bool = False,
    channels_last: bool = False,
    scaler: torch.amp.GradScaler | None = None,
    scheduler=None,
    frozen_bn_eval: bool = True,
    all_bn_eval: bool = False,
    progress: bool = True,
    desc: str = "epoch",
) -> dict:
    """One pass over ``train_loader``, a step per batch: ``{"loss", "acc", "n"}``.

    The body of :func:`fit`'s epoch loop, also run by ``python -m tlhelpers
    train`` (:mod:`tlhelpers.recipe`), which adds checkpoints and several
    processes around it.  ``scheduler`` (if any) is stepped after every batch;
    ``scaler`` carries float16 gradient scaling from one epoch to the next
    (one is made per call when ``amp`` is on and none is given).  The model's
    modes come from :func:`tlhelpers.surgery.train_mode` with
    ``frozen_bn_eval`` and ``all_bn_eval``.  ``loss`` and ``acc`` are means
    over the batches this process saw.
    """
    device = torch.device(device) if device is not None else surgery.model_device(model)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    if scaler is None:
        scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda")
    surgery.train_mode(model, frozen_bn_eval=frozen_bn_eval, all_bn_eval=all_bn_eval)
    loss_sum, correct, seen = 0.0, 0, 0
    for batch in tqdm(train_loader, desc=desc, leave=False, disable=not progress):
        if batch is None:
            continue
        x, y = _inputs(batch, device, channels_last)
        with _autocast(device, amp):
            logits = model(x)
            loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    if seen == 0:
        raise ValueError("the training loader gave no usable batch")
    return {"loss": loss_sum / seen, "acc": correct / seen, "n": seen}


def _batches(model: nn.Module, loader: Iterable, device, amp) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(logits, labels) per batch, in eval mode under ``inference_mode``."""
    with surgery.evaluating(model, device) as device, torch.inference_mode():
        amp = device.type == "cuda" if amp is None else amp
        for batch in loader:
            if batch is None:
                continue
            x, y = _inputs(batch, device, channels_last=False)
            with _autocast(device, amp):
                logits = model(x)
            yield logits.float(), y


def evaluate(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str | None = None,
    loss_fn: Callable | None = None,
    amp: bool | None = None,
) -> dict:
    """Mean loss and accuracy over ``loader``: ``{"loss", "acc", "n"}``.

    Runs in eval mode under ``torch.inference_mode()`` on ``device`` (default:
    where the model already is); afterwards the model's device and modes are
    as before (:func:`tlhelpers.surgery.evaluating`).
    """
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    loss_sum, correct, seen = 0.0, 0, 0
    for logits, y in _batches(model, loader, device, amp):
        loss_sum += loss_fn(logits, y).item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    if seen == 0:
        raise ValueError("the loader gave no usable batch")
    return {"loss": loss_sum / seen, "acc": correct / seen, "n": seen}


# --------------------------------------------------------------------------- #
# Learning-rate schedules
# --------------------------------------------------------------------------- #


Builder = Callable[[torch.optim.Optimizer, int], lr_scheduler.LRScheduler]


def _check(total_steps: int) -> None:
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, got {total_steps}")


def constant(optimizer: torch.optim.Optimizer, total_steps: int) -> lr_scheduler.LRScheduler:
    """The learning rate stays where the optimizer set it."""
    _check(total_steps)
    return lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup: float = 0.1) -> lr_scheduler.LRScheduler:
    """Linear warm-up, then cosine decay to 0.

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
    """``OneCycleLR`` peaking at each parameter group's current learning rate."""
    _check(total_steps)
    peaks = [group["lr"] for group in optimizer.param_groups]
    return lr_scheduler.OneCycleLR(optimizer, max_lr=peaks, total_steps=total_steps, pct_start=pct_start)


SCHEDULES: dict[str, Builder] = {"constant": constant, "cosine with warm-up": warmup_cosine, "one-cycle": one_cycle}
"""The three schedules chapter 5 compares, by the names it prints."""


def lr_curve(builder: Builder, total_steps: int, lr: float = 1.0) -> list[float]:
    """The learning rate used at each of ``total_steps`` steps by ``builder``'s schedule, peak ``lr``."""
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=lr)
    scheduler = builder(optimizer, total_steps)
    lrs = []
    for _ in range(total_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


# --------------------------------------------------------------------------- #
# Gradual unfreezing
# --------------------------------------------------------------------------- #


def stage_groups(model: nn.Module, head_name: str | None = None) -> dict[str, list]:
    """The trainable parameters of ``model``, split into ``{"head": [...], "body": [...]}``.

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
) -> History:
    """Train the head alone for ``head_epochs``, then head and body for the rest of ``epochs``.

    The body is whatever is trainable outside the head when it is called (the
    last block after ``surgery.unfreeze_last(model, 1)``, everything after a
    plain ``replace_head``).  Stage 1: the body frozen, Adam on the head at
    ``head_lr``.  Stage 2: the body unfrozen, Adam with two parameter groups,
    ``head_lr`` for the head and ``body_lr`` for the body.  ``schedule`` (a
    builder of :mod:`tlhelpers.train`) runs once per stage, stepped per
    batch.  Other keyword arguments go to :func:`tlhelpers.fit`.
    Returns one :class:`~tlhelpers.History` over all ``epochs``.
    """
    if not 0 <= head_epochs <= epochs:
        raise ValueError(f"need 0 <= head_epochs <= epochs, got {head_epochs} and {epochs}")
    groups = stage_groups(model, head_name)
    history = History()
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
            part = fit(
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
