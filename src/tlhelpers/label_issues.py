"""Photos whose label is probably wrong: out-of-fold probabilities and confident learning (chapter 6).

A model can only judge a label it was not trained on, so each photo's class
probabilities come from a head trained on the *other* folds of a stratified
k-fold split (:func:`out_of_fold_probabilities`).  :func:`find` then asks
``cleanlab`` (Northcutt et al., 2021) which labels disagree with those
probabilities more than the model's typical confidence in each class
explains, most suspicious first.  The result is a list of photos to *look at*:
some are wrong labels, some are ambiguous photos, some are the model's mistakes.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from tlhelpers import optional


def out_of_fold_probabilities(
    labels: torch.Tensor, fit_predict: Callable, folds: int = 5, seed: int = 0
) -> torch.Tensor:
    """Class probabilities of every photo from a model that never saw it (chapter 6).

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
    """Indices of the photos whose given label is likely wrong, most suspicious first (chapter 6).

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
