"""Looking inside a network: class activation maps (chapter 4) and the activations below its last blocks (chapter 5).

Zhou et al. (2016), "Learning Deep Features for Discriminative Localization".
When the head is a linear layer right after global average pooling, the
logit of class ``c`` is ``w_c · mean_xy F(x, y) + b_c`` for the last
convolutional feature maps ``F`` (C × h × w).  Since the mean and the dot
product commute, ``M_c(x, y) = Σ_k w_c[k] F_k(x, y)`` is a map whose mean
plus ``b_c`` *is* the logit: it says how much each place in the photo adds
to the class score.  The CAM is ``ReLU(M_c)``, upsampled to the input size
and scaled to [0, 1].

This holds for ResNets (``layer4`` → ``avgpool`` → ``fc``) and timm's
EfficientNet (``forward_features`` → ``global_pool`` → ``classifier``), but
not for VGG16, whose classifier has two hidden layers after the pooling;
:func:`class_activation_map` checks the model instead of trusting its name.

**Cached activations**: train the last blocks of a frozen network on what the layers below compute once (chapter 5).

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
before the last ``k`` blocks is read off the traced forward pass, so the same code
works for ResNet, VGG and timm's EfficientNet.  :func:`top_model` checks that
the top on the activations gives the network's own outputs and raises
``ValueError`` when it does not (a network that applies a function between
its blocks that the split would repeat).
"""

from __future__ import annotations

import copy
from typing import Iterable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from tlhelpers import features, surgery

NOT_CAM_ABLE = "CAM needs a linear head right after global average pooling"


def feature_maps(backbone_model: nn.Module, image_tensor: torch.Tensor) -> torch.Tensor:
    """The last convolutional feature maps (C × h × w) of one normalised image.

    What the model's global pooling layer (timm's ``global_pool``,
    torchvision's ``avgpool``) receives, read with
    :func:`tlhelpers.features.feature_network` in eval mode on the model's
    device.  Raises ``ValueError`` unless the model's head receives exactly
    the spatial mean of these maps.
    """
    x = _batch_of_one(image_tensor)
    name = type(backbone_model).__name__
    with surgery.evaluating(backbone_model) as device, torch.no_grad():
        try:
            network = features.feature_network(backbone_model, ("maps", "pooled"))
        except ValueError as error:
            raise ValueError(f"{NOT_CAM_ABLE}: {error}") from error
        outputs = network(x.to(device))
    maps, pooled = outputs["maps"].float(), outputs["pooled"].float()
    if maps.ndim != 4 or pooled.ndim != 2 or pooled.shape[1] != maps.shape[1]:
        raise ValueError(
            f"{NOT_CAM_ABLE}: in {name} the pooling sees "
            f"{tuple(maps.shape[1:])} and the last linear layer {tuple(pooled.shape[1:])} values "
            "(VGG16's classifier, for one, has hidden layers in between)"
        )
    mean = maps.mean((2, 3))
    if not torch.allclose(pooled, mean, rtol=1e-4, atol=1e-4 * (1 + mean.abs().max().item())):
        raise ValueError(
            f"{NOT_CAM_ABLE}: {name}'s head does not receive the plain spatial mean of its last feature maps"
        )
    return maps[0]


def _batch_of_one(image_tensor: torch.Tensor) -> torch.Tensor:
    if image_tensor.ndim == 3:
        return image_tensor.unsqueeze(0)
    if image_tensor.ndim == 4 and image_tensor.shape[0] == 1:
        return image_tensor
    raise ValueError(f"expected one image as C × H × W (or 1 × C × H × W), got shape {tuple(image_tensor.shape)}")


def class_map(head: nn.Linear, maps: torch.Tensor, class_index: int) -> torch.Tensor:
    """``M_c = Σ_k w_c[k] F_k``: the un-normalised map (h × w, before ReLU) of one class.

    Its spatial mean plus ``head.bias[class_index]`` equals the class logit.
    """
    weight = head.weight.detach()[class_index].to(maps.device, maps.dtype)
    return torch.einsum("k,khw->hw", weight, maps)


def class_activation_map(
    backbone_model: nn.Module, head: nn.Linear, image_tensor: torch.Tensor, class_index: int | None = None
) -> tuple[torch.Tensor, int]:
    """``(cam, class_index)``: the CAM of one image as an H × W tensor in [0, 1] at the input's resolution.

    ``backbone_model`` is a zoo model (its own head is not used, only its
    feature maps), ``head`` the ``nn.Linear`` whose class to explain (a
    trained head, or the model's own ImageNet head), ``image_tensor`` one
    image as the model takes it (``backbone.transforms(picture)``).
    ``class_index`` defaults to the class ``head`` predicts.  The map is
    ``ReLU(M_c)`` upsampled bilinearly and divided by its maximum (all zeros
    when no place speaks for the class).  Raises ``ValueError`` for models
    whose head is not a linear layer right after global average pooling
    (VGG16).
    """
    if not isinstance(head, nn.Linear):
        raise ValueError(f"{NOT_CAM_ABLE}; head is a {type(head).__name__}")
    x = _batch_of_one(image_tensor)
    maps = feature_maps(backbone_model, x)
    if head.in_features != maps.shape[0]:
        raise ValueError(
            f"the head takes {head.in_features} features but the model's last maps have "
            f"{maps.shape[0]} channels; it belongs to another backbone"
        )
    with torch.no_grad():
        if class_index is None:
            logits = F.linear(
                maps.mean((1, 2)), head.weight.to(maps.device), None if head.bias is None else head.bias.to(maps.device)
            )
            class_index = int(logits.argmax())
        elif not 0 <= class_index < head.out_features:
            raise IndexError(f"class_index {class_index} is out of range for {head.out_features} classes")
        cam = class_map(head, maps, class_index).relu()
        cam = F.interpolate(cam[None, None], size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[0, 0]
        peak = cam.max()
        if peak > 0:
            cam = cam / peak
    return cam.clamp(0, 1).cpu(), int(class_index)


def model_view(image, transforms):
    """The picture cropped and resized the way ``transforms`` prepares it, without normalising.

    A CAM covers the centre crop the model saw, not the whole photo; draw it
    over this.  ``transforms`` is a torchvision ``ImageClassification`` preset
    (``backbone.transforms``).
    """
    from torchvision.transforms import functional as TF

    picture = TF.resize(image, transforms.resize_size, interpolation=transforms.interpolation, antialias=True)
    return TF.center_crop(picture, transforms.crop_size)


def overlay(ax, image, cam, alpha: float = 0.45, cmap: str = "jet"):
    """Draw ``image`` with ``cam`` as a translucent heat map on ``ax``, axis off.

    Returns the heat map's image.
    ``image`` is a PIL image, an H × W × 3 array or a C × H × W tensor in
    [0, 1], best :func:`model_view` of the photo; a CAM of another size is
    stretched over it.  The return value can be passed to ``plt.colorbar``.
    """
    from tlhelpers.plots import to_image

    pixels = to_image(image)
    height, width = pixels.shape[:2]
    heat = torch.as_tensor(cam).detach().cpu().float().numpy()
    ax.imshow(pixels)
    artist = ax.imshow(
        heat,
        cmap=cmap,
        alpha=alpha,
        vmin=0,
        vmax=1,
        interpolation="bilinear",
        extent=(-0.5, width - 0.5, height - 0.5, -0.5),
    )
    ax.set_axis_off()
    return artist


def overlay_image(image, cam, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """``image`` with ``cam`` blended in as a heat map: an H × W × 3 array in [0, 1].

    The picture that :func:`overlay` draws, as pixels, for places that show
    a picture rather than a matplotlib figure (the explorer in the book's
    page).  ``cam`` must have the picture's size (:func:`class_activation_map`
    gives the model's input size, which is :func:`model_view`'s).
    """
    import matplotlib

    from tlhelpers.plots import to_image

    pixels = to_image(image)
    heat = torch.as_tensor(cam).detach().cpu().float().clamp(0, 1).numpy()
    if heat.shape != pixels.shape[:2]:
        raise ValueError(f"the map is {heat.shape} but the picture {pixels.shape[:2]}; pass model_view(photo)")
    colours = matplotlib.colormaps[cmap](heat)[..., :3]
    return (1 - alpha) * pixels + alpha * colours


# --------------------------------------------------------------------------- #
# Cached activations
# --------------------------------------------------------------------------- #


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def top_blocks(model: nn.Module, k: int, head_name: str | None = None) -> list[surgery.Block]:
    """The last ``k`` blocks before the head, and the head, input side first."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    head = head_name or surgery.find_head_name(model)
    body = [block for block in surgery.blocks(model, head) if block.prefixes != (head,)]
    if k > len(body):
        raise ValueError(f"k={k}, but {type(model).__name__} has only {len(body)} blocks before its head")
    return (body[len(body) - k :] if k else []) + [surgery.Block(head, (head,))]


def _call_order(model: nn.Module, names: Iterable[str]) -> list[str]:
    """The modules called ``names`` in the order the forward pass first enters them."""
    nodes = surgery.graph_nodes(model)
    first = {name: next((i for i, node in enumerate(nodes) if surgery.matches(node, name)), None) for name in names}
    return sorted((name for name, index in first.items() if index is not None), key=first.get)


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
    """Name of the module whose input :func:`activations` caches: the first of the last ``k`` blocks."""
    return top_blocks(model, k, head_name)[0].prefixes[0]


def activations(
    model: nn.Module, batches: Iterable, k: int, head_name: str | None = None, device: torch.device | str | None = None
) -> TensorDataset:
    """``TensorDataset(activations, labels)``: what enters the last ``k`` blocks, for every photo.

    ``batches`` yields ``(images, labels, ...)`` (a ``DataLoader``); ``None``
    batches are skipped.  The model runs in eval mode under
    ``torch.inference_mode()`` on ``device`` (default: the model's), read
    with :func:`tlhelpers.surgery.tap` at the input of :func:`split_point`, so
    the top is never computed; afterwards it is as it was
    (:func:`tlhelpers.surgery.evaluating`).  The activations come back on the
    CPU, in float32.
    """
    start = split_point(model, k, head_name)
    xs, ys = [], []
    with surgery.evaluating(model, device) as device, torch.inference_mode():
        network = surgery.tap(model, {surgery.input_node(model, start): "below"})
        for batch in batches:
            if batch is None:
                continue
            xs.append(network(batch[0].to(device))["below"].float().cpu())
            ys.append(batch[1].cpu())
    if not xs:
        raise ValueError("the loader gave no usable batch")
    return TensorDataset(torch.cat(xs), torch.cat(ys))


def top_model(
    model: nn.Module, k: int, example: torch.Tensor, head_name: str | None = None, atol: float = 1e-4
) -> nn.Module:
    """A copy of ``model`` that maps :func:`activations` to the model's outputs.

    Every module that runs before the last ``k`` blocks is replaced by
    ``nn.Identity``; the last ``k`` blocks and the head are trainable (and
    nothing else is left); which modules run first is read off the traced
    forward pass (:func:`tlhelpers.surgery.graph_nodes`).  ``example`` is a
    batch of inputs of the size the model will see (one photo is enough): the
    copy's outputs on its activations are checked against ``model``'s
    (``ValueError`` when they differ by more than ``atol``).
    ``model`` is not changed.
    """
    head = head_name or surgery.find_head_name(model)
    keep = [prefix for block in top_blocks(model, k, head) for prefix in block.prefixes]
    top = copy.deepcopy(model).cpu()
    example = example.cpu()
    order = _call_order(top, _candidates(top, head))
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
    """Copy the trained weights of ``top`` (from :func:`top_model`) into ``model``, in place; returns it."""
    result = model.load_state_dict(top.state_dict(), strict=False)
    if result.unexpected_keys:
        raise ValueError(f"top holds tensors that the model does not: {result.unexpected_keys[:3]}")
    return model
