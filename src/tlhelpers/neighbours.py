"""What features alone tell: search, k-NN, near-duplicates, unusual photos, label issues (chapters 4 and 6).

A pretrained backbone maps photos that look alike to feature vectors that
point in similar directions, so the cosine similarity of two feature vectors
is a measure of how alike two photos look.  Everything here is exact: one
matrix product between unit-length vectors, done in blocks so that memory
stays bounded (:class:`IVFIndex` is the approximate search for collections
too large for that).

Features are optionally centred first (on the mean of the collection searched):
the features of a backbone that ends in a ReLU are all positive, so the raw
cosine similarity of any two photos is high; centring spreads the scale out
without changing which photos are nearest.

A near-duplicate (the same photo, re-cropped, resized or re-compressed) is
found in two steps: the backbone's similarity proposes pairs, the pixels of
small thumbnails confirm them; :func:`duplicate_rule` sets both thresholds
from resaved copies of the photos, for the backbone at hand.

**Out-of-distribution scores**: photos that belong to none of the classes (chapter 6).

Every score here is *higher for a more unusual photo*, so one rule reads
them all: flag a photo when its score is above a threshold.  :func:`auroc`
measures how well a score separates the known from the unknown without
choosing a threshold.

* :func:`max_softmax` — one minus the classifier's top probability
  (Hendrycks & Gimpel, 2017): the head's own doubt.
* :func:`knn_distance` — how far a photo is, in feature space, from its k-th
  nearest training photo (Sun et al., 2022): nothing like it was seen.

**Searching millions of feature vectors**: exact search against an approximate index (chapter 6).

Exact search compares a query with every stored vector: N·d multiply-adds
per query, one matrix product, right for thousands of photos.  An *inverted
file* index (IVF, from ``faiss``) first sorts the vectors into ``nlist``
clusters with k-means; a query is compared with the ``nlist`` cluster centres
and then only with the vectors of its ``nprobe`` nearest clusters, about
``nlist·d + N·d·nprobe/nlist`` multiply-adds.  With ``nlist ≈ √N`` that grows
like √N instead of N, at the price of a k-means when the index is built and
of neighbours that lie in a cluster it did not visit (recall below 1).

:func:`scaling_sweep` measures both on synthetic features; the chapter runs
it at small sizes and ``benchmarks/run.py`` up to a million vectors.

**Label issues**: photos whose label is probably wrong, by out-of-fold probabilities and confident learning
(chapter 6).

A model can only judge a label it was not trained on, so each photo's class
probabilities come from a head trained on the *other* folds of a stratified
k-fold split (:func:`out_of_fold_probabilities`).  :func:`find` then asks
``cleanlab`` (Northcutt et al., 2021) which labels disagree with those
probabilities more than the model's typical confidence in each class
explains, most suspicious first.  The result is a list of photos to *look at*:
some are wrong labels, some are ambiguous photos, some are the model's mistakes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image

from tlhelpers import augment, data, features, optional, runtime

BLOCK = 4096  # queries per matrix product: bounds the similarity block in memory
THUMBNAIL = 32  # side of the grey thumbnails whose pixels are compared


def normalise(x: torch.Tensor, center: torch.Tensor | None = None) -> torch.Tensor:
    """Rows of ``x`` (minus ``center``) scaled to unit length, as float32."""
    x = torch.as_tensor(x).float()
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D tensor (photos × features), not shape {tuple(x.shape)}")
    if center is not None:
        x = x - torch.as_tensor(center).float()
    return torch.nn.functional.normalize(x, dim=1)


def search(
    *,
    queries: torch.Tensor,
    keys: torch.Tensor,
    k: int = 10,
    center: torch.Tensor | None = None,
    exclude_self: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` keys most similar to each query: ``(similarities, indices)``, best first.

    Exact cosine-similarity search.  ``exclude_self=True`` is for searching a
    collection with its own members as queries (``queries`` is ``keys``): the
    query itself is then not its own nearest neighbour.  ``k`` is reduced to the
    number of keys available.
    """
    q, x = normalise(queries, center), normalise(keys, center)
    if q.shape[1] != x.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} features, keys {x.shape[1]}")
    if exclude_self and len(q) != len(x):
        raise ValueError("exclude_self needs the queries to be the keys themselves")
    k = min(k, len(x) - int(exclude_self))
    if k < 1:
        raise ValueError("no keys to search")
    sims, idx = [], []
    for begin in range(0, len(q), BLOCK):
        block = q[begin : begin + BLOCK] @ x.T
        if exclude_self:
            rows = torch.arange(len(block))
            block[rows, rows + begin] = -float("inf")
        top = block.topk(k, dim=1)
        sims.append(top.values)
        idx.append(top.indices)
    return torch.cat(sims), torch.cat(idx)


def knn_predict(
    *,
    queries: torch.Tensor,
    keys: torch.Tensor,
    key_labels: torch.Tensor,
    k: int = 10,
    num_classes: int | None = None,
    center: torch.Tensor | None = None,
    exclude_self: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-nearest-neighbour classification: ``(predicted labels, class scores)``.

    Each of the ``k`` most similar labelled photos (``keys``, labels
    ``key_labels``) votes for its label with its cosine similarity as the
    weight (clamped at 0); the scores are the votes divided by their sum, one
    row per query.  No training at all: adding a labelled photo to ``keys``
    changes the classifier at once.
    ``num_classes`` defaults to the highest label + 1; pass it when a class
    may have no training photo, so that the scores have a column for it.
    """
    labels = torch.as_tensor(key_labels).long()
    if len(labels) != len(keys):
        raise ValueError(f"{len(keys)} labelled features but {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError("no training features to vote")
    if labels.min() < 0:
        raise ValueError(f"labels must be class indices from 0, got {int(labels.min())}")
    highest = int(labels.max())
    if num_classes is None:
        num_classes = highest + 1  # classes above the highest label cannot be predicted: pass num_classes
    elif highest >= num_classes:
        raise ValueError(f"a label is {highest}, but num_classes is {num_classes}")
    sims, idx = search(queries=queries, keys=keys, k=k, center=center, exclude_self=exclude_self)
    votes = torch.zeros(len(sims), num_classes)
    votes.scatter_add_(1, labels[idx], sims.clamp(min=0) + 1e-6)  # the epsilon: all-negative rows still vote
    scores = votes / votes.sum(1, keepdim=True)
    return scores.argmax(1), scores


def nearest(
    *, queries: torch.Tensor, keys: torch.Tensor, center: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query, its most similar key: ``(similarity, index)``."""
    sims, idx = search(queries=queries, keys=keys, k=1, center=center)
    return sims[:, 0], idx[:, 0]


def duplicate_pairs(
    *,
    queries: torch.Tensor,
    keys: torch.Tensor | None = None,
    threshold: float,
    center: torch.Tensor | None = None,
) -> list[tuple[int, int, float]]:
    """Pairs of photos whose cosine similarity is at least ``threshold``, most similar first.

    Within one collection (``keys=None``) each pair ``(i, j, similarity)`` is
    listed once, with ``i < j``.  With ``keys``, pairs are ``(i in queries,
    j in keys)``: e.g. test photos against training photos.
    """
    x = normalise(queries, center)
    y = x if keys is None else normalise(keys, center)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"the two collections have {x.shape[1]} and {y.shape[1]} features")
    pairs = []
    for begin in range(0, len(x), BLOCK):
        block = x[begin : begin + BLOCK] @ y.T
        rows, cols = (block >= threshold).nonzero(as_tuple=True)
        rows = rows + begin
        if keys is None:
            keep = rows < cols
            rows, cols = rows[keep], cols[keep]
        values = block[rows - begin, cols]
        pairs += zip(rows.tolist(), cols.tolist(), values.tolist())
    return sorted(pairs, key=lambda pair: (-pair[2], pair[0], pair[1]))


def thumbnail(picture: Image.Image) -> torch.Tensor:
    """A picture's pixels as a unit vector: grey, 32 × 32, centred.

    The dot product of two thumbnails is the correlation of their pixels,
    close to 1 only when the pixels are the same up to size, a small crop and
    compression; different photos of one scene correlate less.  It is the
    second opinion on a near-duplicate, one that does not use the backbone.
    """
    grey = picture.convert("L").resize((THUMBNAIL, THUMBNAIL), Image.BILINEAR)
    pixels = torch.from_numpy(np.asarray(grey, dtype=np.float32).ravel())
    pixels = pixels - pixels.mean()
    return pixels / pixels.norm().clamp(min=1e-6)


@dataclass(frozen=True)
class DuplicateRule:
    """Two photos are near-duplicates when both similarities reach these thresholds.

    ``features``: cosine similarity of the backbone's centred features;
    ``pixels``: correlation of their :func:`thumbnail`.  ``copy_features``
    and ``copy_pixels`` hold each resaved copy's similarities to its
    original, from which the thresholds were read.
    """

    features: float
    pixels: float
    copy_features: torch.Tensor
    copy_pixels: torch.Tensor


def duplicate_rule(backbone, pictures, center: torch.Tensor, found: float = 0.95, seed: int = 0) -> DuplicateRule:
    """Thresholds that find ``found`` of the resaved copies of ``pictures``.

    Each picture gets one :func:`tlhelpers.augment.resaved_copy`; the
    thresholds are the ``1 - found`` quantiles of the copies' similarities to
    their originals, rounded down to two decimals.  They belong to the
    backbone (``center``: the mean of the features searched): another
    backbone's features have another scale, so derive them again.
    """
    if not 0 < found < 1:
        raise ValueError(f"found must be between 0 and 1, got {found}")
    pictures = list(pictures)
    copies = [augment.resaved_copy(picture, seed + i) for i, picture in enumerate(pictures)]
    originals = normalise(features.embed(backbone, pictures), center)
    copy_features = (originals * normalise(features.embed(backbone, copies), center)).sum(1)
    copy_pixels = torch.stack([thumbnail(a) @ thumbnail(b) for a, b in zip(pictures, copies)])

    def floor(values: torch.Tensor) -> float:
        return math.floor(100 * values.quantile(1 - found).item()) / 100

    return DuplicateRule(floor(copy_features), floor(copy_pixels), copy_features, copy_pixels)


def near_duplicates(pairs, paths, other_paths, rule: DuplicateRule) -> list[tuple[int, int, float, float]]:
    """The ``pairs`` whose pixels also correlate at ``rule.pixels`` or more.

    Returns ``(i, j, similarity, pixel correlation)`` tuples.  ``pairs``
    come from :func:`duplicate_pairs` at ``rule.features``;
    ``i`` indexes ``paths`` and ``j`` ``other_paths`` (the same list for
    pairs within one collection).  Each photo is decoded once.
    """
    thumbs: dict = {}

    def thumb(path):
        if path not in thumbs:
            thumbs[path] = thumbnail(data.load_rgb(path))
        return thumbs[path]

    found = []
    for i, j, similarity in pairs:
        correlation = float(thumb(paths[i]) @ thumb(other_paths[j]))
        if correlation >= rule.pixels:
            found.append((i, j, similarity, correlation))
    return found


def duplicates_of(*, queries, keys, rule: DuplicateRule, center: torch.Tensor) -> list[tuple[int, int, float, float]]:
    """Near-duplicates of ``keys`` among ``queries`` (two FeatureSets), e.g. test photos in training.

    Pairs ``(query index, key index, similarity, pixel correlation)``
    that pass both thresholds of ``rule``; :func:`duplicate_pairs` proposes,
    :func:`near_duplicates` confirms.
    """
    pairs = duplicate_pairs(queries=queries.features, keys=keys.features, threshold=rule.features, center=center)
    return near_duplicates(pairs, queries.paths, keys.paths, rule)


def recall_at_k(found: torch.Tensor, exact: torch.Tensor) -> float:
    """Share of the exact ``k`` nearest neighbours that an approximate search found, in [0, 1].

    ``found`` and ``exact`` are index tensors of shape (queries, k); ``-1``
    (an approximate index that found fewer than ``k``) never counts as found.
    """
    found, exact = torch.as_tensor(found), torch.as_tensor(exact)
    if found.shape != exact.shape:
        raise ValueError(f"shapes differ: {tuple(found.shape)} and {tuple(exact.shape)}")
    if exact.numel() == 0:
        raise ValueError("no neighbours to compare")
    hits = (found.unsqueeze(2) == exact.unsqueeze(1)) & (found.unsqueeze(2) >= 0)
    return hits.any(1).float().mean().item()


# --------------------------------------------------------------------------- #
# Out-of-distribution scores
# --------------------------------------------------------------------------- #


def max_softmax(probs: torch.Tensor) -> torch.Tensor:
    """``1 - max probability`` per row of softmax probabilities."""
    probs = torch.as_tensor(probs).float()
    if probs.ndim != 2:
        raise ValueError(f"probabilities must be a 2-D tensor (photos × classes), not shape {tuple(probs.shape)}")
    return 1 - probs.max(1).values


def knn_distance(
    *,
    queries: torch.Tensor,
    keys: torch.Tensor,
    k: int = 10,
    center: torch.Tensor | None = None,
    exclude_self: bool = False,
) -> torch.Tensor:
    """``1 - cosine similarity`` of each query to its k-th nearest key (training photo).

    ``k`` is reduced to the number of keys; ``exclude_self`` as in
    :func:`search` (scoring the training photos themselves).
    """
    sims, _ = search(queries=queries, keys=keys, k=k, center=center, exclude_self=exclude_self)
    return 1 - sims[:, -1]


def auroc(known: torch.Tensor, unknown: torch.Tensor) -> float:
    """Area under the ROC curve of a score that should be higher for ``unknown`` photos.

    1.0: every unknown photo scores above every known one; 0.5: the score
    cannot tell them apart.  Computed by scikit-learn's ``roc_auc_score``.
    """
    from sklearn.metrics import roc_auc_score

    known, unknown = np.asarray(known, dtype=float).ravel(), np.asarray(unknown, dtype=float).ravel()
    if not len(known) or not len(unknown):
        raise ValueError(f"AUROC needs scores of both kinds ({len(known)} known, {len(unknown)} unknown)")
    truth = np.r_[np.zeros(len(known)), np.ones(len(unknown))]
    return float(roc_auc_score(truth, np.r_[known, unknown]))


# --------------------------------------------------------------------------- #
# Approximate search at scale
# --------------------------------------------------------------------------- #


TRAINING_POINTS_PER_LIST = 39  # faiss asks for at least this many k-means points per cluster


def synthetic_features(
    n: int, dim: int = 512, clusters: int = 1000, spread: float = 0.5, seed: int = 0
) -> torch.Tensor:
    """``n`` unit-length vectors drawn around ``clusters`` random centres.

    Like photo features, they form groups (photos of one kind of thing) rather
    than filling space evenly; ``spread`` is the noise around a centre
    relative to the centre's length.  Deterministic for a ``seed``.
    """
    if n < 1 or dim < 1 or clusters < 1:
        raise ValueError("n, dim and clusters must be positive")
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=generator)
    out = torch.empty(n, dim)
    for begin in range(0, n, 65536):  # in chunks: the noise of a million vectors at once would double the memory
        end = min(n, begin + 65536)
        which = torch.randint(clusters, (end - begin,), generator=generator)
        out[begin:end] = centres[which] + spread * torch.randn(end - begin, dim, generator=generator)
    return torch.nn.functional.normalize(out, dim=1)


class IVFIndex:
    """An approximate inner-product index (faiss ``IndexIVFFlat``) over unit-length vectors.

    ``nlist`` defaults to √N, kept small enough that k-means has enough points
    per cluster; ``nprobe`` is how many clusters a query visits.
    """

    def __init__(self, vectors: torch.Tensor, nlist: int | None = None, nprobe: int = 8, seed: int = 0):
        faiss = optional("faiss")

        x = np.ascontiguousarray(torch.as_tensor(vectors).float().numpy())
        if x.ndim != 2 or len(x) == 0:
            raise ValueError("the index needs a 2-D array of vectors, at least one")
        n, dim = x.shape
        most = max(1, n // TRAINING_POINTS_PER_LIST)
        self.nlist = max(1, min(nlist or round(math.sqrt(n)), most))
        self.nprobe = max(1, min(nprobe, self.nlist))
        quantizer = faiss.IndexFlatIP(dim)
        self.index = faiss.IndexIVFFlat(quantizer, dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
        self.index.cp.seed = seed
        self.index.train(x)
        self.index.add(x)
        self.index.nprobe = self.nprobe
        self._quantizer = quantizer  # faiss does not own it: keep it alive with the index

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, queries: torch.Tensor, k: int = 10) -> torch.Tensor:
        """Indices of (approximately) the ``k`` most similar vectors; -1 where fewer were found."""
        q = np.ascontiguousarray(torch.as_tensor(queries).float().numpy())
        _, found = self.index.search(q, k)
        return torch.from_numpy(found)


def scaling_sweep(
    sizes, dim: int = 512, queries: int = 100, k: int = 10, nprobe: int = 8, repeats: int = 3, seed: int = 0, log=None
) -> list[dict]:
    """Exact search against :class:`IVFIndex` at each size in ``sizes``.

    One row per size: ``n``, ``dim``, ``exact_ms`` and ``approx_ms`` (query
    time per query, the best of ``repeats`` batched runs of ``queries``
    queries), ``build_s`` (k-means and adding the vectors), ``nlist``,
    ``nprobe`` and ``recall`` (recall@k against the exact answer).  The
    queries are fresh vectors from the same distribution, around the same
    centres (``n // 100`` of them: a hundred vectors per group on average).
    """
    rows = []
    for n in sizes:
        drawn = synthetic_features(n + queries, dim, clusters=max(1, n // 100), seed=seed)
        vectors, asked = drawn[:n], drawn[n:]
        exact_s = runtime.seconds(lambda v=vectors, q=asked: search(queries=q, keys=v, k=k), repeats, summary=min)
        exact = search(queries=asked, keys=vectors, k=k)[1]
        start = time.perf_counter()
        index = IVFIndex(vectors, nprobe=nprobe, seed=seed)
        build_s = time.perf_counter() - start
        approx_s = runtime.seconds(lambda i=index, q=asked: i.search(q, k), repeats, summary=min)
        row = {
            "n": n,
            "dim": dim,
            "exact_ms": 1000 * exact_s / queries,
            "approx_ms": 1000 * approx_s / queries,
            "build_s": build_s,
            "nlist": index.nlist,
            "nprobe": index.nprobe,
            "recall": recall_at_k(index.search(asked, k), exact),
        }
        rows.append(row)
        if log is not None:
            log(
                f"  N={n:,}: exact {row['exact_ms']:.3f} ms/query, IVF {row['approx_ms']:.3f} ms/query "
                f"(built in {build_s:.1f} s), recall@{k} {row['recall']:.3f}"
            )
        del vectors, index
    return rows


# --------------------------------------------------------------------------- #
# Label issues
# --------------------------------------------------------------------------- #


def out_of_fold_probabilities(
    labels: torch.Tensor, fit_predict: Callable, folds: int = 5, seed: int = 0
) -> torch.Tensor:
    """Class probabilities of every photo from a model that never saw it.

    ``fit_predict(train_index, held_out_index)`` trains on the photos at
    ``train_index`` and returns the probabilities (held-out photos × classes)
    of those at ``held_out_index``.  The folds are stratified; ``folds`` is
    reduced to the size of the smallest class (at least 2 photos per class
    are needed).
    """
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(torch.as_tensor(labels).long())
    smallest = np.bincount(y).min() if len(y) else 0
    if smallest < 2 or len(np.unique(y)) < 2:
        raise ValueError("out-of-fold probabilities need two classes with at least 2 photos each")
    folds = int(min(folds, smallest))
    probs = None
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_index, held_out in split.split(np.zeros(len(y)), y):
        part = torch.as_tensor(fit_predict(torch.as_tensor(train_index), torch.as_tensor(held_out))).float()
        if probs is None:
            probs = torch.zeros(len(y), part.shape[1])
        probs[torch.as_tensor(held_out)] = part
    return probs


def find(labels: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Indices of the photos whose given label is likely wrong, most suspicious first.

    ``cleanlab.filter.find_label_issues`` with its default method (confident
    learning, pruning by noise rate), ranked by self-confidence (the
    probability the model gives to the given label).  ``probs`` should be
    out-of-fold (:func:`out_of_fold_probabilities`).
    """
    find_label_issues = optional("cleanlab.filter").find_label_issues

    y = np.asarray(torch.as_tensor(labels).long())
    p = np.asarray(torch.as_tensor(probs).double())
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(f"need one row of probabilities per label: {p.shape} for {len(y)} labels")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("probabilities must be finite and not negative")
    totals = p.sum(1, keepdims=True)
    empty = np.flatnonzero(totals[:, 0] == 0)
    if len(empty):
        raise ValueError(
            f"{len(empty)} row(s) of probabilities sum to 0 (the first is row {empty[0]}): "
            "every photo needs probabilities"
        )
    p = p / totals
    found = find_label_issues(y, p, return_indices_ranked_by="self_confidence")
    return torch.as_tensor(np.asarray(found, dtype=np.int64))
