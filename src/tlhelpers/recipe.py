"""Chapter 4's recipe on any folder of photos: what ``python -m tlhelpers train`` runs (chapter 7).

:func:`train_on_folder` does, in order, what chapter 4 teaches: it checks the
folder (:func:`tlhelpers.data.check`), splits the usable photos
deterministically (:func:`tlhelpers.data.split`), extracts and caches the
frozen backbone's features (:func:`tlhelpers.features.extract`), trains a
linear head with Adam for at least 300 steps (chapter 4's data-efficiency
recipe, which suits a handful of photos as well as thousands), and measures
it on the validation and test photos.  The result holds a
:class:`tlhelpers.classifier.Classifier` ready to save.

:func:`writable_output` says, before any long step, whether a classifier file
can be written to a path without overwriting a file that tlhelpers did not
write.
"""

from __future__ import annotations

import math
import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tlhelpers import classifier, data, features, heads, tables, zoo

DEFAULT_BACKBONE = "resnet18"
MIN_STEPS = 300


class FolderNotUsable(ValueError):
    """The folder cannot be trained on; ``report`` is the :class:`tlhelpers.data.CheckReport` that says why."""

    def __init__(self, report: data.CheckReport):
        self.report = report
        super().__init__(
            f"{report.root.name or report.root} cannot be trained on: " + "; ".join(report.reasons_not_usable())
        )


@dataclass
class TrainingResult:
    """What :func:`train_on_folder` produced (chapter 7, indirectly).

    ``accuracy`` maps ``"validation"``/``"test"`` to a share in [0, 1], or to
    ``None`` when that split is empty (classes too small to hold photos back);
    ``confusion`` maps the same names to a ``classes × classes`` tensor of
    counts (rows: true class, columns: predicted class).
    """

    classifier: classifier.Classifier
    report: data.CheckReport
    counts: dict[str, dict[str, int]]
    accuracy: dict[str, float | None]
    confusion: dict[str, torch.Tensor]
    skipped: dict[str, str] = field(default_factory=dict)
    from_cache: bool = False


def usable_images(report: data.CheckReport) -> data.ImageSet:
    """The files :func:`tlhelpers.data.check` could open, as an ``ImageSet`` (chapter 7, indirectly)."""
    if not report.usable:
        raise FolderNotUsable(report)
    images = data.scan(report.root)
    bad = {Path(path) for path, _ in report.problems}
    keep = [i for i, path in enumerate(images.files) if Path(path) not in bad]
    return images.subset(keep)


def load_backbone(name: str | None) -> zoo.Backbone:
    """``name``'s backbone; ``None``: ResNet-18, else the packaged fallback (chapter 8)."""
    if name is None:
        return zoo.load(DEFAULT_BACKBONE, fallback=zoo.FALLBACK)
    return zoo.load(name)


def train_on_folder(
    root: str | os.PathLike,
    backbone: str | zoo.Backbone | None = None,
    *,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
    lr: float = 1e-3,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    report: data.CheckReport | None = None,
) -> TrainingResult:
    """Check, split, extract, train a linear head and measure it, for a class-per-folder tree (chapter 7, indirectly).

    ``backbone`` is a zoo name, a loaded :class:`~tlhelpers.zoo.Backbone`, or
    ``None`` for :func:`load_backbone`'s default.  ``report`` is the folder's
    :func:`~tlhelpers.data.check` when the caller already has it.  Raises
    :class:`FolderNotUsable` when the folder cannot be trained on.  The split
    uses ``seed`` (same seed, same split) and covers only the photos that
    could be opened; the head's initial weights and batch order come from
    ``seed`` too.
    """
    report = report if report is not None else data.check(root)
    images = usable_images(report)
    splits = data.split(images, val=val, test=test, seed=seed)
    if not isinstance(backbone, zoo.Backbone):
        backbone = load_backbone(backbone)
    feats = features.extract(backbone, images, cache=cache, cache_dir=cache_dir, progress=progress)
    train_fs = feats.select(splits["train"])
    counts = torch.bincount(train_fs.labels, minlength=len(images.classes))
    missing = [name for name, count in zip(images.classes, counts) if count == 0]
    if missing:  # every photo of a class was readable by check() but not by the backbone's loader
        raise ValueError(f"no training photo of class {', '.join(missing)} could be read")
    steps_per_epoch = math.ceil(len(train_fs) / 64)
    head, _ = heads.fit_linear(train_fs, epochs=max(30, math.ceil(MIN_STEPS / steps_per_epoch)), lr=lr, seed=seed)
    accuracy: dict[str, float | None] = {}
    confusion: dict[str, torch.Tensor] = {}
    n = len(images.classes)
    for name, key in (("val", "validation"), ("test", "test")):
        part = feats.select(splits[name])
        if len(part) == 0:
            accuracy[key], confusion[key] = None, torch.zeros(n, n, dtype=torch.long)
            continue
        with torch.inference_mode():
            predictions = head(part.features.float()).argmax(1)
        accuracy[key] = (predictions == part.labels).float().mean().item()
        confusion[key] = tables.confusion_counts(part.labels, predictions, n)
    return TrainingResult(
        classifier=classifier.Classifier(
            backbone, head.eval(), list(images.classes), split={"seed": seed, "val": val, "test": test}
        ),
        report=report,
        counts={name: part.counts() for name, part in splits.items()},
        accuracy=accuracy,
        confusion=confusion,
        skipped=dict(feats.skipped),
        from_cache=feats.from_cache,
    )


def is_classifier_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a file written by :meth:`tlhelpers.classifier.Classifier.save` (chapter 7, indirectly)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise  # cannot tell: the caller says so, instead of "not written by tlhelpers"
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile):
        return False  # not a torch file, truncated, corrupt
    return isinstance(payload, dict) and payload.get("format") == classifier.FORMAT


def writable_output(path: str | os.PathLike, overwrite: bool = False, kind=is_classifier_file) -> str | None:
    """Why a file cannot be written to ``path``, or ``None`` when it can (chapter 7, indirectly).

    An existing file is replaced only when ``kind(path)`` says tlhelpers wrote
    it (by default: a classifier file), or with ``overwrite=True``.  The folder
    must exist and accept a new file (tried with a temporary file, removed at
    once).
    """
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder; give a file name"
    if not path.parent.is_dir():
        return f"the folder {path.parent} does not exist"
    if path.exists() and not overwrite:
        try:
            ours = kind(path)
        except PermissionError as error:
            return f"{path} exists and cannot be read ({error.strerror or error}), so it may not be replaced"
        if not ours:
            return f"{path} exists and was not written by tlhelpers; pass --overwrite to replace it"
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"):
            pass
    except OSError as error:
        return f"cannot write to the folder {path.parent} ({error.strerror or error})"
    return None
