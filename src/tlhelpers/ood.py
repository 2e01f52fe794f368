"""Scores for photos that belong to none of the classes: out-of-distribution detection (chapter 6).

Every score here is *higher for a more unusual photo*, so one rule reads
them all: flag a photo when its score is above a threshold.  :func:`auroc`
measures how well a score separates the known from the unknown without
choosing a threshold.

* :func:`max_softmax` — one minus the classifier's top probability
  (Hendrycks & Gimpel, 2017): the head's own doubt.
* :func:`knn_distance` — how far a photo is, in feature space, from its k-th
  nearest training photo (Sun et al., 2022): nothing like it was seen.
"""

from __future__ import annotations

import numpy as np
import torch

from tlhelpers import neighbours


def max_softmax(probs: torch.Tensor) -> torch.Tensor:
    """``1 - max probability`` per row of softmax probabilities (chapter 6)."""
    probs = torch.as_tensor(probs).float()
    if probs.ndim != 2:
        raise ValueError(f"probabilities must be a 2-D tensor (photos × classes), not shape {tuple(probs.shape)}")
    return 1 - probs.max(1).values


def knn_distance(
    train: torch.Tensor,
    queries: torch.Tensor,
    k: int = 10,
    center: torch.Tensor | None = None,
    exclude_self: bool = False,
) -> torch.Tensor:
    """``1 - cosine similarity`` of each query to its k-th nearest training photo (chapter 6).

    ``k`` is reduced to the number of training photos; ``exclude_self`` as in
    :func:`tlhelpers.neighbours.search` (scoring the training photos themselves).
    """
    sims, _ = neighbours.search(queries, train, k, center=center, exclude_self=exclude_self)
    return 1 - sims[:, -1]


def auroc(known: torch.Tensor, unknown: torch.Tensor) -> float:
    """Area under the ROC curve of a score that should be higher for ``unknown`` photos (chapter 6).

    1.0: every unknown photo scores above every known one; 0.5: the score
    cannot tell them apart.  Computed by scikit-learn's ``roc_auc_score``.
    """
    from sklearn.metrics import roc_auc_score

    known, unknown = np.asarray(known, dtype=float).ravel(), np.asarray(unknown, dtype=float).ravel()
    if not len(known) or not len(unknown):
        raise ValueError(f"AUROC needs scores of both kinds ({len(known)} known, {len(unknown)} unknown)")
    truth = np.r_[np.zeros(len(known)), np.ones(len(unknown))]
    return float(roc_auc_score(truth, np.r_[known, unknown]))
