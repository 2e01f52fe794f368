"""Model surgery: find and replace the head, freeze and unfreeze, train and eval modes, count parameters.

Chapter 2 ("Replacing VGG16's head") uses :func:`find_head_name`,
:func:`replace_head` and the parameter tables; chapter 3 ("Freezing versus full
fine-tuning") uses :func:`freeze_all_but_head`, :func:`blocks`,
:func:`unfreeze_last`, :func:`train_mode` and :func:`param_groups`;
chapter 4's inference runs in :func:`evaluating`.

Names are the dotted names of ``model.named_modules()`` / ``named_parameters()``
(``"layer4.1.conv2"``, ``"classifier.6"``).  A *prefix* matches a parameter
when it is the parameter's whole name or a dotted leading part of it, so
``"layer1"`` matches ``"layer1.0.conv1.weight"`` but not ``"layer10.weight"``
(:func:`matches`).  A head's dotted name is a ``head_name``; ``head`` is
always the layer itself.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from tlhelpers import tables

# Top-level containers whose children are the stages of a backbone
# (torchvision VGG/MobileNet/EfficientNet/ConvNeXt `features`, timm `blocks`,
# `stages`, `layers`); blocks() splits them into one block per child.
STAGE_CONTAINERS = ("features", "blocks", "stages", "layers")
_POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


# --------------------------------------------------------------------------- #
# The head
# --------------------------------------------------------------------------- #


def find_head_name(model: nn.Module) -> str:
    """Dotted name of the final ``nn.Linear`` that produces the class scores.

    timm models say where their classifier is (``get_classifier()``); torchvision
    models keep it in ``fc`` (ResNet), ``classifier`` or the last Linear inside a
    ``classifier`` Sequential (VGG16: ``"classifier.6"``).  Anything else: the
    last ``nn.Linear`` in ``named_modules()`` order.
    """
    modules = dict(model.named_modules())
    if hasattr(model, "get_classifier"):
        classifier = model.get_classifier()
        for name, module in modules.items():
            if module is classifier and isinstance(module, nn.Linear):
                return name
    for name in ("fc", "classifier", "head"):
        if isinstance(modules.get(name), nn.Linear):
            return name
    linears = [name for name, module in modules.items() if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer to use as its head")
    return linears[-1]


def replace_head(model: nn.Module, num_classes: int, head_name: str | None = None) -> nn.Linear:
    """Put a fresh ``nn.Linear(in_features, num_classes)`` where the head was and return it.

    ``head_name`` is the dotted name of the layer to replace (default: :func:`find_head_name`);
    paths through Sequential indices such as ``"classifier.6"`` work.  The new
    layer gets PyTorch's default random initialisation, the old layer's device
    and dtype, and is trainable.  A timm model's ``num_classes`` is updated too.
    """
    head = head_name or find_head_name(model)
    old = model.get_submodule(head)
    if not isinstance(old, nn.Linear):
        raise TypeError(f"{head!r} is a {type(old).__name__}, not an nn.Linear")
    new = nn.Linear(
        old.in_features, num_classes, bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype
    )
    model.set_submodule(head, new)
    if isinstance(getattr(model, "num_classes", None), int):
        model.num_classes = num_classes
    return new


# --------------------------------------------------------------------------- #
# Freezing
# --------------------------------------------------------------------------- #


def matches(name: str, prefix: str) -> bool:
    """Whether ``prefix`` is ``name`` or a dotted leading part of it (see the module docstring)."""
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def _set_requires_grad(model: nn.Module, prefixes: str | Iterable[str] | None, value: bool) -> None:
    if prefixes is None:
        for parameter in model.parameters():
            parameter.requires_grad_(value)
        return
    prefixes = [prefixes] if isinstance(prefixes, str) else list(prefixes)
    unmatched = set(prefixes)
    for name, parameter in model.named_parameters():
        hits = [prefix for prefix in prefixes if matches(name, prefix)]
        if hits:
            parameter.requires_grad_(value)
            unmatched.difference_update(hits)
    if unmatched:
        # A typo would otherwise freeze nothing, silently.
        raise ValueError(f"no parameter of {type(model).__name__} starts with {sorted(unmatched)}")


def freeze(model: nn.Module, prefixes: str | Iterable[str] | None = None) -> None:
    """Stop gradients (``requires_grad=False``) for the parameters under ``prefixes``, or all.

    Raises ``ValueError`` when a prefix matches no parameter.
    """
    _set_requires_grad(model, prefixes, False)


def unfreeze(model: nn.Module, prefixes: str | Iterable[str] | None = None) -> None:
    """Make the parameters under ``prefixes`` (or all) trainable again."""
    _set_requires_grad(model, prefixes, True)


def freeze_all_but_head(model: nn.Module, head_name: str | None = None) -> str:
    """Freeze the whole backbone and leave only the head trainable; returns the head's name."""
    head = head_name or find_head_name(model)
    freeze(model)
    unfreeze(model, head)
    return head


# --------------------------------------------------------------------------- #
# Blocks: the backbone cut into stages, for depth-based unfreezing
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Block:
    """A stage of a backbone: a display ``name`` and the module-name ``prefixes`` it owns.

    ``name`` is a module name (``"layer3"``, ``"blocks.5"``), a range of indices
    of a Sequential (``"features.0-4"``: VGG16's first conv stage, up to and
    including its max-pool) or several modules joined by ``+`` (``"conv1+bn1"``).
    ``prefixes`` are the parameter-holding modules, usable with :func:`freeze`
    and :func:`unfreeze`.
    """

    name: str
    prefixes: tuple[str, ...]

    def owns(self, parameter_name: str) -> bool:
        """Whether the parameter called ``parameter_name`` belongs to this block."""
        return any(matches(parameter_name, prefix) for prefix in self.prefixes)


def _has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _is_single_layer(module: nn.Module) -> bool:
    """A conv, linear or norm layer: own parameters, none in its children (timm's BatchNormAct2d counts)."""
    return next(module.parameters(recurse=False), None) is not None and not any(
        _has_parameters(child) for child in module.children()
    )


def _group_name(parent: str, members: list[str], holders: list[str]) -> str:
    if len(holders) == 1 and len(members) == 1:
        return holders[0]
    leaves = [member.rpartition(".")[2] for member in members]
    if all(leaf.isdigit() for leaf in leaves):
        return f"{parent}.{leaves[0]}-{leaves[-1]}" if parent else f"{leaves[0]}-{leaves[-1]}"
    return "+".join(holders)


def _split_children(parent: str, module: nn.Module, head: str) -> list[Block]:
    """One block per container child; runs of single layers grouped, closed after a pooling layer."""
    out: list[Block] = []
    members: list[str] = []
    holders: list[str] = []

    def close() -> None:
        if holders:
            out.append(Block(_group_name(parent, members, holders), tuple(holders)))
        members.clear()
        holders.clear()

    for child_name, child in module.named_children():
        name = f"{parent}.{child_name}" if parent else child_name
        if name == head:
            close()
            out.append(Block(name, (name,)))
        elif matches(head, name):
            close()
            out.extend(_split_children(name, child, head))
        elif not _has_parameters(child):
            if holders:
                members.append(name)
                if isinstance(child, _POOLING):
                    close()
        elif _is_single_layer(child):
            members.append(name)
            holders.append(name)
        elif parent == "" and child_name in STAGE_CONTAINERS and isinstance(child, (nn.Sequential, nn.ModuleList)):
            close()
            out.extend(_split_children(name, child, head))
        else:
            close()
            out.append(Block(name, (name,)))
    close()
    return out


def blocks(model: nn.Module, head_name: str | None = None) -> list[Block]:
    """The backbone cut into :class:`Block` s, input side first, the head last.

    Rules, in ``named_children()`` order: a top-level container is one block
    (ResNet's ``layer1`` … ``layer4``); a top-level Sequential/ModuleList called
    ``features``, ``blocks``, ``stages`` or ``layers`` is split into its
    children, and runs of single layers are grouped, each group ending after a
    pooling layer; a container that holds the head is split so that the head
    is a block of its own.  Parameters owned directly by the model (a ViT's
    ``cls_token``) form a first block.  This gives

    * ResNet-18: ``conv1+bn1, layer1, layer2, layer3, layer4, fc``
    * VGG16: ``features.0-4, features.5-9, features.10-16, features.17-23,
      features.24-30, classifier.0-5, classifier.6``
    * EfficientNet-Lite0 (timm): ``conv_stem+bn1, blocks.0`` … ``blocks.6,
      conv_head+bn2, classifier``
    """
    head = head_name or find_head_name(model)
    own = tuple(name for name, _ in model.named_parameters(recurse=False))
    found = [Block("+".join(own), own)] if own else []
    found.extend(_split_children("", model, head))
    return found


def unfreeze_last(model: nn.Module, k: int, head_name: str | None = None) -> list[str]:
    """Freeze everything, then unfreeze the head and the last ``k`` blocks before it.

    ``k=0`` trains the head only; ``k`` larger than the number of blocks
    unfreezes everything.  Returns the names of the trainable blocks, input
    side first.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    head = head_name or find_head_name(model)
    body = [block for block in blocks(model, head) if block.prefixes != (head,)]
    chosen = (body[-k:] if k else []) + [Block(head, (head,))]
    freeze(model)
    for block in chosen:
        unfreeze(model, block.prefixes)
    return [block.name for block in chosen]


# --------------------------------------------------------------------------- #
# BatchNorm of frozen layers stays in inference mode
# --------------------------------------------------------------------------- #


def frozen_batchnorms(model: nn.Module) -> list[str]:
    """Names of the BatchNorm layers whose affine parameters are all frozen."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, _BatchNorm)
        and _has_parameters(module)
        and not any(parameter.requires_grad for parameter in module.parameters())
    ]


def train_mode(model: nn.Module, frozen_bn_eval: bool = True, all_bn_eval: bool = False) -> nn.Module:
    """``model.train()``, except that frozen BatchNorm layers stay in eval mode.

    In train mode a BatchNorm layer normalises with the statistics of the
    current batch and updates its running mean and variance, even when its
    weight and bias are frozen.  A frozen backbone would then drift away from
    the statistics it was pretrained with, and small batches of a new dataset
    make that drift noisy; the layers after it, tuned to the old statistics,
    suddenly see different inputs.  Keras' transfer-learning guide therefore
    keeps frozen BatchNorm layers in inference mode, and so does this helper:
    a BatchNorm layer whose parameters are all frozen is put in eval mode.
    BatchNorm layers without affine parameters follow ``model.train()``.
    With ``all_bn_eval`` every BatchNorm layer stays in eval mode, trainable
    or not, as Keras' guide also recommends when fine-tuning: the layers keep
    the pretrained statistics while their weights train, and no layer depends
    on how a batch is divided among processes (``python -m tlhelpers train``).
    Returns ``model``.
    """
    model.train()
    if all_bn_eval:
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                module.eval()
    elif frozen_bn_eval:
        for name in frozen_batchnorms(model):
            model.get_submodule(name).eval()
    return model


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (the CPU for a model without parameters)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@contextlib.contextmanager
def evaluating(
    model: nn.Module, device: torch.device | str | None = None, channels_last: bool = False
) -> Iterator[torch.device]:
    """``model`` in eval mode and on ``device`` for the block, then as it was; yields the device.

    The one device-and-mode policy of every inference helper: evaluation,
    flip TTA, cached activations, class activation maps, feature extraction
    and :class:`tlhelpers.heads.Classifier` run the model on ``device``
    (default: where the model is) in eval mode, and afterwards put the model
    back on its device and every submodule back in its own mode.
    ``model.train(previous)`` would not do: it would also wake frozen
    BatchNorm layers that :func:`train_mode` keeps in eval mode.
    ``channels_last=True`` also stores the convolution weights channels-last
    for the block (:func:`prefers_channels_last`), and contiguous again after.
    """
    before = model_device(model)
    device = before if device is None else torch.device(device)
    modes = [(module, module.training) for module in model.modules()]
    model.to(device)
    model.eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    try:
        yield device
    finally:
        for module, mode in modes:
            module.training = mode
        if channels_last:
            model.to(memory_format=torch.contiguous_format)
        model.to(before)


def prefers_channels_last(device: torch.device | str) -> bool:
    """Whether convolutions run faster channels-last (N × H × W × C in memory) on ``device``.

    On a CPU, oneDNN's convolutions work channels-last: given the usual
    N × C × H × W layout, PyTorch reorders every activation to call them and
    back, which costs as much as the depthwise convolutions of an
    EfficientNet: on two cores, EfficientNet-Lite0 runs about 1.7 times as
    fast channels-last, ResNet-18 about 1.25 times.  cuDNN prefers it too;
    Apple's MPS backend is left as it is.
    """
    return torch.device(device).type in ("cpu", "cuda")


# --------------------------------------------------------------------------- #
# Reading what runs inside a network
# --------------------------------------------------------------------------- #


def _traced_by_timm(model: nn.Module) -> bool:
    return type(model).__module__.startswith("timm.")


@contextlib.contextmanager
def _modes_kept(model: nn.Module) -> Iterator[None]:
    """Tracing sets the whole model to train and eval mode; put every submodule's own mode back."""
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode


def graph_nodes(model: nn.Module) -> list[str]:
    """The operations of ``model``'s forward pass in eval mode, in the order they run.

    The names are torch.fx's: a module's dotted name (``"layer4.0.conv1"``),
    an operation inside a module (``"layer4.1.add"``), ``"x"`` for the
    input.  torchvision's ``get_graph_node_names`` traces the model; timm's
    models go through timm's version of it, which knows their untraceable
    parts.
    """
    if _traced_by_timm(model):
        from timm.models import get_graph_node_names
    else:
        from torchvision.models.feature_extraction import get_graph_node_names
    with _modes_kept(model):
        return get_graph_node_names(model)[1]


def input_node(model: nn.Module, module_name: str, nodes: list[str] | None = None) -> str:
    """The node whose output the module ``module_name`` receives: the one that runs right before it.

    ``nodes`` is :func:`graph_nodes` of ``model``, when already at hand.
    Raises ``ValueError`` when the module does not run in the forward pass.
    """
    nodes = graph_nodes(model) if nodes is None else nodes
    first = next((i for i, node in enumerate(nodes) if matches(node, module_name)), None)
    if not first:
        raise ValueError(f"{module_name!r} does not run in {type(model).__name__}'s forward pass")
    return nodes[first - 1]


def tap(model: nn.Module, nodes: dict[str, str]) -> nn.Module:
    """``model`` as a module that returns ``{name: output of node}`` for ``nodes = {node: name}``.

    The one way the package reads what a network computes inside (features,
    feature maps, cached activations, detection's feature maps): torchvision's
    ``create_feature_extractor``, timm's wrapper of it for timm's models.  The
    result shares ``model``'s parameters (nothing is copied) and runs only
    what the requested outputs need.  It starts with the eval-mode graph
    (``.train()`` switches it to the training graph); for inference, call it
    inside :func:`evaluating` so that the layers are in eval mode too.
    Tracing leaves every submodule of ``model`` in its own mode.
    """
    if _traced_by_timm(model):
        from timm.models import create_feature_extractor
    else:
        from torchvision.models.feature_extraction import create_feature_extractor
    with _modes_kept(model):
        network = create_feature_extractor(model, nodes)
    network.training = False  # selects the eval graph; the shared layers keep their modes
    return network


# --------------------------------------------------------------------------- #
# Counting parameters
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class SummaryRow:
    """One line of :func:`trainable_summary`: a top-level module (or ``"total"``) and its counts."""

    name: str
    trainable: int
    total: int


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter values (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def trainable_summary(model: nn.Module) -> list[SummaryRow]:
    """Trainable and total parameters per top-level child, then a ``"total"`` row.

    Children without parameters (ReLU, pooling) are left out; parameters owned
    directly by the model get a row each.  Print it with :func:`format_summary`.
    """
    rows = [
        SummaryRow(name, int(p.requires_grad) * p.numel(), p.numel())
        for name, p in model.named_parameters(recurse=False)
    ]
    rows += [
        SummaryRow(name, count_parameters(child, trainable_only=True), count_parameters(child))
        for name, child in model.named_children()
        if _has_parameters(child)
    ]
    rows.append(SummaryRow("total", count_parameters(model, trainable_only=True), count_parameters(model)))
    return rows


def format_summary(rows: list[SummaryRow]) -> str:
    """A fixed-width text table of :func:`trainable_summary` rows.

    Exact counts with thousands separators.
    The same model gives the same text on every machine, so notebooks can
    print it and nbval can compare it exactly.
    """
    body = [(row.name, f"{row.trainable:,}", f"{row.total:,}", _percent(row.trainable, row.total)) for row in rows]
    total = [len(body) - 1] if rows and rows[-1].name == "total" else []
    return tables.text(("module", "trainable", "total", "trainable %"), body, header_rule=True, rule_before=total)


def _percent(part: int, whole: int) -> str:
    if not whole:
        return "-"
    share = 100 * part / whole
    return f"{share:.1f}" if share == 0 or share >= 0.1 else f"{share:.3f}"


def param_groups(
    model: nn.Module, head_lr: float, body_lr: float, head_name: str | None = None, *, body: str | None = None
) -> list[dict]:
    """Optimizer parameter groups with one learning rate for the head and another for the rest.

    Discriminative learning rates, as in fastai's ``fine_tune``: the pretrained
    body moves slowly, the new head quickly.  The head is ``head_name``
    (default :func:`find_head_name`); or ``body``, a module's name, says which
    part is pretrained and everything else is new (a detector's
    ``"backbone.body"``).  Only trainable parameters are included and an
    empty group is left out; each group carries a ``"name"`` (``"body"`` or
    ``"head"``).  Use as ``torch.optim.AdamW(param_groups(...))``.
    """
    head = None if body is not None else head_name or find_head_name(model)
    groups = {"body": [], "head": []}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            in_head = not matches(name, body) if body is not None else matches(name, head)
            groups["head" if in_head else "body"].append(parameter)
    lrs = {"body": body_lr, "head": head_lr}
    return [{"name": name, "params": params, "lr": lrs[name]} for name, params in groups.items() if params]
