"""Train the last blocks of a frozen network on cached activations (chapter 5).

When only the last ``k`` blocks and the head of a network train, and the
photos do not change from epoch to epoch (no augmentation), every layer below
those blocks computes exactly the same activations in every epoch.
:func:`activations` computes them once; :func:`top_model` gives a copy of the
network in which those frozen layers are replaced by ``nn.Identity``, so that
it maps the cached activations to the same class scores as the whole network
maps the photos.  Training it costs only the top's forward and backward
passes.  :func:`merge` copies the trained top back into the whole network,
to use it on photos again.

Blocks are those of :func:`tlhelpers.surgery.blocks`; which modules run
before the last ``k`` blocks is read off one forward pass, so the same code
works for ResNet, VGG and timm's EfficientNet.  :func:`top_model` checks that
the top on the activations gives the network's own outputs and raises
``ValueError`` when it does not (a network that applies a function between
its blocks that the split would repeat).
"""

from __future__ import annotations

import copy
from typing import Iterable

import torch
from torch import nn
from torch.utils.data import TensorDataset

from tlhelpers import surgery


class _Stop(Exception):
    """Raised by the capturing hook: nothing above the split needs computing."""


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def top_blocks(model: nn.Module, k: int, head_name: str | None = None) -> list[surgery.Block]:
    """The last ``k`` blocks before the head, and the head, input side first (chapter 5, indirectly)."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    head = head_name or surgery.find_head_name(model)
    body = [block for block in surgery.blocks(model, head) if block.prefixes != (head,)]
    if k > len(body):
        raise ValueError(f"k={k}, but {type(model).__name__} has only {len(body)} blocks before its head")
    return (body[len(body) - k :] if k else []) + [surgery.Block(head, (head,))]


def _call_order(model: nn.Module, names: Iterable[str], example: torch.Tensor) -> list[str]:
    """The modules called ``names`` in the order a forward pass first enters them."""
    modules = dict(model.named_modules())
    order: list[str] = []
    handles = [
        modules[name].register_forward_pre_hook(
            lambda module, args, name=name: None if name in order else order.append(name)
        )
        for name in names
    ]
    try:
        with torch.inference_mode():
            model.eval()(example)
    finally:
        for handle in handles:
            handle.remove()
    return order


def _candidates(model: nn.Module, head: str) -> set[str]:
    """Every block's modules and their siblings (the ReLU and pooling layers between blocks)."""
    names: set[str] = set()
    for block in surgery.blocks(model, head):
        for prefix in block.prefixes:
            parent = prefix.rpartition(".")[0]
            names.add(prefix)
            owner = model.get_submodule(parent) if parent else model
            names.update(f"{parent}.{child}" if parent else child for child, _ in owner.named_children())
    return names


def split_point(model: nn.Module, k: int, head_name: str | None = None) -> str:
    """Name of the module whose input :func:`activations` caches: the first of the last ``k`` blocks (chapter 5)."""
    return top_blocks(model, k, head_name)[0].prefixes[0]


def activations(
    model: nn.Module, batches: Iterable, k: int, head_name: str | None = None, device: torch.device | str | None = None
) -> TensorDataset:
    """``TensorDataset(activations, labels)``: what enters the last ``k`` blocks, for every photo (chapter 5).

    ``batches`` yields ``(images, labels, ...)`` (a ``DataLoader``); ``None``
    batches are skipped.  The model runs in eval mode under
    ``torch.inference_mode()`` on ``device`` (default: the model's) and stops
    at the split, so the top is never computed; afterwards it is as it was
    (:func:`tlhelpers.surgery.evaluating`).  The activations come back on the CPU, in float32.
    """
    start = split_point(model, k, head_name)
    captured: list[torch.Tensor] = []

    def capture(module, args):
        captured.append(args[0].float().cpu())
        raise _Stop

    handle = model.get_submodule(start).register_forward_pre_hook(capture)
    xs, ys = [], []
    try:
        with surgery.evaluating(model, device) as device, torch.inference_mode():
            for batch in batches:
                if batch is None:
                    continue
                try:
                    model(batch[0].to(device))
                except _Stop:
                    pass
                xs.append(captured.pop())
                ys.append(batch[1].cpu())
    finally:
        handle.remove()
    if not xs:
        raise ValueError("the loader gave no usable batch")
    return TensorDataset(torch.cat(xs), torch.cat(ys))


def top_model(
    model: nn.Module, k: int, example: torch.Tensor, head_name: str | None = None, atol: float = 1e-4
) -> nn.Module:
    """A copy of ``model`` that maps :func:`activations` to the model's outputs (chapter 5).

    Every module that runs before the last ``k`` blocks is replaced by
    ``nn.Identity``; the last ``k`` blocks and the head are trainable (and
    nothing else is left).  ``example`` is a batch of inputs of the size the
    model will see (one photo is enough): the forward pass on it tells which
    modules run first, and the copy's outputs on its activations are checked
    against ``model``'s (``ValueError`` when they differ by more than ``atol``).
    ``model`` is not changed.
    """
    head = head_name or surgery.find_head_name(model)
    keep = [prefix for block in top_blocks(model, k, head) for prefix in block.prefixes]
    top = copy.deepcopy(model).cpu()
    example = example.cpu()
    order = _call_order(top, _candidates(top, head), example)
    first = min(order.index(prefix) for prefix in keep if prefix in order)
    replaced: list[str] = []
    for name in order[:first]:
        if any(_under(prefix, name) for prefix in keep) or any(_under(name, done) for done in replaced):
            continue  # a container of the top, or inside a module already replaced
        top.set_submodule(name, nn.Identity())
        replaced.append(name)
    surgery.freeze(top)
    surgery.unfreeze(top, keep)
    reference = copy.deepcopy(model).cpu().eval()  # the caller's model keeps its device and mode
    with torch.inference_mode():
        expected = reference(example)
        got = top.eval()(activations(reference, [(example, torch.zeros(len(example)))], k, head).tensors[0])
    if got.shape != expected.shape or not torch.allclose(got, expected, atol=atol, rtol=1e-4):
        raise ValueError(
            f"the top of {type(model).__name__} above {keep[0]!r} does not reproduce the "
            "network's outputs from the cached activations"
        )
    return top


def merge(model: nn.Module, top: nn.Module) -> nn.Module:
    """Copy the trained weights of ``top`` (from :func:`top_model`) into ``model``, in place; returns it (chapter 5)."""
    result = model.load_state_dict(top.state_dict(), strict=False)
    if result.unexpected_keys:
        raise ValueError(f"top holds tensors that the model does not: {result.unexpected_keys[:3]}")
    return model
