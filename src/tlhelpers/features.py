"""Backbone features computed once, cached on disk, and a linear head trained on them.

Chapter 2 ("Replacing VGG16's head") introduces it; chapters 3 and 4 reuse it.
The photos pass through the frozen backbone once (:func:`extract`, a minute or
two for 3,000 photos on two CPU cores), then many heads are trained on the
stored features in seconds (:func:`train_linear_head`, :func:`imprint_head`):
for a frozen backbone this is the same model as training the head end to end,
only without recomputing the backbone every epoch.

The cache
---------
One file per (model weights, transform, files, labels, ``key_extra``) in
``cache_dir``, else ``$TLHELPERS_CACHE``, else
``platformdirs.user_cache_dir("tlhelpers")/features``.  Its key hashes

* the model's name and a SHA-256 of every tensor of the feature extractor's
  ``state_dict`` (the head is not part of it, so replacing the head keeps the
  cache; changing any backbone weight does not);
* ``repr(transform)`` (torchvision transforms print their parameters; a
  ``Lambda`` prints a memory address and so never hits the cache again);
* every file's path relative to the image root, size and modification time
  (``mtime_ns``), and its label and the class names;
* ``key_extra``, for anything else that changes the features.

Files are written to a temporary file in the same folder and renamed
(atomic); a cache file that cannot be read, is truncated or does not match
its key is reported with a :class:`FeatureCacheWarning` and recomputed.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import re
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import platformdirs
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from tlhelpers import surgery
from tlhelpers.train import History, pick_device

CACHE_ENV = "TLHELPERS_CACHE"
CACHE_FORMAT = 1


class FeatureCacheWarning(UserWarning):
    """A feature cache file was unreadable or stale and is being recomputed."""


@dataclass(repr=False)
class FeatureSet:
    """Backbone features of a set of images (chapter 4).

    ``features[i]`` (float32, N × D) and ``labels[i]`` (long) belong to
    ``files[i]``, a path relative to ``root``, in the order of the
    :class:`~tlhelpers.data.ImageSet`; unreadable files are left out and listed
    in ``skipped`` (relative path → reason).  ``cache_file`` is where the set is
    stored (``None`` when caching was off) and ``from_cache`` whether this call
    read it from there.
    """

    features: torch.Tensor
    labels: torch.Tensor
    files: list[str]
    classes: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    root: Path | None = None
    cache_file: Path | None = None
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.files)

    @property
    def dim(self) -> int:
        return self.features.shape[1]

    @property
    def paths(self) -> list[Path]:
        """The kept files as full paths."""
        root = Path(self.root) if self.root is not None else Path()
        return [root / name for name in self.files]

    def subset(self, indices) -> FeatureSet:
        """The rows at ``indices`` (a list of ints, a long tensor or a bool mask)."""
        index = torch.as_tensor(indices)
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        index = index.long()
        return FeatureSet(self.features[index], self.labels[index], [self.files[i] for i in index.tolist()],
                          list(self.classes), {}, self.root)

    def select(self, images) -> FeatureSet:
        """The rows of the files of ``images`` (an ``ImageSet``), in its order (chapter 4).

        Extract features once for all photos, then take each split or
        n-per-class subset with this instead of extracting again.  Files that
        were skipped as unreadable stay out (and are listed in ``skipped``);
        a file that was never extracted raises ``KeyError``.
        """
        position = {name: i for i, name in enumerate(self.files)}
        wanted = [_relative(path, images.root) for path in images.files]
        missing = [name for name in wanted if name not in position and name not in self.skipped]
        if missing:
            raise KeyError(f"{len(missing)} file(s) have no features here, e.g. {missing[0]}")
        chosen = self.subset([position[name] for name in wanted if name in position])
        chosen.skipped = {name: self.skipped[name] for name in wanted if name in self.skipped}
        return chosen

    def __repr__(self) -> str:
        # Machine-independent (no paths), so notebooks can print it.
        return (f"FeatureSet({len(self):,} images × {self.dim:,} features, "
                f"classes={self.classes}, skipped={len(self.skipped)})")


# --------------------------------------------------------------------------- #
# The feature extractor and the cache key
# --------------------------------------------------------------------------- #


def feature_extractor(model: nn.Module, head: str | None = None) -> nn.Module:
    """A copy of ``model`` whose head is ``nn.Identity``: it outputs the penultimate features (chapter 4).

    ResNet-18 gives the 512 pooled features, VGG16 the 4,096 outputs of
    ``classifier[:-1]``, timm's EfficientNet-Lite0 the 1,280 globally pooled
    features (``forward_head(..., pre_logits=True)``).  ``model`` is not changed.
    """
    head = head or surgery.find_head(model)
    extractor = copy.deepcopy(model)
    surgery._set_submodule(extractor, head, nn.Identity())
    return extractor.eval()


def model_fingerprint(model: nn.Module, skip: str | None = None) -> str:
    """SHA-256 of the names, shapes, dtypes and values of the ``state_dict`` tensors.

    Tensors of the module ``skip`` (a head, say) are left out.  Hashing is fast
    (VGG16's 528 MB in about half a second) next to a pass over the photos, and
    unlike a sample of the weights it changes with any fine-tuning step.
    Chapters 2–4 use it through the feature cache and saved classifiers.
    """
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if skip is not None and surgery._matches(name, skip):
            continue
        tensor = tensor.detach()
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype};".encode())
        flat = tensor.cpu().contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy() if flat.numel() else b"")
    return digest.hexdigest()


def _relative(path, root) -> str:
    path = Path(path)
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _file_identity(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (-1, -1)
    return (stat.st_size, stat.st_mtime_ns)


def resolve_cache_dir(path: str | os.PathLike | None = None) -> Path:
    """The feature cache folder: ``path``, else ``$TLHELPERS_CACHE``, else the user cache dir."""
    if path is not None:
        return Path(path).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(platformdirs.user_cache_dir("tlhelpers")) / "features"


def cache_key(name: str, fingerprint: str, transform: Callable, images, key_extra: str = "") -> str:
    """SHA-256 over everything that determines the features (see the module docstring)."""
    digest = hashlib.sha256()
    for part in (f"format={CACHE_FORMAT}", name, fingerprint, repr(transform), repr(list(images.classes)),
                 key_extra):
        digest.update(part.encode() + b"\0")
    for path, label in zip(images.files, images.labels):
        size, mtime = _file_identity(Path(path))
        digest.update(f"{_relative(path, images.root)}|{size}|{mtime}|{int(label)}\n".encode())
    return digest.hexdigest()


def cache_path(directory: Path, name: str, key: str) -> Path:
    """The cache file for ``key``: readable model name plus the start of the key."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "model"
    return Path(directory) / f"{safe}-{key[:24]}.pt"


def _save_atomically(payload: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _load_cached(path: Path, key: str, files: list[str]) -> dict | None:
    """The payload stored at ``path`` if it is complete and belongs to ``key``, else ``None`` (warned)."""
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, pickle garbage, permission …
        _warn(path, f"cannot be read ({type(error).__name__})")
        return None
    problem = _payload_problem(payload, key, files)
    if problem:
        _warn(path, problem)
        return None
    return payload


def _payload_problem(payload, key: str, files: list[str]) -> str | None:
    if not isinstance(payload, dict):
        return f"holds a {type(payload).__name__}, not a feature set"
    expected = {"format", "key", "features", "labels", "files", "classes", "skipped", "all_files"}
    if not expected <= set(payload):
        return f"lacks {sorted(expected - set(payload))}"
    if payload["format"] != CACHE_FORMAT or payload["key"] != key:
        return "belongs to other inputs (stale key)"
    if payload["all_files"] != files:
        return "lists other files"
    features, labels = payload["features"], payload["labels"]
    if not (isinstance(features, torch.Tensor) and isinstance(labels, torch.Tensor)):
        return "has no feature tensors"
    kept = len(payload["files"])
    if features.ndim != 2 or features.dtype != torch.float32 or features.shape[0] != kept \
            or labels.shape != (kept,) or kept + len(payload["skipped"]) != len(files):
        return "has inconsistent shapes"
    return None


def _warn(path: Path, problem: str) -> None:
    warnings.warn(f"Feature cache {path} {problem}; recomputing it.", FeatureCacheWarning, stacklevel=4)


# --------------------------------------------------------------------------- #
# Extraction
# --------------------------------------------------------------------------- #


class _Indexed(Dataset):
    """Items of an ``ImageDataset`` with their index appended, so skipped files can be told apart."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item = self.dataset[index]
        return None if item is None else (*item, index)


def extract(
    model,
    images,
    transform: Callable | None = None,
    *,
    name: str | None = None,
    head: str | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    key_extra: str = "",
    batch_size: int = 64,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> FeatureSet:
    """Penultimate-layer features of every image of ``images`` (an ``ImageSet``), cached on disk (chapter 4).

    ``model`` is an ``nn.Module`` or a :class:`tlhelpers.zoo.Backbone`, whose
    ``transforms``, ``name`` and ``head`` are then the defaults of
    ``transform``, ``name`` and ``head``.  The model runs without its head
    (:func:`feature_extractor`) in eval mode under ``torch.inference_mode()``
    in float32 on ``device`` (default :func:`~tlhelpers.train.pick_device`), with a
    ``tqdm.auto`` progress bar.  Unreadable files are skipped, with a warning
    from :mod:`tlhelpers.data`, and listed in ``skipped``.
    A second call with the same inputs reads the cache instead
    (``from_cache`` is then ``True``); ``cache=False`` never reads or writes it.
    """
    from tlhelpers import data

    if hasattr(model, "model") and hasattr(model, "transforms"):  # a zoo.Backbone
        transform = transform or model.transforms
        name = name or model.name
        head = head or model.head
        model = model.model
    if transform is None:
        raise ValueError("pass the transform that prepares the images for this model")
    name = name or type(model).__name__
    extractor = feature_extractor(model, head)
    all_files = [_relative(path, images.root) for path in images.files]

    path = key = None
    if cache:
        key = cache_key(name, model_fingerprint(extractor), transform, images, key_extra)
        path = cache_path(resolve_cache_dir(cache_dir), name, key)
        payload = _load_cached(path, key, all_files)
        if payload is not None:
            return FeatureSet(payload["features"], payload["labels"], list(payload["files"]),
                              list(payload["classes"]), dict(payload["skipped"]), Path(images.root),
                              path, from_cache=True)

    device = torch.device(device) if device is not None else pick_device()
    extractor.to(device)
    dataset = data.ImageDataset(images, transform)
    loader = DataLoader(_Indexed(dataset), batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=data.collate_skipping, pin_memory=device.type == "cuda")
    chunks, labels, kept = [], [], []
    with torch.inference_mode():
        for batch in tqdm(loader, desc=f"features ({name})", leave=False, disable=not progress):
            if batch is None:
                continue
            x, y, index = batch
            chunks.append(extractor(x.to(device)).flatten(1).float().cpu())
            labels.append(y.long())
            kept.extend(index.tolist())
    kept_set = set(kept)
    skipped = {
        all_files[i]: dataset.skipped.get(Path(images.files[i]), "unreadable")
        for i in range(len(all_files)) if i not in kept_set
    }
    features = torch.cat(chunks) if chunks else torch.empty(0, 0)
    result = FeatureSet(
        features=features.contiguous(),
        labels=torch.cat(labels) if labels else torch.empty(0, dtype=torch.long),
        files=[all_files[i] for i in kept],
        classes=list(images.classes),
        skipped=skipped,
        root=Path(images.root),
        cache_file=path,
    )
    if cache:
        _save_atomically({
            "format": CACHE_FORMAT, "key": key, "name": name, "features": result.features,
            "labels": result.labels, "files": result.files, "classes": result.classes,
            "skipped": result.skipped, "all_files": all_files,
        }, path)
    return result


def clear_cache(cache_dir: str | os.PathLike | None = None) -> int:
    """Delete every cached feature file in the cache folder; returns how many (chapter 4)."""
    removed = 0
    for path in resolve_cache_dir(cache_dir).glob("*.pt"):
        path.unlink()
        removed += 1
    return removed


# --------------------------------------------------------------------------- #
# A linear head trained on the features
# --------------------------------------------------------------------------- #


def train_linear_head(
    train: FeatureSet,
    epochs: int = 30,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    optimizer: str = "adam",
    momentum: float = 0.9,
    batch_size: int = 64,
    seed: int = 0,
    val: FeatureSet | None = None,
) -> tuple[nn.Linear, History]:
    """Train ``nn.Linear(D, classes)`` on stored features, on the CPU in seconds (chapter 4).

    Mini-batch cross-entropy with Adam (or SGD with ``momentum``); the
    initial weights and the batch order come from ``seed`` alone, so the same
    seed gives the same head, without touching the global random state.
    Returns the head and a :class:`~tlhelpers.train.History` (``train_loss``,
    ``train_acc`` and, with ``val``, ``val_loss``/``val_acc`` per epoch).
    """
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', not {optimizer!r}")
    if len(train) == 0:
        raise ValueError("no training features")
    with _one_thread():
        return _train_linear_head(train, epochs, lr, weight_decay, optimizer, momentum, batch_size, seed, val)


@contextlib.contextmanager
def _one_thread():
    # A linear head's matrices are tiny: waking a second thread for each costs more
    # than it saves, many times more on a busy two-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _train_linear_head(train, epochs, lr, weight_decay, optimizer, momentum, batch_size, seed, val):
    x, y = train.features.float().cpu(), train.labels.long().cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Linear(x.shape[1], len(train.classes))
    generator = torch.Generator().manual_seed(seed)
    if optimizer == "adam":
        opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    history = History()
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        head.train()
        order = torch.randperm(len(y), generator=generator)
        loss_sum, correct = 0.0, 0
        for begin in range(0, len(y), batch_size):
            index = order[begin:begin + batch_size]
            logits = head(x[index])
            loss = loss_fn(logits, y[index])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(index)
            correct += (logits.argmax(1) == y[index]).sum().item()
        row = {"epoch": epoch, "train_loss": loss_sum / len(y), "train_acc": correct / len(y),
               "val_loss": None, "val_acc": None, "lr": lr}
        if val is not None and len(val):
            row["val_loss"], row["val_acc"] = _loss_and_accuracy(head, val)
        row["seconds"] = time.perf_counter() - start
        history.append(row)
    head.eval()
    return head, history


def imprint_head(train: FeatureSet, center: torch.Tensor | None = None) -> nn.Linear:
    """A linear head set from class prototypes instead of trained: *weight imprinting* (chapter 4).

    Features are centred (on ``center``, by default the mean of ``train``) and
    scaled to unit length; each class's weight vector is the normalised mean of
    its photos, so the head scores a photo by its cosine similarity to each
    class prototype (nearest class mean, as in SimpleShot, Wang et al. 2019).
    Centring and the bias fold into one ``nn.Linear`` on the raw features: the
    length of a centred feature vector scales all of a photo's logits alike, so
    the predicted class is the cosine rule's.  Needs no gradient steps, which is
    what makes it strong with one to a few dozen photos per class.
    """
    if len(train) == 0:
        raise ValueError("no training features")
    x = train.features.float().cpu()
    center = x.mean(0) if center is None else center.float().cpu()
    unit = nn.functional.normalize(x - center, dim=1)
    missing = [train.classes[k] for k in range(len(train.classes)) if not (train.labels == k).any()]
    if missing:
        raise ValueError(f"no training features for class(es) {', '.join(missing)}")
    prototypes = torch.stack([unit[train.labels == k].mean(0) for k in range(len(train.classes))])
    prototypes = nn.functional.normalize(prototypes, dim=1)
    head = nn.Linear(x.shape[1], len(train.classes))
    with torch.no_grad():
        head.weight.copy_(prototypes)
        head.bias.copy_(-prototypes @ center)
    return head.eval()


def _loss_and_accuracy(head: nn.Module, fs: FeatureSet) -> tuple[float, float]:
    with torch.inference_mode():
        logits = head(fs.features.float())
        loss = nn.functional.cross_entropy(logits, fs.labels.long()).item()
        return loss, (logits.argmax(1) == fs.labels).float().mean().item()


def predict(head: nn.Module, fs: FeatureSet) -> tuple[torch.Tensor, torch.Tensor]:
    """``(predicted labels, softmax probabilities)`` of a head on a :class:`FeatureSet` (chapter 4)."""
    head.eval()
    with torch.inference_mode():
        probs = head(fs.features.float()).softmax(1)
    return probs.argmax(1), probs


def accuracy(head: nn.Module, fs: FeatureSet) -> float:
    """Share of ``fs`` that ``head`` classifies correctly, in [0, 1] (chapter 4)."""
    if len(fs) == 0:
        raise ValueError("no features to score")
    preds, _ = predict(head, fs)
    return (preds == fs.labels).float().mean().item()
