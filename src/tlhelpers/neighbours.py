"""Nearest neighbours in feature space: search, k-NN votes, near-duplicates (chapters 4 and 6).

A pretrained backbone maps photos that look alike to feature vectors that
point in similar directions, so the cosine similarity of two feature vectors
is a measure of how alike two photos look.  Everything here is exact: one
matrix product between unit-length vectors, done in blocks so that memory
stays bounded (``tlhelpers.vector_index`` holds the approximate search for
collections too large for that).

Features are optionally centred first (on the mean of the collection searched):
the features of a backbone that ends in a ReLU are all positive, so the raw
cosine similarity of any two photos is high; centring spreads the scale out
without changing which photos are nearest.

A near-duplicate (the same photo, re-cropped, resized or re-compressed) is
found in two steps: the backbone's similarity proposes pairs, the pixels of
small thumbnails confirm them; :func:`duplicate_rule` sets both thresholds
from resaved copies of the photos, for the backbone at hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from tlhelpers import augment, data, features

BLOCK = 4096  # queries per matrix product: bounds the similarity block in memory
THUMBNAIL = 32  # side of the grey thumbnails whose pixels are compared


def normalise(x: torch.Tensor, center: torch.Tensor | None = None) -> torch.Tensor:
    """Rows of ``x`` (minus ``center``) scaled to unit length, as float32 (chapter 6)."""
    x = torch.as_tensor(x).float()
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D tensor (photos × features), not shape {tuple(x.shape)}")
    if center is not None:
        x = x - torch.as_tensor(center).float()
    return torch.nn.functional.normalize(x, dim=1)


def search(
    queries: torch.Tensor,
    keys: torch.Tensor,
    k: int = 10,
    center: torch.Tensor | None = None,
    exclude_self: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` keys most similar to each query: ``(similarities, indices)``, best first (chapter 6).

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
    train: torch.Tensor,
    train_labels: torch.Tensor,
    queries: torch.Tensor,
    k: int = 10,
    num_classes: int | None = None,
    center: torch.Tensor | None = None,
    exclude_self: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-nearest-neighbour classification: ``(predicted labels, class scores)`` (chapter 6).

    Each of the ``k`` most similar training photos votes for its label with
    its cosine similarity as the weight (clamped at 0); the scores are the
    votes divided by their sum, one row per query.  No training at all: adding
    a labelled photo to ``train`` changes the classifier at once.
    ``num_classes`` defaults to the highest label + 1; pass it when a class
    may have no training photo, so that the scores have a column for it.
    """
    labels = torch.as_tensor(train_labels).long()
    if len(labels) != len(train):
        raise ValueError(f"{len(train)} training features but {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError("no training features to vote")
    if labels.min() < 0:
        raise ValueError(f"labels must be class indices from 0, got {int(labels.min())}")
    highest = int(labels.max())
    if num_classes is None:
        num_classes = highest + 1  # classes above the highest label cannot be predicted: pass num_classes
    elif highest >= num_classes:
        raise ValueError(f"a label is {highest}, but num_classes is {num_classes}")
    sims, idx = search(queries, train, k, center=center, exclude_self=exclude_self)
    votes = torch.zeros(len(sims), num_classes)
    votes.scatter_add_(1, labels[idx], sims.clamp(min=0) + 1e-6)  # the epsilon: all-negative rows still vote
    scores = votes / votes.sum(1, keepdim=True)
    return scores.argmax(1), scores


def nearest(
    queries: torch.Tensor, keys: torch.Tensor, center: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query, its most similar key: ``(similarity, index)`` (chapter 6)."""
    sims, idx = search(queries, keys, 1, center=center)
    return sims[:, 0], idx[:, 0]


def duplicate_pairs(
    features: torch.Tensor, threshold: float, center: torch.Tensor | None = None, others: torch.Tensor | None = None
) -> list[tuple[int, int, float]]:
    """Pairs of photos whose cosine similarity is at least ``threshold``, most similar first (chapter 6).

    Within one collection (``others=None``) each pair ``(i, j, similarity)`` is
    listed once, with ``i < j``.  With ``others``, pairs are ``(i in features,
    j in others)``: e.g. test photos against training photos.
    """
    x = normalise(features, center)
    y = x if others is None else normalise(others, center)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"the two collections have {x.shape[1]} and {y.shape[1]} features")
    pairs = []
    for begin in range(0, len(x), BLOCK):
        block = x[begin : begin + BLOCK] @ y.T
        rows, cols = (block >= threshold).nonzero(as_tuple=True)
        rows = rows + begin
        if others is None:
            keep = rows < cols
            rows, cols = rows[keep], cols[keep]
        values = block[rows - begin, cols]
        pairs += zip(rows.tolist(), cols.tolist(), values.tolist())
    return sorted(pairs, key=lambda pair: (-pair[2], pair[0], pair[1]))


def thumbnail(picture: Image.Image) -> torch.Tensor:
    """A picture's pixels as a unit vector: grey, 32 × 32, centred (chapter 6).

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
    """Two photos are near-duplicates when both similarities reach these thresholds (chapters 4 and 6, indirectly).

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
    """Thresholds that find ``found`` of the resaved copies of ``pictures`` (chapters 4 and 6).

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
    """The ``pairs`` whose pixels also correlate at ``rule.pixels`` or more (chapter 6).

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


def duplicates_of(queries, keys, rule: DuplicateRule, center: torch.Tensor) -> list[tuple[int, int, float, float]]:
    """Near-duplicates of ``keys`` among ``queries`` (two FeatureSets), e.g. test photos in training (chapters 4 and 6).

    Pairs ``(query index, key index, similarity, pixel correlation)``
    that pass both thresholds of ``rule``; :func:`duplicate_pairs` proposes,
    :func:`near_duplicates` confirms.
    """
    pairs = duplicate_pairs(queries.features, rule.features, center=center, others=keys.features)
    return near_duplicates(pairs, queries.paths, keys.paths, rule)


def recall_at_k(found: torch.Tensor, exact: torch.Tensor) -> float:
    """Share of the exact ``k`` nearest neighbours that an approximate search found, in [0, 1] (chapter 6, indirectly).

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
