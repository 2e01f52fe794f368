"""Backbone features computed once and cached on disk (chapters 2–4).

The photos pass through the frozen backbone once (:func:`extract`, a minute or
two for 3,000 photos on two CPU cores); heads are then trained on the stored
features in seconds (:mod:`tlhelpers.heads`).  For a frozen backbone this is
the same model as training the head end to end, only without recomputing the
backbone every epoch.

The cache
---------
One file per (model weights, transform, files, labels, ``key_extra``) in
``cache_dir``, else ``$TLHELPERS_CACHE``, else
``platformdirs.user_cache_dir("tlhelpers")/features``.  Its key hashes

* the model's name and a SHA-256 of every tensor of its ``state_dict`` except
  the head's (so replacing the head keeps the cache; changing any backbone
  weight does not);
* ``repr(transform)`` and its ``antialias`` setting (torchvision transforms
  print their parameters; a ``Lambda`` prints a memory address and so never
  hits the cache again);
* the versions of torch, torchvision, timm and Pillow, which decode, resize
  and compute;
* every file's path relative to the image root, size and modification time
  (``mtime_ns``), and its label and the class names;
* ``key_extra``, for anything else that changes the features.

Files are named ``<model>-<24 hex digits>.features.pt`` and written
atomically (:func:`tlhelpers.runtime.save_atomically`); :func:`clear_cache`
deletes only files so named.  A cache file that cannot be read, is
truncated or does not match its key is reported with a
:class:`FeatureCacheWarning` and recomputed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import pickle
import re
import warnings
import weakref
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import platformdirs
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from tlhelpers import data, runtime, surgery

CACHE_ENV = "TLHELPERS_CACHE"
CACHE_FORMAT = 2
CACHE_SUFFIX = ".features.pt"
_CACHE_NAME = re.compile(r"[A-Za-z0-9_.-]+-[0-9a-f]{24}" + re.escape(CACHE_SUFFIX))
_VERSIONED = ("torch", "torchvision", "timm", "pillow")


class FeatureCacheWarning(UserWarning):
    """A feature cache file was unreadable or stale and is being recomputed."""


@dataclass(repr=False)
class FeatureSet:
    """Backbone features of a set of images.

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
        return FeatureSet(
            self.features[index],
            self.labels[index],
            [self.files[i] for i in index.tolist()],
            list(self.classes),
            {},
            self.root,
        )

    def select(self, images) -> FeatureSet:
        """The rows of the files of ``images`` (an ``ImageSet``), in its order.

        Extract features once for all photos, then take each split or
        n-per-class subset with this instead of extracting again.  Files that
        were skipped as unreadable stay out (and are listed in ``skipped``);
        a file that was never extracted raises ``KeyError``.
        """
        position = {name: i for i, name in enumerate(self.files)}
        wanted = [runtime.shown_path(path, images.root) for path in images.files]
        missing = [name for name in wanted if name not in position and name not in self.skipped]
        if missing:
            raise KeyError(f"{len(missing)} file(s) have no features here, e.g. {missing[0]}")
        chosen = self.subset([position[name] for name in wanted if name in position])
        chosen.skipped = {name: self.skipped[name] for name in wanted if name in self.skipped}
        return chosen

    def __repr__(self) -> str:
        # Machine-independent (no paths), so notebooks can print it.
        return (
            f"FeatureSet({len(self):,} images × {self.dim:,} features: "
            f"{', '.join(self.classes)}; skipped={len(self.skipped)})"
        )


# --------------------------------------------------------------------------- #
# The feature extractor and the cache key
# --------------------------------------------------------------------------- #


_NETWORKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model → {key: its feature network}
GLOBAL_POOLS = ("global_pool", "avgpool")  # timm's and torchvision's global pooling layers
OUTPUTS = ("maps", "pooled", "logits")


def feature_network(model: nn.Module, outputs=("pooled",), head_name: str | None = None) -> nn.Module:
    """``model`` as a module that returns a dict of some of :data:`OUTPUTS` for an image batch.

    ``"pooled"`` is what the head receives, N × D: ResNet-18's 512 pooled
    features, VGG16's 4,096 outputs of ``classifier[:-1]``, timm's
    EfficientNet-Lite0's 1,280 globally pooled features.  ``"maps"`` are the
    last feature maps, N × C × h × w, what the global pooling layer
    (``global_pool`` or ``avgpool``) receives; ``"logits"`` the head's output.
    The head is ``head_name`` (default :func:`tlhelpers.surgery.find_head_name`).
    Built with :func:`tlhelpers.surgery.tap`: it shares the model's weights,
    computes nothing the outputs do not need, and runs the eval-mode graph
    (use it inside :func:`tlhelpers.surgery.evaluating`).
    """
    unknown = set(outputs) - set(OUTPUTS)
    if unknown:
        raise ValueError(f"unknown outputs {sorted(unknown)}; choose from {OUTPUTS}")
    # Tracing takes a few tenths of a second, and class activation maps and
    # Classifier.rank ask once per photo: a model keeps its networks while its
    # modules are the same objects (the networks hold them, so no id is reused).
    modules = tuple(map(id, model.modules()))
    built = _NETWORKS.get(model)
    if built is None or built["modules"] != modules:  # new, or a module was replaced
        built = _NETWORKS[model] = {"modules": modules}
    key = (tuple(outputs), head_name)
    if key not in built:
        built[key] = _build_feature_network(model, outputs, head_name)
    return built[key]


def _build_feature_network(model: nn.Module, outputs, head_name: str | None) -> nn.Module:
    nodes = surgery.graph_nodes(model)
    wanted = {}
    for output in outputs:
        if output == "maps":
            pool = next((name for name in GLOBAL_POOLS if isinstance(getattr(model, name, None), nn.Module)), None)
            if pool is None:
                raise ValueError(f"{type(model).__name__} has no global pooling layer ({' or '.join(GLOBAL_POOLS)})")
            node = surgery.input_node(model, pool, nodes)
        else:
            head = head_name or surgery.find_head_name(model)
            node = surgery.input_node(model, head, nodes) if output == "pooled" else head
        wanted[node] = output
    return surgery.tap(model, wanted)


def pooled_features(model: nn.Module, x: torch.Tensor, head_name: str | None = None) -> torch.Tensor:
    """What the head of ``model`` receives for the batch ``x``, as N × D.

    :func:`feature_network`'s ``"pooled"`` output, for one batch: the model
    runs as it is (device, no copy) with the eval-mode graph; for many
    batches build the network once, as :func:`extract` does.
    """
    return feature_network(model, ("pooled",), head_name)(x)["pooled"].flatten(1)


def embed(backbone, pictures) -> torch.Tensor:
    """The feature vectors of PIL pictures, one row each, in one batch.

    ``backbone`` is a :class:`tlhelpers.zoo.Backbone`: its evaluation
    preprocessing, then :func:`pooled_features` on the model's device, in eval
    mode; the model's mode is restored afterwards.  For a few pictures (an
    upload, resaved copies); folders of photos go through :func:`extract`
    and its cache.
    """
    batch = torch.stack([backbone.transforms(picture) for picture in pictures])
    with surgery.evaluating(backbone.model) as device, torch.inference_mode():
        return pooled_features(backbone.model, batch.to(device), backbone.head_name).cpu()


def model_fingerprint(model: nn.Module, skip: str | None = None) -> str:
    """SHA-256 of the names, shapes, dtypes and values of the ``state_dict`` tensors.

    Tensors of the module ``skip`` (a head, say) are left out.  Hashing is fast
    (VGG16's 528 MB in about half a second) next to a pass over the photos, and
    unlike a sample of the weights it changes with any fine-tuning step.
    Used by the feature cache and by saved classifiers.
    """
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if skip is not None and surgery.matches(name, skip):
            continue
        tensor = tensor.detach()
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype};".encode())
        flat = tensor.cpu().contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy() if flat.numel() else b"")
    return digest.hexdigest()


def _library_versions() -> str:
    found = []
    for package in _VERSIONED:
        try:
            found.append(f"{package}={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{package}=none")
    return ",".join(found)


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
    antialias = f"antialias={getattr(transform, 'antialias', None)}"
    for part in (
        f"format={CACHE_FORMAT}",
        name,
        fingerprint,
        repr(transform),
        antialias,
        _library_versions(),
        repr(list(images.classes)),
        key_extra,
    ):
        digest.update(part.encode() + b"\0")
    for path, label in zip(images.files, images.labels):
        size, mtime = _file_identity(Path(path))
        digest.update(f"{runtime.shown_path(path, images.root)}|{size}|{mtime}|{int(label)}\n".encode())
    return digest.hexdigest()


def cache_path(directory: Path, name: str, key: str) -> Path:
    """The cache file for ``key``: readable model name plus the start of the key."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "model"
    return Path(directory) / f"{safe}-{key[:24]}{CACHE_SUFFIX}"


def _load_cached(path: Path, key: str, files: list[str]) -> dict | None:
    """The payload stored at ``path`` if it is complete and belongs to ``key``, else ``None`` (warned)."""
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        # truncated zip, pickle garbage, permission …
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
    if (
        features.ndim != 2
        or features.dtype != torch.float32
        or features.shape[0] != kept
        or labels.shape != (kept,)
        or kept + len(payload["skipped"]) != len(files)
    ):
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


def extraction_batch_size(device: torch.device | str) -> int:
    """Photos per batch for :func:`extract` on ``device``: 8 on a CPU, 64 elsewhere.

    A CPU is fastest when a batch's activations fit in its caches: on two
    cores, channels-last EfficientNet-Lite0 extracts about twice as many
    photos per second in batches of 8 as in batches of 64 (ResNet-18 about
    an eighth more).  A GPU needs large batches to be busy.
    """
    return 8 if torch.device(device).type == "cpu" else 64


def extract(
    model,
    images,
    transform: Callable | None = None,
    *,
    name: str | None = None,
    head_name: str | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    key_extra: str = "",
    batch_size: int | None = None,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> FeatureSet:
    """Penultimate-layer features of every image of ``images`` (an ``ImageSet``), cached on disk.

    ``model`` is an ``nn.Module`` or a :class:`tlhelpers.zoo.Backbone`, whose
    ``transforms``, ``name`` and ``head_name`` are then the defaults of
    ``transform``, ``name`` and ``head_name``.  The features are what the head
    receives (:func:`feature_network`), computed in eval mode under
    ``torch.inference_mode()`` in float32 on ``device`` (default: the
    model's; the chapters pass :func:`tlhelpers.runtime.pick_device`), with
    the model's device and modes put back afterwards
    (:func:`tlhelpers.surgery.evaluating`), channels-last where that is faster
    (:func:`tlhelpers.surgery.prefers_channels_last`), in batches of
    ``batch_size`` photos (default :func:`extraction_batch_size`), with a
    ``tqdm.auto`` progress bar.  Unreadable
    files are skipped, with a warning from :mod:`tlhelpers.data`, and listed
    in ``skipped``.  A second call with the same inputs reads the cache
    instead (``from_cache`` is then ``True``); ``cache=False`` never reads or
    writes it.
    """
    if hasattr(model, "model") and hasattr(model, "transforms"):  # a zoo.Backbone
        transform = transform or model.transforms
        name = name or model.name
        head_name = head_name or model.head_name
        model = model.model
    if transform is None:
        raise ValueError("pass the transform that prepares the images for this model")
    name = name or type(model).__name__
    head_name = head_name or surgery.find_head_name(model)
    all_files = [runtime.shown_path(path, images.root) for path in images.files]

    path = key = None
    if cache:
        key = cache_key(name, model_fingerprint(model, skip=head_name), transform, images, key_extra)
        path = cache_path(resolve_cache_dir(cache_dir), name, key)
        payload = _load_cached(path, key, all_files)
        if payload is not None:
            return FeatureSet(
                payload["features"],
                payload["labels"],
                list(payload["files"]),
                list(payload["classes"]),
                dict(payload["skipped"]),
                Path(images.root),
                path,
                from_cache=True,
            )

    device = torch.device(device) if device is not None else surgery.model_device(model)
    batch_size = batch_size or extraction_batch_size(device)
    channels_last = surgery.prefers_channels_last(device)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    dataset = data.ImageDataset(images, transform)
    # A generator of its own keeps the loader from drawing on the global random stream, so the
    # random numbers after an extraction are the same whether the cache was warm or cold.
    loader = DataLoader(
        _Indexed(dataset),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=data.collate_skipping,
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),
    )
    chunks, labels, kept = [], [], []
    with surgery.evaluating(model, device, channels_last), torch.inference_mode():
        network = feature_network(model, ("pooled",), head_name)
        for batch in tqdm(loader, desc=f"features ({name})", leave=False, disable=not progress):
            if batch is None:
                continue
            x, y, index = batch
            x = x.to(device, memory_format=layout)
            chunks.append(network(x)["pooled"].flatten(1).float().cpu())
            labels.append(y.long())
            kept.extend(index.tolist())
    kept_set = set(kept)
    skipped = {
        all_files[i]: dataset.skipped.get(Path(images.files[i]), "unreadable")
        for i in range(len(all_files))
        if i not in kept_set
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
        runtime.save_atomically(
            {
                "format": CACHE_FORMAT,
                "key": key,
                "name": name,
                "features": result.features,
                "labels": result.labels,
                "files": result.files,
                "classes": result.classes,
                "skipped": result.skipped,
                "all_files": all_files,
            },
            path,
        )
    return result


def clear_cache(cache_dir: str | os.PathLike | None = None) -> int:
    """Delete the feature files this cache wrote; returns how many.

    Only files named like the cache's own (``<model>-<24 hex digits>.features.pt``,
    and their unfinished temporary files) are removed: anything else in the
    folder, such as a user's own ``.pt`` files when ``$TLHELPERS_CACHE`` points
    at a shared folder, is left alone.
    """
    removed = 0
    folder = resolve_cache_dir(cache_dir)
    if not folder.is_dir():
        return 0
    for path in folder.iterdir():
        if path.is_file() and _written_by_cache(path.name):
            path.unlink()
            removed += 1
    return removed


def _written_by_cache(name: str) -> bool:
    if name.startswith(".") and name.endswith(".tmp"):  # ".<file>.<random>.tmp" of save_atomically
        name = name[1 : -len(".tmp")].rpartition(".")[0]
    return _CACHE_NAME.fullmatch(name) is not None
