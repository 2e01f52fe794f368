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


def image_grid(images: Sequence, titles: Sequence[str] | None = None, ncols: int = 4,
               size: float = 2.6, title_colors: Sequence[str] | None = None, suptitle: str | None = None):
    """Photos in a grid with a title under each (chapters 1, 2 and 4)."""
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * 1.08), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(to_image(images[i]))
        if titles is not None:
            color = title_colors[i] if title_colors is not None else "black"
            ax.set_title(titles[i], fontsize=9, color=color)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def topk_bars(ax, probs: Sequence[float], labels: Sequence[str], title: str | None = None,
              color: str = "#0072B2"):
    """Horizontal bars of the top-k class probabilities, best on top (chapter 1)."""
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


def predictions_figure(images: Sequence, top: Sequence[Sequence[tuple[str, float]]],
                       names: Sequence[str], note: str | None = None):
    """Each photo beside a bar chart of its top-k predictions (chapter 1)."""
    n = len(images)
    fig, axes = plt.subplots(n, 2, figsize=(8, 2.0 * n), gridspec_kw={"width_ratios": [1, 2.2]})
    axes = np.atleast_2d(axes)
    for i in range(n):
        axes[i, 0].imshow(to_image(images[i]))
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
