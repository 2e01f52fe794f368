"""Linear heads on stored backbone features: train, imprint, predict, evaluate (chapters 2–4).

A *head* here is the ``nn.Linear(D, classes)`` that turns the features of
:func:`tlhelpers.features.extract` (a :class:`~tlhelpers.features.FeatureSet`)
into class scores.  :func:`fit_linear` trains one with
:func:`tlhelpers.train.fit` on the stored features, in seconds on the CPU;
:func:`imprint` sets one from class means without any training;
:func:`predict` and :func:`evaluate` score one, with the same return shapes as
their :mod:`tlhelpers.train` namesakes.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler, TensorDataset

from tlhelpers import runtime, train
from tlhelpers.features import FeatureSet
from tlhelpers.train import History

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
