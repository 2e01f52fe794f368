"""Figures used across the chapters: photo grids, top-k bars, curves, tables.

Every function draws with matplotlib and returns the ``Figure`` (or ``Axes``)
so a notebook can tweak it; nothing is shown or saved as a side effect.
Class colours are the same in every chapter (:data:`CLASS_COLORS`).
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from tlhelpers import tables

# One colour per animal class, used by every chapter's figures.
CLASS_COLORS = {"cats": "#E69F00", "dogs": "#0072B2", "panda": "#444444"}
_CYCLE = ["#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442"]


def class_color(name: str, index: int = 0) -> str:
    """The chapter-wide colour of a class (falls back to a colour-blind-safe cycle)."""
    return CLASS_COLORS.get(name, _CYCLE[index % len(_CYCLE)])


def to_image(x) -> np.ndarray:
    """A PIL image, HWC array or CHW tensor as an HWC float array in [0, 1] for ``imshow``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float()
        if x.ndim == 3 and x.shape[0] in (1, 3):
            x = x.permute(1, 2, 0)
        x = x.numpy()
    x = np.asarray(x)
    if x.dtype == np.uint8:
        x = x / 255.0
    return np.clip(x, 0, 1)


def image_grid(
    pictures: Sequence,
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    size: float = 2.6,
    title_colors: Sequence[str] | None = None,
    suptitle: str | None = None,
):
    """Photos in a grid with a title under each."""
    n = len(pictures)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * 1.08), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(to_image(pictures[i]))
        if titles is not None:
            color = title_colors[i] if title_colors is not None else "black"
            ax.set_title(titles[i], fontsize=9, color=color)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def topk_bars(ax, probs: Sequence[float], labels: Sequence[str], title: str | None = None, color: str = "#0072B2"):
    """Horizontal bars of the top-k class probabilities, best on top."""
    y = np.arange(len(probs))[::-1]
    ax.barh(y, probs, color=color)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    for yi, p in zip(y, probs):
        ax.text(min(p + 0.02, 0.82), yi, f"{p:.0%}", va="center", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def predictions_figure(
    pictures: Sequence, top: Sequence[Sequence[tuple[str, float]]], names: Sequence[str], note: str | None = None
):
    """Each photo beside a bar chart of its top-k predictions."""
    n = len(pictures)
    fig, axes = plt.subplots(n, 2, figsize=(8, 2.0 * n), gridspec_kw={"width_ratios": [1, 2.2]})
    axes = np.atleast_2d(axes)
    for i in range(n):
        axes[i, 0].imshow(to_image(pictures[i]))
        axes[i, 0].axis("off")
        axes[i, 0].set_title(names[i], fontsize=9)
        labels, probs = zip(*top[i])
        topk_bars(axes[i, 1], probs, labels)
        if i < n - 1:
            axes[i, 1].set_xlabel("")
    if note:
        fig.suptitle(note, fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- #
# Training curves, result tables, confusion matrix (chapters 3 and 4)
# --------------------------------------------------------------------------- #

_METRIC_LABELS = {
    "train_acc": "training accuracy",
    "val_acc": "validation accuracy",
    "test_acc": "test accuracy",
    "train_loss": "training loss (cross-entropy, nats)",
    "val_loss": "validation loss (cross-entropy, nats)",
    "lr": "learning rate",
    "seconds": "time per epoch (s)",
}


def _metric_values(history, metric: str) -> list:
    """One metric per epoch from a ``train.History`` or a list of row dicts."""
    if hasattr(history, "column"):
        return history.column(metric)
    return [row.get(metric) for row in history]


def learning_curves(histories: dict, metric: str = "val_acc", ax=None, band: str = "minmax", title: str | None = None):
    """One curve per strategy: the mean over seeds with a shaded band.

    ``histories`` maps a strategy name to a ``History`` or a list of them (one
    per seed); the band spans min–max over seeds (``band="std"``: mean ± one
    standard deviation).  Runs of different lengths are cut to the shortest.
    Accuracies are drawn as percentages.  Returns the figure.
    """
    if band not in ("minmax", "std"):
        raise ValueError(f"band must be 'minmax' or 'std', not {band!r}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
    else:
        fig = ax.figure
    n_seeds = set()
    for index, (strategy, runs) in enumerate(histories.items()):
        runs = [runs] if hasattr(runs, "column") or (runs and isinstance(runs[0], dict)) else list(runs)
        curves = [[np.nan if v is None else v for v in _metric_values(run, metric)] for run in runs]
        length = min((len(curve) for curve in curves), default=0)
        if length == 0:
            continue
        values = np.array([curve[:length] for curve in curves], dtype=float)
        epochs = np.arange(1, length + 1)
        mean = np.nanmean(values, axis=0)
        if band == "std":
            spread = np.nanstd(values, axis=0)
            low, high = mean - spread, mean + spread
        else:
            low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
        color = _CYCLE[index % len(_CYCLE)]
        ax.plot(epochs, mean, color=color, marker="o", markersize=3, label=f"{strategy} (n={len(runs)})")
        if len(runs) > 1:
            ax.fill_between(epochs, low, high, color=color, alpha=0.2, linewidth=0)
        n_seeds.add(len(runs))
    label = _METRIC_LABELS.get(metric, metric)
    if metric.endswith("acc"):
        from matplotlib.ticker import PercentFormatter

        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        label += " (%)"
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    spread_text = "min–max" if band == "minmax" else "±1 std"
    ax.set_title(title or f"{label[0].upper()}{label[1:]}: mean over seeds, band {spread_text}", fontsize=10)
    fig.tight_layout()
    return fig


def results_table(
    rows: Sequence[dict], group: str = "strategy", metrics: Sequence[str] = ("test_acc",), digits: int = 1
) -> str:
    """A Markdown table of mean ± standard deviation per group.

    ``rows`` are dicts such as ``{"strategy": "frozen", "seed": 0, "test_acc": 0.93}``;
    groups keep their order of first appearance.  Metrics ending in ``acc``
    are shown in percent; the standard deviation is the sample one (n − 1) and
    is left out for a single run; an integer that is the same in every run
    (a parameter count) is shown once, exactly.  Missing (``None``) values are skipped.
    Print it, or show it with ``IPython.display.Markdown``.
    """
    groups: dict = {}
    for row in rows:
        groups.setdefault(row[group], []).append(row)

    def cell(values: list, percent: bool) -> str:
        if not values:
            return "–"
        if len(set(values)) == 1 and all(isinstance(v, int) for v in values):
            return f"{values[0]:,}"  # a count that does not vary, such as trainable parameters
        values = np.asarray(values, dtype=float) * (100 if percent else 1)
        text = f"{values.mean():.{digits}f}"
        if len(values) > 1:
            text += f" ± {values.std(ddof=1):.{digits}f}"
        return text

    header = [group, "runs"] + [f"{m} (%)" if m.endswith("acc") else m for m in metrics]
    body = []
    for name, members in groups.items():
        cells = [str(name), str(len(members))]
        for metric in metrics:
            values = [r[metric] for r in members if r.get(metric) is not None]
            cells.append(cell(values, metric.endswith("acc")))
        body.append(cells)
    return tables.markdown(header, body, align="l" + "r" * (len(header) - 1))


def confusion_matrix(y_true, y_pred, classes: Sequence[str], ax=None, title: str | None = None):
    """Counts of true class (rows) × predicted class (columns), coloured by row share.

    Each cell shows its count and its share of the true class, so classes
    of different sizes compare fairly.  Returns the figure.
    """
    k = len(classes)
    counts = tables.confusion_counts(torch.as_tensor(y_true).cpu(), torch.as_tensor(y_pred).cpu(), k).numpy()
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.2 * k + 2.2, 1.1 * k + 1.2))
    else:
        fig = ax.figure
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                f"{counts[i, j]}\n{shares[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize=9,
                color="white" if shares[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(k), classes)
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    total = counts.sum()
    correct = np.trace(counts) / max(total, 1)
    ax.set_title(title or f"Confusion matrix ({total} images, {correct:.1%} correct)", fontsize=10)
    fig.tight_layout()
    return fig


def prediction_grid(
    pictures: Sequence,
    preds,
    labels,
    classes: Sequence[str],
    ncols: int = 4,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    suptitle: str | None = "prediction / truth (red: wrong)",
):
    """Photos titled "predicted / true", the wrong ones in red.

    ``pictures`` are PIL pictures, HWC arrays or CHW tensors in [0, 1]; for
    normalised tensors pass the ``mean`` and ``std`` of the transform to undo it.
    """
    preds = [int(p) for p in preds]
    labels = [int(t) for t in labels]
    if mean is not None and std is not None:
        shift = torch.as_tensor(mean).view(-1, 1, 1)
        scale = torch.as_tensor(std).view(-1, 1, 1)
        pictures = [torch.as_tensor(image).cpu() * scale + shift for image in pictures]
    titles = [f"{classes[p]} / {classes[t]}" for p, t in zip(preds, labels)]
    colors = ["black" if p == t else "red" for p, t in zip(preds, labels)]
    return image_grid(pictures, titles, ncols=ncols, title_colors=colors, suptitle=suptitle)
