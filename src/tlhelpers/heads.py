"""Heads on the backbone's features: linear heads on stored features, and a classifier kept in one file.

**Linear heads.**  A *head* here is the ``nn.Linear(D, classes)`` that turns
the features of :func:`tlhelpers.features.extract` (a
:class:`~tlhelpers.features.FeatureSet`) into class scores.
:func:`fit_linear` trains one with :func:`tlhelpers.train.fit` on the stored
features, in seconds on the CPU; :func:`imprint` sets one from class means
without any training; :func:`predict` and :func:`evaluate` score one, with
the same return shapes as their :mod:`tlhelpers.train` namesakes.

**A classifier in one file.**  :class:`Classifier` puts a zoo backbone and a
trained head together, ranks the classes of photos, and saves the result.
The file
--------
:meth:`Classifier.save` writes only what the zoo cannot rebuild: the head's
weights, the class names, the name of the backbone that actually ran (so a
head trained on the EfficientNet-Lite0 fallback names ``efficientnet_lite0``
and loads offline), the preprocessing, and a SHA-256 of the backbone's
weights.  :meth:`Classifier.load` takes the backbone from
:mod:`tlhelpers.zoo` again and refuses to go on when its preprocessing or
weights are not those the head was trained on.  The backbone is therefore
assumed to be the zoo's pretrained one, unchanged.  A classifier whose
backbone was fine-tuned (``fine_tuned=True``, written by ``python -m
tlhelpers train --fine-tune last-block``) keeps the backbone's weights too,
in a file of format version 2; :meth:`Classifier.load` puts them into the
zoo's architecture and checks them against their SHA-256.  The file is a ``torch.save`` of plain data and
tensors (no pickled modules), readable with ``torch.load(weights_only=True)``.
:meth:`Classifier.load` also reads the same fields written as JSON (a
``.json`` file, the head as nested lists): the file that the book's page
downloads after a reader taught it classes of their own (chapter 4).
"""

from __future__ import annotations

import copy
import json
import math
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Sampler, TensorDataset

from tlhelpers import data, features, runtime, surgery, train, zoo
from tlhelpers.features import FeatureSet
from tlhelpers.train import History

# --------------------------------------------------------------------------- #
# Linear heads on stored features
# --------------------------------------------------------------------------- #

EVAL_BATCH = 4096  # scoring stored features needs no small batches


class _Batches(Sampler):
    """Index tensors of whole batches: in order, or shuffled by ``generator`` once per epoch."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator | None = None):
        self.n, self.batch_size, self.generator = n, batch_size, generator

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator) if self.generator is not None else torch.arange(self.n)
        for begin in range(0, self.n, self.batch_size):
            yield order[begin : begin + self.batch_size]


def _loader(fs: FeatureSet, batch_size: int, generator: torch.Generator | None = None) -> DataLoader:
    """Batches of ``(features, labels)`` sliced straight from the tensors (no per-row collation)."""
    dataset = TensorDataset(fs.features.float().cpu(), fs.labels.long().cpu())
    # The loader's own generator keeps it from drawing a seed from the global random stream.
    return DataLoader(
        dataset, sampler=_Batches(len(dataset), batch_size, generator), batch_size=None, generator=torch.Generator()
    )


def fit_linear(
    train_features: FeatureSet,
    val_features: FeatureSet | None = None,
    *,
    epochs: int = 30,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    optimizer: str = "adam",
    momentum: float = 0.9,
    batch_size: int = 64,
    seed: int = 0,
) -> tuple[nn.Linear, History]:
    """Train ``nn.Linear(D, classes)`` on stored features, on the CPU in seconds.

    Mini-batch cross-entropy with Adam (or SGD with ``momentum``) through
    :func:`tlhelpers.train.fit`; the initial weights and the batch order come
    from ``seed`` alone, so the same seed gives the same head, without touching
    the global random state.  Returns the head (in eval mode) and the
    :class:`~tlhelpers.train.History` (with ``val_features``, ``val_loss`` and
    ``val_acc`` per epoch).
    """
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', not {optimizer!r}")
    if len(train_features) == 0:
        raise ValueError("no training features")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Linear(train_features.dim, len(train_features.classes))
    if optimizer == "adam":
        opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    train_loader = _loader(train_features, batch_size, torch.Generator().manual_seed(seed))
    val_loader = _loader(val_features, EVAL_BATCH) if val_features is not None and len(val_features) else None
    with runtime.threads(1):
        history = train.fit(
            head,
            train_loader,
            val_loader,
            epochs=epochs,
            optimizer=opt,
            device="cpu",
            amp=False,
            channels_last=False,
            progress=False,
        )
    return head, history


def imprint(train_features: FeatureSet, center: torch.Tensor | None = None) -> nn.Linear:
    """A linear head set from class prototypes instead of trained: *weight imprinting*.

    Features are centred (on ``center``, by default the mean of
    ``train_features``) and scaled to unit length; each class's weight vector
    is the normalised mean of its photos, so the head scores a photo by its
    cosine similarity to each class prototype (nearest class mean, as in
    SimpleShot, Wang et al. 2019).  Centring and the bias fold into one
    ``nn.Linear`` on the raw features: the length of a centred feature vector
    scales all of a photo's logits alike, so the predicted class is the cosine
    rule's.  Needs no gradient steps, which is what makes it strong with one
    to a few dozen photos per class.
    """
    if len(train_features) == 0:
        raise ValueError("no training features")
    x, labels, classes = train_features.features.float().cpu(), train_features.labels, train_features.classes
    center = x.mean(0) if center is None else center.float().cpu()
    unit = nn.functional.normalize(x - center, dim=1)
    missing = [classes[k] for k in range(len(classes)) if not (labels == k).any()]
    if missing:
        raise ValueError(f"no training features for class(es) {', '.join(missing)}")
    prototypes = torch.stack([unit[labels == k].mean(0) for k in range(len(classes))])
    prototypes = nn.functional.normalize(prototypes, dim=1)
    head = nn.Linear(x.shape[1], len(classes))
    with torch.no_grad():
        head.weight.copy_(prototypes)
        head.bias.copy_(-prototypes @ center)
    return head.eval()


def _check_width(head: nn.Module, fs: FeatureSet) -> None:
    expected = getattr(head, "in_features", None)
    if expected is not None and fs.dim != expected:
        raise ValueError(
            f"the head takes {expected} features, but these have {fs.dim}: "
            "they come from another backbone (or another layer) than the head was trained on"
        )


def leave_one_out(train_features: FeatureSet) -> tuple[int, int]:
    """``(correct, counted)``: each photo classified by the prototype head of all the others.

    The accuracy a prototype head (:func:`imprint`) will have on new photos,
    estimated from its training photos alone: every photo is left out once
    and classified by the head imprinted on the rest.  A photo that is the
    only one of its class is not counted (no prototype would be left for it).
    The book's page computes the same live, as a reader adds photos.
    """
    counts = torch.bincount(train_features.labels, minlength=len(train_features.classes))
    correct = counted = 0
    for i in range(len(train_features)):
        if counts[train_features.labels[i]] < 2:
            continue
        others = torch.ones(len(train_features), dtype=torch.bool)
        others[i] = False
        head = imprint(train_features.subset(others))
        with torch.inference_mode():
            guess = head(train_features.features[i : i + 1].float()).argmax(1).item()
        correct += int(guess == train_features.labels[i].item())
        counted += 1
    return correct, counted


def predict(head: nn.Module, fs: FeatureSet) -> tuple[torch.Tensor, torch.Tensor]:
    """``(predicted labels, softmax probabilities)`` of ``head`` on the features ``fs``."""
    _check_width(head, fs)
    head.eval()
    with torch.inference_mode():
        probabilities = head(fs.features.float()).softmax(1)
    return probabilities.argmax(1), probabilities


def evaluate(head: nn.Module, fs: FeatureSet) -> dict:
    """Mean loss and accuracy of ``head`` on the features ``fs``: ``{"loss", "acc", "n"}``.

    ``acc`` is the share classified correctly, in [0, 1].
    """
    if len(fs) == 0:
        raise ValueError("no features to score")
    _check_width(head, fs)
    return train.evaluate(head, _loader(fs, EVAL_BATCH), device="cpu", amp=False)


# --------------------------------------------------------------------------- #
# A backbone plus a trained head, in one file
# --------------------------------------------------------------------------- #


FORMAT = "tlhelpers.classifier"
FORMAT_VERSION = 1
FINE_TUNED_VERSION = 2  # the same fields plus "backbone_state": the fine-tuned backbone's weights


class ClassifierFileError(RuntimeError):
    """A classifier file is missing, unreadable, of another format or does not fit its backbone."""


def preprocessing(transforms) -> dict:
    """The parameters of a torchvision ``ImageClassification`` preset as plain data."""
    try:
        return {
            "crop_size": [int(v) for v in transforms.crop_size],
            "resize_size": [int(v) for v in transforms.resize_size],
            "mean": [float(v) for v in transforms.mean],
            "std": [float(v) for v in transforms.std],
            "interpolation": transforms.interpolation.value,
        }
    except (AttributeError, TypeError) as error:
        raise TypeError(
            f"{type(transforms).__name__} is not a torchvision ImageClassification preset; "
            "only classifiers on tlhelpers.zoo backbones can be saved"
        ) from error


def _same_preprocessing(a: dict, b: dict) -> bool:
    floats_match = all(
        len(a[key]) == len(b[key]) and all(math.isclose(x, y, rel_tol=1e-6) for x, y in zip(a[key], b[key]))
        for key in ("mean", "std")
    )
    return floats_match and all(a[key] == b[key] for key in ("crop_size", "resize_size", "interpolation"))


def _picture(item) -> Image.Image:
    if isinstance(item, Image.Image):
        return item if item.mode == "RGB" else data.to_rgb(item)
    return data.load_rgb(item)


@dataclass(eq=False)
class Classifier:
    """A pretrained zoo backbone with a linear head trained on its pooled features.

    ``backbone`` is the :class:`tlhelpers.zoo.Backbone` whose features the head
    was trained on (``backbone.name`` is the model that ran, ``requested`` the
    one asked for); ``head`` is an ``nn.Linear(features, len(classes))`` as
    returned by :func:`fit_linear`; ``classes`` are the class
    names in label order.  ``split`` records how the training photos were
    split (``{"seed": 0, "val": 0.15, "test": 0.15}``), so that later steps
    (``export --calibration``) use training photos only; ``None`` when unknown.
    ``fine_tuned`` says that ``backbone.model``'s weights are no longer the
    zoo's, so :meth:`save` stores them as well.
    """

    backbone: zoo.Backbone
    head: nn.Linear
    classes: list[str]
    split: dict | None = None  # the training run's split: {"seed", "val", "test"} of tlhelpers.data.split
    fine_tuned: bool = False

    def __post_init__(self) -> None:
        self.classes = [str(name) for name in self.classes]
        if not isinstance(self.head, nn.Linear):
            raise TypeError(f"head must be an nn.Linear, not {type(self.head).__name__}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"class names must be unique: {self.classes}")
        if self.head.out_features != len(self.classes):
            raise ValueError(f"the head has {self.head.out_features} outputs for {len(self.classes)} classes")
        features = self.backbone.model.get_submodule(self.backbone.head_name).in_features
        if self.head.in_features != features:
            raise ValueError(
                f"the head takes {self.head.in_features} features, but {self.backbone.label} "
                f"gives {features}; it was trained on another backbone"
            )

    def __repr__(self) -> str:
        return f"Classifier({self.backbone.label}: {', '.join(self.classes)})"

    def model(self) -> nn.Module:
        """A copy of the backbone with ``head`` in place of its ImageNet head, in eval mode.

        The result is an ordinary ``nn.Module`` that maps normalised image
        batches to class logits; changing it changes nothing here.
        """
        model = copy.deepcopy(self.backbone.model)
        new_head = surgery.replace_head(model, len(self.classes), self.backbone.head_name)
        new_head.load_state_dict(self.head.state_dict())
        return model.eval()

    def rank(self, pictures, k: int | None = None, batch_size: int = 32) -> list[list[tuple[str, float]]]:
        """``[(class, probability), …]`` per image, most likely first: all classes, or the top ``k``.

        ``pictures`` are file paths (read with :func:`tlhelpers.data.load_rgb`,
        which raises :class:`~tlhelpers.data.UnreadableImage` for a bad file) or
        PIL pictures; a single path or image counts as a list of one.  Runs in
        eval mode under ``torch.inference_mode()`` in batches of ``batch_size``,
        on the device the backbone is on, without copying the backbone: its
        features (:func:`tlhelpers.features.feature_network`) go through
        ``head``.
        """
        if isinstance(pictures, (str, os.PathLike, Image.Image)):
            pictures = [pictures]
        pictures = list(pictures)
        k = len(self.classes) if k is None else k
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        k = min(k, len(self.classes))
        model = self.backbone.model
        results = []
        # The backbone's features go through our head: no copy of the
        # backbone is needed (VGG16's would cost 528 MB).
        with surgery.evaluating(model) as device, torch.inference_mode():
            network = features.feature_network(model, ("pooled",), self.backbone.head_name)
            head = copy.deepcopy(self.head).to(device)
            for start in range(0, len(pictures), batch_size):
                chunk = [_picture(item) for item in pictures[start : start + batch_size]]
                batch = torch.stack([self.backbone.transforms(picture) for picture in chunk])
                pooled = network(batch.to(device))["pooled"].flatten(1)
                probabilities = head.to(pooled.dtype)(pooled).float().softmax(1).cpu()
                top = probabilities.topk(k, dim=1)
                for values, indices in zip(top.values.tolist(), top.indices.tolist()):
                    results.append([(self.classes[i], p) for i, p in zip(indices, values)])
        return results

    def save(self, path: str | os.PathLike) -> Path:
        """Write the classifier to ``path`` (one small file, atomically); returns the path.

        See the module docstring for what the file holds.  Raises ``TypeError``
        when the backbone is not a :mod:`tlhelpers.zoo` model (it could not be
        rebuilt on loading).
        """
        from tlhelpers import __version__

        if self.backbone.name not in zoo.NAMES:
            raise TypeError(f"{self.backbone.name!r} is not a tlhelpers.zoo model, so it could not be loaded again")
        payload = {
            "format": FORMAT,
            "format_version": FINE_TUNED_VERSION if self.fine_tuned else FORMAT_VERSION,
            "backbone": self.backbone.name,
            "requested": self.backbone.requested,
            "backbone_sha256": features.model_fingerprint(self.backbone.model, skip=self.backbone.head_name),
            "head": {name: tensor.detach().cpu().clone() for name, tensor in self.head.state_dict().items()},
            "classes": list(self.classes),
            "preprocessing": preprocessing(self.backbone.transforms),
            "tlhelpers_version": __version__,
        }
        if self.split is not None:
            payload["split"] = {
                "seed": int(self.split["seed"]),
                "val": float(self.split["val"]),
                "test": float(self.split["test"]),
            }
        if self.fine_tuned:
            payload["backbone_state"] = {
                name: tensor.detach().cpu().clone()
                for name, tensor in self.backbone.model.state_dict().items()
                if not surgery.matches(name, self.backbone.head_name)
            }
        return runtime.save_atomically(payload, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Classifier:
        """Read a file written by :meth:`save` and rebuild the classifier.

        The backbone comes from ``zoo.load(<the name that ran>)``.  Raises
        :class:`ClassifierFileError` (naming the file) when it is missing,
        truncated, not a classifier file, of an unknown format version or
        inconsistent, and when the backbone's preprocessing or weights differ
        from those at saving time.  Raises :class:`tlhelpers.zoo.WeightsUnavailable`
        when the backbone's weights are not available here, or when the zoo
        would substitute the fallback (a head fits only the backbone it was
        trained on).
        """
        path = Path(path)
        payload = _read_payload(path)
        name = payload["backbone"]
        try:
            backbone = zoo.load(name)
        except zoo.WeightsUnavailable as error:
            raise type(error)(f"{path} needs the {zoo.title(name)} backbone. {error}") from error
        if backbone.name != name:
            raise zoo.WeightsUnavailable(
                f"{path} holds a head trained on {zoo.title(name)} features, but here {backbone.source} "
                f"A head fits only the backbone it was trained on; unset {runtime.FORCE_FALLBACK_ENV} "
                f"or make the {zoo.title(name)} weights available."
            )
        if "backbone_state" in payload:  # fine-tuned: the weights come from the file
            try:
                backbone.model.load_state_dict(payload["backbone_state"], strict=False)
            except RuntimeError as error:
                raise ClassifierFileError(
                    f"{path} holds backbone weights that do not fit {zoo.title(name)}: {str(error).splitlines()[0]}"
                ) from error
        here = preprocessing(backbone.transforms)
        if not _same_preprocessing(here, payload["preprocessing"]):
            raise ClassifierFileError(
                f"{path} was saved with the preprocessing {payload['preprocessing']}, but "
                f"{zoo.title(name)} here uses {here}; its predictions would be wrong."
            )
        if features.model_fingerprint(backbone.model, skip=backbone.head_name) != payload["backbone_sha256"]:
            raise ClassifierFileError(
                f"The {zoo.title(name)} weights here are not those the head in {path} was trained on "
                "(was the backbone fine-tuned or converted before saving? The file keeps only the head)."
            )
        state = payload["head"]
        out_features, in_features = state["weight"].shape
        head = nn.Linear(in_features, out_features, bias="bias" in state)
        head.load_state_dict(state)
        try:
            return cls(
                backbone,
                head.eval(),
                list(payload["classes"]),
                split=payload.get("split"),
                fine_tuned="backbone_state" in payload,
            )
        except ValueError as error:
            raise ClassifierFileError(f"{path} does not fit {zoo.title(name)}: {error}") from error


def _read_payload(path: Path) -> dict:
    if not path.exists():
        raise ClassifierFileError(f"Classifier file not found: {path}")
    if not path.is_file():
        raise ClassifierFileError(f"{path} is a folder, not a classifier file")
    if path.suffix.lower() == ".json":
        return _read_json_payload(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError as error:
        raise ClassifierFileError(f"{path} cannot be read: permission denied") from error
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        # truncated zip, pickle garbage, pickled modules (refused by weights_only) …
        raise ClassifierFileError(
            f"{path} cannot be read as a classifier file ({type(error).__name__}); it is truncated, "
            "corrupt, or was not written by Classifier.save."
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ClassifierFileError(
            f"{path} is not a classifier file (it holds a {type(payload).__name__} without the "
            f"{FORMAT!r} marker); write one with Classifier.save."
        )
    version = payload.get("format_version")
    if version not in (FORMAT_VERSION, FINE_TUNED_VERSION):
        raise ClassifierFileError(
            f"{path} has classifier format version {version!r} (written by tlhelpers "
            f"{payload.get('tlhelpers_version', '?')}); this tlhelpers reads versions {FORMAT_VERSION} "
            f"and {FINE_TUNED_VERSION} only."
        )
    if (version == FINE_TUNED_VERSION) != isinstance(payload.get("backbone_state"), dict):
        raise ClassifierFileError(
            f"{path} has classifier format version {version!r} but "
            + (
                "no backbone weights; it is incomplete."
                if version == FINE_TUNED_VERSION
                else "backbone weights; it is inconsistent."
            )
        )
    problem = _payload_problem(payload)
    if problem:
        raise ClassifierFileError(f"{path} is not a valid classifier file: {problem}.")
    return payload


def _read_json_payload(path: Path) -> dict:
    """The same payload written as JSON, with the head as nested lists: what the book's page downloads."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ClassifierFileError(f"{path} is not a JSON classifier file ({error}).") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ClassifierFileError(f"{path} is JSON without the {FORMAT!r} marker; it is not a classifier file.")
    head = payload.get("head")
    if isinstance(head, dict):
        try:
            payload["head"] = {name: torch.tensor(value, dtype=torch.float32) for name, value in head.items()}
        except (TypeError, ValueError) as error:
            raise ClassifierFileError(f"{path} has a head that is not a matrix of numbers ({error}).") from error
    if payload.get("format_version") != FORMAT_VERSION:
        raise ClassifierFileError(
            f"{path} has classifier format version {payload.get('format_version')!r}; "
            f"this tlhelpers reads version {FORMAT_VERSION} only."
        )
    problem = _payload_problem(payload)
    if problem:
        raise ClassifierFileError(f"{path} is not a valid classifier file: {problem}.")
    return payload


def _payload_problem(payload: dict) -> str | None:
    expected = {"backbone", "requested", "backbone_sha256", "head", "classes", "preprocessing"}
    if not expected <= set(payload):
        return f"it lacks {sorted(expected - set(payload))}"
    if payload["backbone"] not in zoo.NAMES:
        return f"its backbone {payload['backbone']!r} is not one of {', '.join(zoo.NAMES)}"
    head, classes = payload["head"], payload["classes"]
    if not isinstance(head, dict) or not {"weight"} <= set(head) <= {"weight", "bias"}:
        return "its head is not the state dict of an nn.Linear"
    weight, bias = head["weight"], head.get("bias")
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        return "its head has no weight matrix"
    if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != weight.shape[:1]):
        return "its head's bias does not match the weight"
    if not isinstance(classes, list) or len(classes) != weight.shape[0]:
        count = len(classes) if isinstance(classes, list) else "no"
        return f"it names {count} classes for a head with {weight.shape[0]} outputs"
    if not isinstance(payload["preprocessing"], dict) or not {
        "crop_size",
        "resize_size",
        "mean",
        "std",
        "interpolation",
    } <= set(payload["preprocessing"]):
        return "its preprocessing is incomplete"
    return None
