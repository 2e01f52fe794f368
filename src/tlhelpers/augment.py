"""Data augmentation with ``torchvision.transforms.v2``: training, evaluation and test-time transforms (chapter 5).

Augmentation belongs to training only.  :func:`train_transform` draws a new
random crop, flip and colour change every time a photo is used;
:func:`eval_transform` is the deterministic preprocessing the pretrained
weights expect (resize, centre crop, normalise), for validation, testing and
cached features.  Photos can be decoded once into :func:`decoded` tensors and
augmented from memory by :class:`TransformedImages`, so that an epoch costs
the network's time, not the JPEG decoder's.

**Test-time augmentation.**  :func:`flip_predict` averages the predictions for a photo and its mirror image.
"""

from __future__ import annotations

import io
from typing import Callable, Iterable, Sequence

import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from tlhelpers import surgery

POLICIES = ("none", "jitter", "trivial")


def eval_transform(size: int, mean: Sequence[float], std: Sequence[float], resize: int | None = None) -> v2.Compose:
    """Resize the short side to ``resize`` (if given), centre-crop ``size``, scale to [0, 1], normalise."""
    steps = [v2.ToImage()]
    if resize is not None:
        steps.append(v2.Resize(resize, antialias=True))
    steps += [v2.CenterCrop(size), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


def train_transform(
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    policy: str = "jitter",
    scale: tuple[float, float] = (0.35, 1.0),
    flip: bool = True,
) -> v2.Compose:
    """A random crop of ``scale`` of the photo's area resized to ``size``, a flip, a colour policy.

    ``policy``: ``"none"``, ``"jitter"`` (brightness, contrast and saturation
    ±20 %; not the hue, the slowest on a CPU) or ``"trivial"`` (``TrivialAugmentWide``: one random
    operation of random strength per photo).  ``scale``'s lower bound keeps
    the animal in the crop: torchvision's default of 0.08 can keep a
    twelfth of the photo, often without the animal.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, not {policy!r}")
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
    steps = [v2.ToImage(), v2.RandomResizedCrop(size, scale=scale, antialias=True)]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    if policy == "jitter":
        steps.append(v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2))
    elif policy == "trivial":
        steps.append(v2.TrivialAugmentWide())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


def decoded(images, short_side: int) -> tuple[list[torch.Tensor], list[int]]:
    """Every photo of ``images`` (an ``ImageSet``) decoded once, short side resized to ``short_side``.

    Returns uint8 CHW tensors (their aspect ratios differ, so a list) and the
    labels.  Unreadable files are skipped with the warning of
    :func:`tlhelpers.data.load_rgb`'s dataset.
    """
    from tlhelpers import data

    resize = v2.Compose([v2.ToImage(), v2.Resize(short_side, antialias=True)])
    dataset = data.ImageDataset(images, resize)
    items = [item for item in (dataset[i] for i in range(len(dataset))) if item is not None]
    return [x.as_subclass(torch.Tensor) for x, _ in items], [int(y) for _, y in items]


def resaved_copy(
    picture: Image.Image, seed: int, keep: float = 0.95, scale: float = 0.8, quality: int = 80, shift: float = 0.05
) -> Image.Image:
    """The photo as the web may return it: cropped, resized, recoloured, recompressed.

    Each side keeps a random ``keep`` to 100 % of its length, the crop is
    resized to ``scale`` of its size, brightness, contrast and saturation move
    by up to ``shift``, and the result is saved as a JPEG of ``quality``.  Its
    similarity to the original sets the near-duplicate thresholds of
    :func:`tlhelpers.neighbours.duplicate_rule`.  The same ``seed`` gives the
    same copy.
    """
    if not 0 < keep <= 1 or not 0 < scale <= 1:
        raise ValueError(f"keep and scale must be in (0, 1], got {keep} and {scale}")
    draw = torch.rand(7, generator=torch.Generator().manual_seed(seed)).tolist()
    width, height = picture.size
    crop_w, crop_h = round(width * (keep + (1 - keep) * draw[0])), round(height * (keep + (1 - keep) * draw[1]))
    left, top = round((width - crop_w) * draw[2]), round((height - crop_h) * draw[3])
    copy = picture.crop((left, top, left + crop_w, top + crop_h))
    copy = copy.resize((max(1, round(crop_w * scale)), max(1, round(crop_h * scale))), Image.BILINEAR)
    for adjust, u in zip((F.adjust_brightness, F.adjust_contrast, F.adjust_saturation), draw[4:]):
        copy = adjust(copy, 1 + shift * (2 * u - 1))
    buffer = io.BytesIO()
    copy.convert("RGB").save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as compressed:
        return compressed.convert("RGB")


class TransformedImages(Dataset):
    """``(transform(photo), label)`` for decoded photos: a fresh random draw at every access."""

    def __init__(self, photos: Sequence[torch.Tensor], labels: Sequence[int], transform: Callable):
        if len(photos) != len(labels):
            raise ValueError(f"{len(photos)} photos but {len(labels)} labels")
        self.photos, self.labels, self.transform = list(photos), list(labels), transform

    def __len__(self) -> int:
        return len(self.photos)

    def __getitem__(self, index: int):
        return self.transform(self.photos[index]), self.labels[index]


# --------------------------------------------------------------------------- #
# Test-time augmentation
# --------------------------------------------------------------------------- #


def flip_predict(
    model: nn.Module, loader: Iterable, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(predicted labels, probabilities)`` from the mean softmax of each photo and its flip.

    Every batch ``(images, labels, ...)`` of ``loader`` is passed twice: as it
    is and mirrored left to right.  Runs in eval mode under
    ``torch.inference_mode()`` on ``device`` (default: the model's), and puts
    the model back as it was (:func:`tlhelpers.surgery.evaluating`); results
    on the CPU.
    """
    probs = []
    with surgery.evaluating(model, device) as device, torch.inference_mode():
        for batch in loader:
            if batch is None:
                continue
            x = batch[0].to(device)
            p = (model(x).float().softmax(1) + model(x.flip(-1)).float().softmax(1)) / 2
            probs.append(p.cpu())
    if not probs:
        raise ValueError("the loader gave no usable batch")
    probs_all = torch.cat(probs)
    return probs_all.argmax(1), probs_all
