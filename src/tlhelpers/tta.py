"""Test-time augmentation: average the predictions for a photo and its mirror image (chapter 5)."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from tlhelpers import surgery


def flip_predict(
    model: nn.Module, loader: Iterable, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(predicted labels, probabilities, true labels)`` from the mean softmax of each photo and its flip (chapter 5).

    Every batch ``(images, labels, ...)`` of ``loader`` is passed twice: as it
    is and mirrored left to right.  Runs in eval mode under
    ``torch.inference_mode()`` on ``device`` (default: the model's), and puts
    the model back as it was (:func:`tlhelpers.surgery.evaluating`); results
    on the CPU.
    """
    probs, labels = [], []
    with surgery.evaluating(model, device) as device, torch.inference_mode():
        for batch in loader:
            if batch is None:
                continue
            x = batch[0].to(device)
            p = (model(x).float().softmax(1) + model(x.flip(-1)).float().softmax(1)) / 2
            probs.append(p.cpu())
            labels.append(batch[1].cpu())
    if not labels:
        raise ValueError("the loader gave no usable batch")
    probs_all = torch.cat(probs)
    return probs_all.argmax(1), probs_all, torch.cat(labels)
