"""Resumable training runs: the checkpoint that ``python -m tlhelpers train`` writes after every epoch.

A checkpoint holds everything a run needs to go on as if it had never
stopped: the model's, optimizer's, scheduler's and gradient scaler's states,
the random states of Python, NumPy and PyTorch (of every process), the
number of epochs done, the history, the best epoch so far and its weights,
and the run's *identity*: the folder, its classes and files, the split, the
backbone and the settings.  :func:`save` writes it atomically
(:func:`tlhelpers.runtime.save_atomically`), so a run killed at any moment
leaves the previous epoch's checkpoint intact; :func:`load` reads it back and
:func:`mismatch` says, in one sentence, why a checkpoint does not belong to
the run about to resume from it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from tlhelpers import runtime

FORMAT = "tlhelpers.checkpoint"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read, or belongs to another run."""


def default_path(model_path: str | os.PathLike) -> Path:
    """Where the checkpoint of a run that writes ``model_path`` goes: ``model.pt`` → ``model.ckpt``."""
    return Path(model_path).with_suffix(".ckpt")


def files_digest(images) -> str:
    """SHA-256 of an ``ImageSet``'s class names and of its files (relative to its root) with their labels."""
    digest = hashlib.sha256(repr(list(images.classes)).encode())
    for path, label in zip(images.files, images.labels):
        digest.update(f"{runtime.shown_path(path, images.root)}|{int(label)}\n".encode())
    return digest.hexdigest()


def rng_state() -> dict:
    """The random states of Python, NumPy, PyTorch's CPU generator and its CUDA generators, as plain data."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(state: dict, path: str | os.PathLike) -> Path:
    """Write a checkpoint (``state`` plus the format marker) atomically; returns the path."""
    return runtime.save_atomically({"format": FORMAT, "format_version": FORMAT_VERSION, **state}, path)


def is_checkpoint_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a checkpoint written by :func:`save` (so a new run may replace it)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile):
        return False
    return isinstance(payload, dict) and payload.get("format") == FORMAT


def load(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`save`; raises :class:`CheckpointError` naming the file.

    The file holds tensors and plain data only (read with ``weights_only=True``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint to resume from: {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"{path} cannot be read as a checkpoint ({type(error).__name__})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint written by 'python -m tlhelpers train'")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {payload.get('format_version')!r}; "
            f"this tlhelpers reads version {FORMAT_VERSION} only"
        )
    return payload


# What must be equal to resume, in the order the refusal names them, with the words it uses.
IDENTITY = (
    ("folder", "was made from the folder {saved}, not {now}"),
    ("classes", "was made with the classes {saved}, not {now}"),
    ("files", "was made from other photos in the folder (files were added, removed or renamed)"),
    ("backbone", "was made with the backbone {saved}, not {now}"),
    ("backbone_sha256", "was made from other {backbone} weights than the ones here"),
    ("fine_tune", "was made with --fine-tune {saved}, not {now}"),
    ("split", "was made with the split {saved}, not {now}"),
    ("settings", "was made with the settings {saved}, not {now}"),
)


def mismatch(saved: dict, now: dict, path: str | os.PathLike) -> str | None:
    """Why the checkpoint at ``path`` with identity ``saved`` cannot continue the run ``now``, or ``None``."""
    for key, words in IDENTITY:
        if saved.get(key) != now.get(key):
            if key == "settings":
                before, after = saved.get(key) or {}, now[key]
                differ = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
                was = ", ".join(f"--{k.replace('_', '-')} {before.get(k)}" for k in differ)
                wanted = ", ".join(f"--{k.replace('_', '-')} {after.get(k)}" for k in differ)
                return f"{path} was made with {was}, not {wanted}; give the same options to resume"
            return f"{path} " + words.format(saved=saved.get(key), now=now.get(key), backbone=now.get("backbone"))
    return None
