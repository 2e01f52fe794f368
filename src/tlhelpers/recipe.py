"""Training a classifier on any folder of photos: what ``python -m tlhelpers train`` runs (chapters 7 and 8).

:func:`train_on_folder` does, in order, what chapter 4 teaches: it checks the
folder (:func:`tlhelpers.data.check`), splits the usable photos
deterministically (:func:`tlhelpers.data.split`), extracts and caches the
frozen backbone's features (:func:`tlhelpers.features.extract`), trains a
linear head with Adam for at least 300 steps (chapter 4's data-efficiency
recipe, which suits a handful of photos as well as thousands), and measures
it on the validation and test photos.  The result holds a
:class:`tlhelpers.heads.Classifier` ready to save.

:func:`writable_output` says, before any long step, whether a classifier file
can be written to a path without overwriting a file that tlhelpers did not
write.

**The training run** of ``python -m tlhelpers train``: a head or a fine-tuned backbone, resumable, on N processes.

:func:`run` trains a classifier on a folder of photos (one subfolder per
class) in one of three modes (:data:`MODES`):

``head``
    chapter 4's recipe: the frozen backbone's features, computed once and
    cached (:func:`tlhelpers.features.extract`, shared out over the processes
    and gathered), and a linear head trained on them with Adam.
``last-block``, ``all``
    chapter 5's recipe: the head and the last block (or the whole backbone)
    trained on photos that ``transforms.v2`` augments afresh every epoch
    (:func:`tlhelpers.augment.train_transform`), with discriminative learning
    rates (:func:`tlhelpers.surgery.param_groups`) and a warm-up cosine
    schedule stepped every batch (:func:`tlhelpers.train.warmup_cosine`).
    Every BatchNorm layer stays in inference mode: chapter 3's rule for frozen
    layers, which Keras' guide extends to fine-tuning (the layers keep
    ImageNet's statistics, their weights train), and which makes one step the
    same whether a batch is computed by one process or by several.

Every mode runs the same epoch loop (:func:`tlhelpers.train.one_epoch`),
validates after each epoch, keeps the weights of the best epoch (highest
validation accuracy, then lowest validation loss), stops when ``patience``
epochs bring nothing better, and writes a checkpoint after every epoch
(:func:`save_checkpoint`) from which ``resume=True`` goes on exactly
where the run stopped.  Under torchrun the model is wrapped in
``DistributedDataParallel`` and the batches are shared out by
:class:`tlhelpers.distributed.EpochSampler`; only the main process writes
files.  The random augmentation of each photo depends on the seed, the
epoch and the photo only (:class:`tlhelpers.distributed.SeededItems`), so a
resumed run, a run with loader workers and a run on N processes at the same
global batch size compute the same thing.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import os
import pickle
import random
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from tlhelpers import (
    augment,
    data,
    distributed,
    features,
    heads,
    runtime,
    surgery,
    tables,
    train,
    zoo,
)

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
    """What :func:`train_on_folder` produced.

    ``accuracy`` maps ``"validation"``/``"test"`` to a share in [0, 1], or to
    ``None`` when that split is empty (classes too small to hold photos back);
    ``confusion`` maps the same names to a ``classes × classes`` tensor of
    counts (rows: true class, columns: predicted class).
    """

    classifier: heads.Classifier
    report: data.CheckReport
    counts: dict[str, dict[str, int]]
    accuracy: dict[str, float | None]
    confusion: dict[str, torch.Tensor]
    skipped: dict[str, str] = field(default_factory=dict)
    from_cache: bool = False


def usable_images(report: data.CheckReport) -> data.ImageSet:
    """The files :func:`tlhelpers.data.check` could open, as an ``ImageSet``."""
    if not report.usable:
        raise FolderNotUsable(report)
    images = data.scan(report.root)
    bad = {Path(path) for path, _ in report.problems}
    keep = [i for i, path in enumerate(images.files) if Path(path) not in bad]
    return images.subset(keep)


def load_backbone(name: str | None) -> zoo.Backbone:
    """``name``'s backbone; ``None``: ResNet-18, else the packaged fallback."""
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
    """Check, split, extract, train a linear head and measure it, for a class-per-folder tree.

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
        classifier=heads.Classifier(
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
    """Whether ``path`` holds a file written by :meth:`tlhelpers.heads.Classifier.save`."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise  # cannot tell: the caller says so, instead of "not written by tlhelpers"
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile):
        return False  # not a torch file, truncated, corrupt
    return isinstance(payload, dict) and payload.get("format") == heads.FORMAT


def writable_output(path: str | os.PathLike, overwrite: bool = False, kind=is_classifier_file) -> str | None:
    """Why a file cannot be written to ``path``, or ``None`` when it can.

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


# --------------------------------------------------------------------------- #
# Checkpoints: a training run's resumable state
# --------------------------------------------------------------------------- #
# A checkpoint holds everything a run needs to go on as if it had never
# stopped: the model's, optimizer's, scheduler's and gradient scaler's states,
# the random states of every process, the epochs done, the history, the best
# epoch and its weights, and the run's identity (folder, classes, files,
# split, backbone, settings).  It is written atomically after every epoch, so
# a run killed at any moment leaves the previous epoch's checkpoint intact.


CHECKPOINT_FORMAT = "tlhelpers.checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read, or belongs to another run."""


def default_checkpoint_path(model_path: str | os.PathLike) -> Path:
    """Where the checkpoint of a run that writes ``model_path`` goes: ``model.pt`` → ``model.ckpt``."""
    return Path(model_path).with_suffix(".ckpt")


def files_digest(images) -> str:
    """SHA-256 of an ``ImageSet``'s class names and of its files (relative to its root) with their labels."""
    digest = hashlib.sha256(repr(list(images.classes)).encode())
    for path, label in zip(images.files, images.labels):
        digest.update(f"{runtime.shown_path(path, images.root)}|{int(label)}\n".encode())
    return digest.hexdigest()


def rng_state() -> dict:
    """The random states of Python, NumPy, PyTorch's CPU generator and its CUDA generators, as plain data."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write a checkpoint (``state`` plus the format marker) atomically; returns the path."""
    return runtime.save_atomically({"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **state}, path)


def is_checkpoint_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a checkpoint written by :func:`save_checkpoint` (so a new run may replace it)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile):
        return False
    return isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; raises :class:`CheckpointError` naming the file.

    The file holds tensors and plain data only (read with ``weights_only=True``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint to resume from: {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"{path} cannot be read as a checkpoint ({type(error).__name__})") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint written by 'python -m tlhelpers train'")
    if payload.get("format_version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {payload.get('format_version')!r}; "
            f"this tlhelpers reads version {CHECKPOINT_VERSION} only"
        )
    return payload


# What must be equal to resume, in the order the refusal names them, with the words it uses.
CHECKPOINT_IDENTITY = (
    ("folder", "was made from the folder {saved}, not {now}"),
    ("classes", "was made with the classes {saved}, not {now}"),
    ("files", "was made from other photos in the folder (files were added, removed or renamed)"),
    ("backbone", "was made with the backbone {saved}, not {now}"),
    ("backbone_sha256", "was made from other {backbone} weights than the ones here"),
    ("fine_tune", "was made with --fine-tune {saved}, not {now}"),
    ("split", "was made with the split {saved}, not {now}"),
    ("settings", "was made with the settings {saved}, not {now}"),
)


def checkpoint_mismatch(saved: dict, now: dict, path: str | os.PathLike) -> str | None:
    """Why the checkpoint at ``path`` with identity ``saved`` cannot continue the run ``now``, or ``None``."""
    for key, words in CHECKPOINT_IDENTITY:
        if saved.get(key) != now.get(key):
            if key == "settings":
                before, after = saved.get(key) or {}, now[key]
                differ = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
                was = ", ".join(f"--{k.replace('_', '-')} {before.get(k)}" for k in differ)
                wanted = ", ".join(f"--{k.replace('_', '-')} {after.get(k)}" for k in differ)
                return f"{path} was made with {was}, not {wanted}; give the same options to resume"
            return f"{path} " + words.format(saved=saved.get(key), now=now.get(key), backbone=now.get("backbone"))
    return None


# --------------------------------------------------------------------------- #
# The training run
# --------------------------------------------------------------------------- #


MODES = ("head", "last-block", "all")

# Defaults per mode: the head as `train` always trained it, fine-tuning as chapter 5 does.
DEFAULTS = {
    "head": {"batch_size": 64, "lr": 1e-3, "body_lr": None},
    "last-block": {"batch_size": 32, "lr": 3e-3, "body_lr": 3e-4, "epochs": 5},
    "all": {"batch_size": 32, "lr": 3e-3, "body_lr": 3e-4, "epochs": 5},
}
PATIENCE = 5
EVAL_BATCH = 64


class RunRefused(ValueError):
    """The run cannot start (or resume); ``status`` is the exit status the command line uses."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


class Interrupted(KeyboardInterrupt):
    """Ctrl-C: ``epochs_done`` epochs are in the checkpoint at ``path``."""

    def __init__(self, epochs_done: int, epochs: int, path: Path):
        super().__init__(f"interrupted after {epochs_done} of {epochs} epochs")
        self.epochs_done, self.epochs, self.path = epochs_done, epochs, path


@dataclass
class Outcome:
    """What :func:`run` did besides the classifier: epochs run, the best one, whether it stopped early."""

    epochs: int
    best_epoch: int
    stopped_early: bool
    resumed_from: int | None = None
    history: list[dict] = field(default_factory=list)


class FeatureItems(Dataset):
    """``(features[i], labels[i])`` of a :class:`tlhelpers.features.FeatureSet`, as a dataset."""

    def __init__(self, fs: features.FeatureSet):
        self.features, self.labels = fs.features.float(), fs.labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.features[index], int(self.labels[index])


def head_epochs(n_train: int, batch_size: int) -> int:
    """``train``'s head epochs: 30, or enough for 300 optimizer steps."""
    return max(30, math.ceil(MIN_STEPS / max(1, math.ceil(n_train / batch_size))))


def extract_sharded(
    backbone: zoo.Backbone,
    images: data.ImageSet,
    context: distributed.Context,
    *,
    cache: bool,
    workers: int,
    progress: bool,
) -> features.FeatureSet:
    """Features of ``images``, each process computing every N-th photo, gathered on every process.

    One process extracts (and caches) the whole set, as chapter 4 does.
    """
    if not context.distributed:
        return features.extract(
            backbone, images, cache=cache, num_workers=workers, device=context.device, progress=progress
        )
    part = features.extract(
        backbone,
        images.subset(distributed.shard(images.files, context)),
        cache=cache,
        num_workers=workers,
        device=context.device,
        progress=progress,
    )
    parts = distributed.gather((part.features, part.labels, part.files, part.skipped, part.from_cache), context)
    return features.FeatureSet(
        torch.cat([p[0] for p in parts]),
        torch.cat([p[1] for p in parts]),
        [f for p in parts for f in p[2]],
        list(images.classes),
        {k: v for p in parts for k, v in p[3].items()},
        Path(images.root),
        from_cache=all(p[4] for p in parts),
    )


class Positioned(Dataset):
    """The items of ``dataset`` at ``positions``, each with its position appended (``None`` stays ``None``)."""

    def __init__(self, dataset: Dataset, positions: list[int]):
        self.dataset, self.positions = dataset, positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int):
        item = self.dataset[self.positions[i]]
        return None if item is None else (*item, self.positions[i])


def scores(
    model: nn.Module, dataset: Dataset, context: distributed.Context, *, workers: int = 0
) -> tuple[float | None, torch.Tensor, torch.Tensor]:
    """Mean cross-entropy, labels and predictions over ``dataset``, shared out and gathered in dataset order.

    Eval mode, ``torch.inference_mode()``, float16 autocast on CUDA.  The loss
    is ``None`` when no item could be read.
    """
    loader = DataLoader(
        Positioned(dataset, distributed.shard(range(len(dataset)), context)),
        batch_size=EVAL_BATCH,
        num_workers=workers,
        collate_fn=data.collate_skipping,
        pin_memory=context.device.type == "cuda",
    )
    loss_sum, found = 0.0, []
    cuda = context.device.type == "cuda"
    with surgery.evaluating(model), torch.inference_mode():
        for batch in loader:
            if batch is None:
                continue
            x, y, where = batch[0].to(context.device, non_blocking=True), batch[1].to(context.device), batch[2]
            with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
                logits = model(x).float()
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            found.append(torch.stack([where, y.cpu(), logits.argmax(1).cpu()], 1))
    mine = torch.cat(found) if found else torch.empty(0, 3, dtype=torch.long)
    parts = distributed.gather((mine, loss_sum), context)
    rows = torch.cat([p[0] for p in parts])
    rows = rows[rows[:, 0].argsort()]
    total = sum(p[1] for p in parts)
    return (total / len(rows) if len(rows) else None), rows[:, 1], rows[:, 2]


def _loader(dataset: Dataset, sampler, batch_size: int, workers: int, cuda: bool) -> DataLoader:
    # Its own generator: the loader never draws on the global random stream, so a resumed run's
    # random numbers are those of an uninterrupted one.
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=cuda,
        collate_fn=data.collate_skipping,
        generator=torch.Generator(),
    )


def _better(row: dict, best: dict | None) -> bool:
    if best is None:
        return True
    if row["val_acc"] is None:  # no validation photos: the last epoch is the best there is
        return True
    return (row["val_acc"], -row["val_loss"]) > (best["val_acc"], -best["val_loss"])


def _state(model: nn.Module) -> dict:
    return {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}


def run(
    folder: str | os.PathLike,
    backbone: zoo.Backbone,
    *,
    output: str | os.PathLike,
    checkpoint_path: str | os.PathLike | None = None,
    resume: bool = False,
    fine_tune: str = "head",
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    body_lr: float | None = None,
    patience: int = PATIENCE,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
    workers: int = 0,
    cache: bool = True,
    context: distributed.Context | None = None,
    report: data.CheckReport | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> tuple[TrainingResult, Outcome]:
    """Train, validate and checkpoint every epoch, keep the best epoch, write ``output``.

    See the module docstring for the modes.  ``epochs`` is the most the run
    may take (default: :func:`head_epochs` for ``head``, 5 for fine-tuning);
    ``batch_size`` is the global batch, shared out over the processes.
    ``checkpoint_path`` defaults to :func:`default_checkpoint_path`
    of ``output``; it is written after every epoch by the main process and
    removed once ``output`` is written.  ``resume=True`` continues from it and
    raises :class:`RunRefused` when it was made from another folder, other
    classes or files, another backbone, mode, split or settings.  Ctrl-C
    raises :class:`Interrupted`.  ``say`` prints a line (on the main process).
    """
    if fine_tune not in MODES:
        raise RunRefused(f"--fine-tune must be one of {', '.join(MODES)}, not {fine_tune!r}")
    context = context or distributed.Context(device=runtime.pick_device())
    defaults = DEFAULTS[fine_tune]
    batch_size = batch_size or defaults["batch_size"]
    if batch_size % context.world_size:
        raise RunRefused(
            f"--batch-size {batch_size} cannot be shared out evenly over {context.world_size} "
            "processes; choose a multiple of their number"
        )
    lr = lr or defaults["lr"]
    body_lr = None if fine_tune == "head" else (body_lr or defaults["body_lr"])
    output = Path(output)
    ckpt_path = Path(checkpoint_path) if checkpoint_path else default_checkpoint_path(output)
    report = report if report is not None else data.check(folder)
    images = usable_images(report)
    splits = data.split(images, val=val, test=test, seed=seed)
    n_classes = len(images.classes)
    cuda = context.device.type == "cuda"
    head_name = backbone.head_name
    pretrained = features.model_fingerprint(backbone.model, skip=head_name)  # before any weight changes

    # The datasets and the model of the mode.
    if fine_tune == "head":
        feats = extract_sharded(backbone, images, context, cache=cache, workers=workers, progress=progress)
        parts = {name: feats.select(part) for name, part in splits.items()}
        train_set, val_set, test_set = (FeatureItems(parts[name]) for name in ("train", "val", "test"))
        missing = [
            name
            for name, count in zip(images.classes, torch.bincount(parts["train"].labels, minlength=n_classes))
            if count == 0
        ]
        if missing:  # readable by check() but not by the backbone's loader
            raise RunRefused(f"no training photo of class {', '.join(missing)} could be read", status=1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = nn.Linear(feats.dim, n_classes)
        from_cache = feats.from_cache
    else:
        prep = heads.preprocessing(backbone.transforms)
        augmented = augment.train_transform(prep["crop_size"][0], prep["mean"], prep["std"], policy="jitter")
        train_set = data.ImageDataset(splits["train"], augmented)
        val_set, test_set = (data.ImageDataset(splits[name], backbone.transforms) for name in ("val", "test"))
        model = backbone.model
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            surgery.replace_head(model, n_classes, head_name)
        if fine_tune == "last-block":
            surgery.unfreeze_last(model, 1, head_name)
        else:
            surgery.unfreeze(model)
        from_cache = False
    epochs = epochs or (head_epochs(len(train_set), batch_size) if fine_tune == "head" else defaults["epochs"])

    identity = {
        "folder": str(Path(folder).resolve()),
        "classes": list(images.classes),
        "files": files_digest(images),
        "backbone": backbone.name,
        "backbone_sha256": pretrained,
        "fine_tune": fine_tune,
        "split": {"seed": seed, "val": val, "test": test},
        "settings": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "body_lr": body_lr},
    }

    saved = None
    if resume:

        def read() -> dict | str:
            try:
                state = load_checkpoint(ckpt_path)
            except CheckpointError as error:
                return str(error)
            return checkpoint_mismatch(state.get("identity", {}), identity, ckpt_path) or state

        saved = distributed.from_main(read, context)
        if isinstance(saved, str):
            raise RunRefused(f"cannot resume: {saved}")

    # Optimizer, schedule, loaders.
    sampler = distributed.EpochSampler(len(train_set), context, seed=seed)
    loader = _loader(distributed.SeededItems(train_set, seed), sampler, batch_size // context.world_size, workers, cuda)
    if fine_tune == "head":
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
        scheduler = None
    else:
        optimizer = torch.optim.Adam(surgery.param_groups(model, head_lr=lr, body_lr=body_lr, head_name=head_name))
        scheduler = train.warmup_cosine(optimizer, epochs * len(loader))
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    if cuda and fine_tune != "head":
        model.to(memory_format=torch.channels_last)

    history, best, done, stopped = [], None, 0, False
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        if len(saved["rng"]) == context.world_size:
            set_rng_state(saved["rng"][context.rank])
        history, best, done, stopped = saved["history"], saved["best"], saved["epoch"], saved["stopped"]
        say(
            f"Resuming from {ckpt_path}: {done} of {epochs} epochs done"
            + (f", best so far epoch {best['epoch']}" if best else "")
            + "."
        )
    ddp = distributed.wrap(model, context)

    def checkpoint_after(epoch: int) -> None:
        rng = distributed.gather(rng_state(), context)
        if context.main:
            save_checkpoint(
                {
                    "identity": identity,
                    "epoch": epoch,
                    "stopped": stopped,
                    "model": _state(model),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler else None,
                    "scaler": scaler.state_dict(),
                    "rng": rng,
                    "history": history,
                    "best": best,
                },
                ckpt_path,
            )

    if saved is None:
        checkpoint_after(0)
    threads = runtime.threads(1) if fine_tune == "head" and not cuda else contextlib.nullcontext()
    epoch = done
    try:
        with threads:
            bar = tqdm(
                range(done + 1, epochs + 1), desc="epochs", disable=not progress or stopped, initial=done, total=epochs
            )
            for epoch in bar:
                if stopped:
                    break
                sampler.set_epoch(epoch)
                lr_now = optimizer.param_groups[-1]["lr"]
                fit = train.one_epoch(
                    ddp,
                    loader,
                    optimizer,
                    device=context.device,
                    amp=cuda,
                    channels_last=cuda and fine_tune != "head",
                    scaler=scaler,
                    scheduler=scheduler,
                    all_bn_eval=True,
                    progress=progress,
                    desc=f"epoch {epoch}",
                )
                train_loss, train_acc, n = distributed.total(
                    [fit["loss"] * fit["n"], fit["acc"] * fit["n"], fit["n"]], context
                )
                val_loss, labels, predictions = scores(model, val_set, context, workers=workers)
                row = {
                    "epoch": epoch,
                    "train_loss": train_loss / n,
                    "train_acc": train_acc / n,
                    "val_loss": val_loss,
                    "val_acc": (predictions == labels).float().mean().item() if len(labels) else None,
                    "lr": lr_now,
                }
                history.append(row)
                improved = _better(row, best)
                if improved:
                    best = {
                        "epoch": epoch,
                        "val_acc": row["val_acc"],
                        "val_loss": row["val_loss"],
                        "model": _state(model),
                    }
                stopped = bool(patience) and row["val_acc"] is not None and epoch - best["epoch"] >= patience
                checkpoint_after(epoch)
                shown = {"train_loss": row["train_loss"], "train_acc": row["train_acc"], "val_acc": row["val_acc"]}
                bar.set_postfix({k: round(v, 3) for k, v in shown.items() if v is not None})
                if fine_tune != "head":
                    say(_epoch_line(row, epochs, improved))
    except KeyboardInterrupt as error:
        raise Interrupted(len(history), epochs, ckpt_path) from error

    # The best epoch's weights, measured on the validation and test photos.
    model.load_state_dict(best["model"])
    accuracy, confusion = {}, {}
    for key, dataset in (("validation", val_set), ("test", test_set)):
        _, labels, predictions = scores(model, dataset, context, workers=workers)
        accuracy[key] = (predictions == labels).float().mean().item() if len(labels) else None
        confusion[key] = tables.confusion_counts(labels, predictions, n_classes)
    split = {"seed": seed, "val": val, "test": test}
    model.eval().cpu()
    if fine_tune == "head":
        result_classifier = heads.Classifier(backbone, model, list(images.classes), split=split)
    else:
        head = copy.deepcopy(model.get_submodule(head_name))
        backbone.model = model.to(memory_format=torch.contiguous_format)
        result_classifier = heads.Classifier(backbone, head, list(images.classes), split=split, fine_tuned=True)
    if context.main:
        result_classifier.save(output)
        ckpt_path.unlink(missing_ok=True)
    distributed.barrier(context)
    result = TrainingResult(
        classifier=result_classifier,
        report=report,
        counts={name: part.counts() for name, part in splits.items()},
        accuracy=accuracy,
        confusion=confusion,
        from_cache=from_cache,
    )
    return result, Outcome(
        epochs=len(history),
        best_epoch=best["epoch"],
        stopped_early=len(history) < epochs,
        resumed_from=done if saved is not None else None,
        history=history,
    )


def _epoch_line(row: dict, epochs: int, improved: bool) -> str:
    line = f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.3f}, accuracy {row['train_acc']:.1%}"
    if row["val_acc"] is not None:
        line += f"; validation loss {row['val_loss']:.3f}, accuracy {row['val_acc']:.1%}"
        line += " (best so far)" if improved else ""
    return line
