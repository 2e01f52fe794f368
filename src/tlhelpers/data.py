"""Finding, checking and loading the photos (chapter 4 uses most of this module).

The cats/dogs/pandas experiment of chapter 4 starts with :func:`locate`, which
finds the photos, and :func:`check`, which says whether a folder is usable.
:func:`scan` lists the labelled files as an :class:`ImageSet`; :func:`split`
and :func:`per_class` make deterministic train/val/test splits and
n-images-per-class subsets (chapters 2 and 3 use them too), and :func:`loader`
builds a ``DataLoader`` that skips unreadable files instead of crashing
mid-epoch.  Every image goes through :func:`load_rgb`, which turns whatever is
on disk (greyscale, palette, CMYK, 16-bit, EXIF-rotated …) into an RGB picture.

A dataset folder holds one subfolder per class, with the images directly in it::

    animals/
        cats/   cats_00001.jpg …
        dogs/   dogs_00001.jpg …
        panda/  panda_00001.jpg …
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import platformdirs
import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm.auto import tqdm

from tlhelpers import runtime, tables

# The decoder lives in the torch-free images module; data offers it under the names the chapters use.
from tlhelpers.images import BrokenExifWarning, UnreadableImage, load_rgb, to_rgb  # noqa: F401

DATA_ENV = "TLHELPERS_DATA"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

KAGGLE_DATASETS = {"animals": "ashishsaxena2209/animal-image-datasetdog-cat-and-panda"}
"""Datasets that :func:`locate` can download with ``kagglehub``, by name."""


class DataNotFound(FileNotFoundError):
    """No dataset folder was found; the message names every place looked in, in order.

    ``tried`` holds one line per place.
    """

    def __init__(self, name: str, tried: list[str]):
        self.name = name
        self.tried = tried
        places = "\n".join(f"  {number}. {place}" for number, place in enumerate(tried, 1))
        super().__init__(
            f"Could not find the {name!r} dataset. Looked in, in order:\n{places}\n"
            f"Pass its folder explicitly, or set {DATA_ENV} to the folder that holds "
            f"{name}/ (a folder with one subfolder of images per class)."
        )

    def __str__(self) -> str:
        return self.args[0]


class SkippedImageWarning(UserWarning):
    """Warned once per unreadable file that :class:`ImageDataset` skips."""


# --------------------------------------------------------------------------- #
# Finding the dataset
# --------------------------------------------------------------------------- #


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not _is_hidden(path) and path.is_file()


def _class_folders(root: Path) -> list[Path]:
    """The non-hidden immediate subfolders of ``root``, sorted by name."""
    return sorted(entry for entry in root.iterdir() if entry.is_dir() and not _is_hidden(entry))


def _image_files(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name."""
    return sorted(entry for entry in folder.iterdir() if _is_image_file(entry))


def _holds_images(folder: Path) -> bool:
    try:
        return any(_is_image_file(entry) for entry in folder.iterdir())
    except OSError:
        return False


def _why_not_dataset(folder: Path) -> str | None:
    """``None`` when ``folder`` holds at least one class subfolder with images, else why not."""
    if not folder.exists():
        return "does not exist"
    if not folder.is_dir():
        return "is not a folder"
    try:
        classes = _class_folders(folder)
    except OSError as error:
        return f"cannot be listed ({error.strerror or error})"
    if not any(_holds_images(class_folder) for class_folder in classes):
        return "has no class subfolder with images"
    return None


def _best_dataset_folder(top: Path, max_depth: int = 4) -> Path | None:
    """The folder under ``top`` with the most class subfolders holding images.

    Among equals, the one with fewer other subfolders wins, then the shallowest.
    The Kaggle animals download holds the set twice, ``animals/{cats,dogs,panda}``
    beside a copy in ``animals/animals/``: the inner folder is the clean one,
    since :func:`scan` would take the outer one's ``animals/`` for a fourth class.
    """
    best, best_key = None, (0, 0)
    level = [top]
    for _ in range(max_depth + 1):
        next_level = []
        for folder in level:
            try:
                subfolders = _class_folders(folder)
            except OSError:
                continue
            n_classes = sum(_holds_images(sub) for sub in subfolders)
            key = (n_classes, n_classes - len(subfolders))
            if n_classes and key > best_key:
                best, best_key = folder, key
            next_level.extend(subfolders)
        level = next_level
    return best


def _copy_whole(source: Path, target: Path) -> None:
    """Copy the folder ``source`` to ``target`` so that ``target`` appears complete or not at all.

    The copy goes into a hidden temporary folder beside ``target`` and is
    renamed at the end; an interrupted copy leaves no ``target`` for
    :func:`locate` to mistake for the data set (and its temporary folder is
    removed, or, after a hard kill, ignored as a hidden folder).
    """
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _download(name: str, cache_target: Path) -> tuple[Path | None, str]:
    """Download ``name`` with kagglehub and expose it at ``cache_target``; (path, what happened)."""
    handle = KAGGLE_DATASETS.get(name)
    if handle is None:
        return None, f"download with kagglehub: not tried (no download source for {name!r})"
    if runtime.offline():
        return None, f"download with kagglehub: not tried ({runtime.OFFLINE_ENV}=1, offline)"
    try:
        import kagglehub
    except ImportError:
        return None, "download with kagglehub: not tried (kagglehub is not installed)"
    try:
        downloaded = Path(kagglehub.dataset_download(handle))
    except Exception as error:  # network, authentication, quota: all mean "not here"
        return None, f"download with kagglehub ({handle}): failed ({type(error).__name__}: {error})"
    found = _best_dataset_folder(downloaded)
    if found is None:
        return None, f"download with kagglehub ({handle}): no class folders with images in {downloaded}"
    # The download lives in kagglehub's own cache; a link under our cache name makes
    # the next locate() find it without kagglehub.  Copy where links are not allowed.
    if cache_target.is_symlink() and not cache_target.exists():
        cache_target.unlink()
    if not cache_target.exists():
        cache_target.parent.mkdir(parents=True, exist_ok=True)
        try:
            cache_target.symlink_to(found, target_is_directory=True)
        except OSError:
            _copy_whole(found, cache_target)
        return cache_target, f"download with kagglehub ({handle}): done"
    return found, f"download with kagglehub ({handle}): done"


def locate(path: str | os.PathLike | None = None, name: str = "animals") -> Path:
    """The folder of the dataset ``name``, found in a fixed order.

    1. ``path`` when given: that folder, or ``path/name``.  An explicit path is
       never silently replaced by another place: if it is not a dataset folder,
       :class:`DataNotFound` says so.
    2. ``$TLHELPERS_DATA/name``, or ``$TLHELPERS_DATA`` itself when it is the
       dataset folder.
    3. The user cache, ``platformdirs.user_cache_dir("tlhelpers")/name``.
    4. A download with ``kagglehub`` (only when it is installed and
       ``TLHELPERS_OFFLINE`` is not set), linked into the user cache.

    A folder counts only if it holds at least one class subfolder with images.
    When none does, :class:`DataNotFound` lists every place tried.
    """
    tried: list[str] = []

    def found(candidate: Path, label: str) -> bool:
        why_not = _why_not_dataset(candidate)
        if why_not is not None:
            tried.append(f"{label}: {candidate} ({why_not})")
        return why_not is None

    if path is not None:
        explicit = Path(path).expanduser()
        for candidate in (explicit, explicit / name):
            if found(candidate, "path argument"):
                return candidate.resolve()
        raise DataNotFound(name, tried)
    tried.append("path argument: none given")

    env_value = os.environ.get(DATA_ENV, "").strip()
    if env_value:
        env_path = Path(env_value).expanduser()
        for candidate in (env_path / name, env_path):
            if found(candidate, f"${DATA_ENV}"):
                return candidate.resolve()
    else:
        tried.append(f"${DATA_ENV}: not set")

    cache_target = Path(platformdirs.user_cache_dir("tlhelpers")) / name
    if found(cache_target, "user cache"):
        return cache_target.resolve()

    downloaded, outcome = _download(name, cache_target)
    if downloaded is not None:
        return downloaded.resolve()
    tried.append(outcome)
    raise DataNotFound(name, tried)


# --------------------------------------------------------------------------- #
# Sets of labelled files, splits and subsets
# --------------------------------------------------------------------------- #


@dataclass(repr=False)
class ImageSet:
    """Labelled image files: ``files[i]`` belongs to class ``classes[labels[i]]``."""

    root: Path
    files: list[Path]
    labels: list[int]
    classes: list[str]

    def __post_init__(self) -> None:
        if len(self.files) != len(self.labels):
            raise ValueError(f"{len(self.files)} files but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.files)

    def counts(self) -> dict[str, int]:
        """Number of images per class name, in class order."""
        per_label = np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=len(self.classes))
        return {name: int(count) for name, count in zip(self.classes, per_label)}

    def subset(self, indices: Iterable[int]) -> ImageSet:
        """The images at ``indices`` (same root and classes)."""
        indices = [int(i) for i in indices]
        return ImageSet(
            root=self.root,
            files=[self.files[i] for i in indices],
            labels=[self.labels[i] for i in indices],
            classes=list(self.classes),
        )

    def __repr__(self) -> str:
        # No absolute path: notebooks print this and their outputs must match on every machine.
        counts = ", ".join(f"{name}={count}" for name, count in self.counts().items())
        return f"ImageSet({self.root.name!r}, {len(self)} images: {counts})"


def scan(root: str | os.PathLike) -> ImageSet:
    """List the images of a dataset folder; each immediate subfolder is a class.

    Classes are sorted by folder name and files by name; images are recognised
    by extension (any case, see ``IMAGE_EXTENSIONS``); hidden files and
    folders are ignored, and so are subfolders inside a class folder.
    The files are not opened: :func:`check` does that.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise ValueError(f"Dataset folder not found: {root}")
    if not root.is_dir():
        raise ValueError(f"Not a folder: {root}")
    class_folders = _class_folders(root)
    if not class_folders:
        raise ValueError(f"No class subfolders in {root}: put each class's images in a subfolder named after it")
    files: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(class_folders):
        class_files = _image_files(folder)
        files.extend(class_files)
        labels.extend([label] * len(class_files))
    if not files:
        names = ", ".join(folder.name for folder in class_folders)
        raise ValueError(
            f"No images in the class subfolders of {root} ({names}); extensions looked for: "
            + " ".join(IMAGE_EXTENSIONS)
        )
    return ImageSet(root=root, files=files, labels=labels, classes=[folder.name for folder in class_folders])


# Different streams for split() and per_class(), so that a subset drawn with the
# same seed as the split is not simply the test images again.
_SPLIT_STREAM, _PER_CLASS_STREAM = 0, 1


def _class_permutation(images: ImageSet, label: int, seed: int, stream: int) -> np.ndarray:
    """Indices of class ``label``, shuffled by a generator of its own (independent of other classes)."""
    members = np.flatnonzero(np.asarray(images.labels) == label)
    return np.random.default_rng([seed, stream, label]).permutation(members)


def split(images: ImageSet, val: float = 0.15, test: float = 0.15, seed: int = 0) -> dict[str, ImageSet]:
    """Stratified ``{"train", "val", "test"}`` split, the same for the same seed.

    Each class is divided in the proportions ``val`` and ``test`` (rounded per
    class); the rest is for training.  The parts are disjoint, cover every
    image, and keep the file order of ``images``.
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"val and test must be fractions with val + test < 1, got val={val}, test={test}")
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for label in range(len(images.classes)):
        shuffled = _class_permutation(images, label, seed, _SPLIT_STREAM)
        n_test = min(round(test * len(shuffled)), len(shuffled))
        n_val = min(round(val * len(shuffled)), len(shuffled) - n_test)
        parts["test"].extend(shuffled[:n_test])
        parts["val"].extend(shuffled[n_test : n_test + n_val])
        parts["train"].extend(shuffled[n_test + n_val :])
    return {name: images.subset(sorted(indices)) for name, indices in parts.items()}


def per_class(images: ImageSet, n: int | None, seed: int = 0) -> ImageSet:
    """``n`` images of each class, drawn with ``seed``; ``n=None`` keeps all.

    The draws are nested: for one seed, the 5-per-class set is contained in
    the 10-per-class set, so a learning curve over n compares like with like.
    Raises ``ValueError`` when a class has fewer than ``n`` images.
    """
    if n is None:
        return images.subset(range(len(images)))
    if n < 1:
        raise ValueError(f"n must be at least 1 (or None for all), got {n}")
    too_small = {name: count for name, count in images.counts().items() if count < n}
    if too_small:
        listed = ", ".join(f"{name} has {count}" for name, count in too_small.items())
        raise ValueError(f"Cannot draw {n} images per class: {listed}")
    chosen: list[int] = []
    for label in range(len(images.classes)):
        chosen.extend(_class_permutation(images, label, seed, _PER_CLASS_STREAM)[:n])
    return images.subset(sorted(chosen))


# --------------------------------------------------------------------------- #
# PyTorch datasets and loaders
# --------------------------------------------------------------------------- #


class ImageDataset(Dataset):
    """An :class:`ImageSet` as a PyTorch dataset of ``(transform(image), label)``.

    An unreadable file gives ``None`` instead of an item, one
    :class:`SkippedImageWarning` the first time, and an entry
    ``path -> reason`` in ``skipped``; :func:`collate_skipping` drops the
    ``None`` items, so an epoch never stops at a bad file.  With
    ``num_workers > 0`` each worker process keeps its own ``skipped``.
    """

    def __init__(self, images: ImageSet, transform: Callable | None = None):
        self.images = images
        self.transform = transform
        self.skipped: dict[Path, str] = {}

    @property
    def classes(self) -> list[str]:
        return self.images.classes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        path = self.images.files[index]
        try:
            image = load_rgb(path)
        except UnreadableImage as error:
            if path not in self.skipped:
                self.skipped[path] = error.reason
                warnings.warn(f"Skipping {path}: {error.reason}", SkippedImageWarning, stacklevel=2)
            return None
        if self.transform is not None:
            image = self.transform(image)
        return image, self.images.labels[index]


def collate_skipping(batch: Sequence):
    """``default_collate`` of the items that are not ``None``; ``None`` when none is left."""
    kept = [item for item in batch if item is not None]
    if not kept:
        return None
    return default_collate(kept)


def loader(
    images: ImageSet,
    transform: Callable,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
) -> DataLoader:
    """A ``DataLoader`` over ``images`` that skips unreadable files.

    Shuffling uses a ``torch.Generator`` seeded with ``seed``, so two runs see
    the same batches.  A batch whose files were all unreadable comes out as
    ``None``; training loops skip it.
    """
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        ImageDataset(images, transform),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        collate_fn=collate_skipping,
    )


# --------------------------------------------------------------------------- #
# Checking a dataset folder
# --------------------------------------------------------------------------- #


@dataclass
class CheckReport:
    """What :func:`check` found in a dataset folder."""

    root: Path
    classes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def reasons_not_usable(self) -> list[str]:
        """Why the folder cannot be trained on; empty when it can."""
        if not self.root.is_dir():
            return [f"{self.root} is not an existing folder"]
        reasons = []
        if len(self.classes) < 2:
            found = f"found {len(self.classes)}" + (f" ({self.classes[0]})" if self.classes else "")
            reasons.append(f"need at least 2 class subfolders, {found}")
        if self.empty_classes:
            reasons.append("no usable image in class " + ", ".join(self.empty_classes))
        return reasons

    @property
    def usable(self) -> bool:
        """True when the root exists and has ≥ 2 classes, each with ≥ 1 usable image."""
        return not self.reasons_not_usable()

    def summary(self) -> str:
        """A human-readable report: counts per class, image sizes, every unusable file, the verdict."""
        # The folder's name only: where it lies is the caller's (and stays out of notebook outputs).
        lines = [f"Dataset folder: {self.root.name or self.root}"]
        lines.extend(self.messages)
        if self.classes:
            unreadable = {name: 0 for name in self.classes}
            for path, _ in self.problems:
                if path.parent.name in unreadable:
                    unreadable[path.parent.name] += 1
            rows = [(name, str(self.counts.get(name, 0)), str(unreadable[name])) for name in self.classes]
            rows.append(("total", str(sum(self.counts.values())), str(sum(unreadable.values()))))
            lines += ["", tables.text(("class", "usable", "unreadable"), rows, min_widths=(0, 7, 10))]
        if self.sizes:
            widths = [w for w, _ in self.sizes]
            heights = [h for _, h in self.sizes]
            rows = [
                (label, str(min(values)), str(statistics.median_low(values)), str(max(values)))
                for label, values in (("width", widths), ("height", heights))
            ]
            lines += ["", tables.text(("size", "min", "median", "max"), rows, min_widths=(6, 5, 6, 5))]
        if self.problems:
            lines.append("")
            lines.append(f"Unusable files ({len(self.problems)}):")
            for path, reason in self.problems:
                lines.append(f"  {runtime.shown_path(path, self.root)}: {reason}")
        if self.empty_classes:
            lines.append("")
            lines.append("Classes with no usable image: " + ", ".join(self.empty_classes))
        lines.append("")
        reasons = self.reasons_not_usable()
        if reasons:
            lines.append("Not usable: " + "; ".join(reasons) + ".")
        else:
            total = sum(self.counts.values())
            lines.append(f"Usable: {len(self.classes)} classes, {total} images.")
        return "\n".join(lines)


def check(root: str | os.PathLike, progress: bool = False) -> CheckReport:
    """Open every image of a dataset folder and report what can be used.

    Never raises for a bad folder: a missing root, no class folders, files
    that are not images, truncated or corrupt photos all end up in the
    report, whose ``usable`` and ``summary()`` say what to fix.
    ``progress=True`` shows a ``tqdm.auto`` bar per class folder (chapter 7's
    ``python -m tlhelpers train``).
    """
    root = Path(root).expanduser()
    report = CheckReport(root=root)
    if not root.exists():
        report.messages.append(f"Folder not found: {root}")
        return report
    if not root.is_dir():
        report.messages.append(f"Not a folder: {root}")
        return report
    try:
        class_folders = _class_folders(root)
    except OSError as error:
        report.messages.append(f"Cannot list {root}: {error.strerror or error}")
        return report

    if not class_folders:
        loose = [entry for entry in root.iterdir() if _is_image_file(entry)]
        hint = f" ({len(loose)} images lie directly in it)" if loose else ""
        report.messages.append(
            f"No class subfolders in {root}{hint}: put each class's images in a subfolder named after it."
        )
        return report

    report.classes = [folder.name for folder in class_folders]
    for folder in class_folders:
        usable = 0
        try:
            entries = sorted(folder.iterdir())
        except OSError as error:
            report.messages.append(f"Cannot list {folder.name}/: {error.strerror or error}")
            entries = []
        ignored = [
            entry.name for entry in entries if not _is_hidden(entry) and entry.is_file() and not _is_image_file(entry)
        ]
        nested = [entry.name for entry in entries if not _is_hidden(entry) and entry.is_dir()]
        candidates = [entry for entry in entries if _is_image_file(entry)]
        for path in tqdm(candidates, desc=f"checking {folder.name}", leave=False, disable=not progress):
            try:
                image = load_rgb(path)
            except UnreadableImage as error:
                report.problems.append((path, error.reason))
                continue
            report.sizes.append(image.size)
            usable += 1
        report.counts[folder.name] = usable
        if usable == 0:
            report.empty_classes.append(folder.name)
        if ignored:
            report.messages.append(
                f"{folder.name}/: ignored {len(ignored)} file(s) without an image extension (e.g. {ignored[0]})"
            )
        if nested:
            report.messages.append(
                f"{folder.name}/: subfolders inside a class folder are not scanned "
                f"({', '.join(nested[:3])}{' …' if len(nested) > 3 else ''})"
            )
    if len(class_folders) == 1 and report.empty_classes and _why_not_dataset(class_folders[0]) is None:
        report.messages.append(f"{class_folders[0]} looks like the dataset folder itself: check that instead.")
    return report
