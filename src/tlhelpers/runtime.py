"""Where the code runs: environment switches, the device, and seeded runs (chapters 1–4).

Every ``TLHELPERS_*`` switch is read with :func:`flag`, so each has one
meaning: ``1``/``true``/``yes``/``on`` turn it on, unset, empty,
``0``/``false``/``no``/``off`` leave it off, anything else is an error that
names the variable.

``TLHELPERS_FORCE_FALLBACK``
    every torchvision model is replaced by the packaged fallback
    (:mod:`tlhelpers.zoo`);
``TLHELPERS_OFFLINE``
    never download weights or photos;
``TLHELPERS_NO_FALLBACK``
    a torchvision model whose weights cannot be loaded is an error, never
    replaced by the fallback (the real-path run sets it);
``TLHELPERS_STRICT_CHECKS``
    a claim of the text that does not hold raises (:mod:`tlhelpers.checks`).
"""

from __future__ import annotations

import contextlib
import os
import random
from typing import Iterator

import numpy as np
import torch

FORCE_FALLBACK_ENV = "TLHELPERS_FORCE_FALLBACK"
OFFLINE_ENV = "TLHELPERS_OFFLINE"
NO_FALLBACK_ENV = "TLHELPERS_NO_FALLBACK"
STRICT_ENV = "TLHELPERS_STRICT_CHECKS"

_ON = ("1", "true", "yes", "on")
_OFF = ("", "0", "false", "no", "off")


def flag(name: str) -> bool:
    """Whether the environment switch ``name`` is on (see the module docstring)."""
    value = os.environ.get(name, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(f"{name}={os.environ[name]!r} is not a switch: use 1 (on) or 0 (off)")


def offline() -> bool:
    """True when ``TLHELPERS_OFFLINE`` forbids downloads."""
    return flag(OFFLINE_ENV)


def pick_device() -> torch.device:
    """The best device here: ``cuda``, else Apple's ``mps``, else ``cpu`` (chapters 1–3, 5 and 9)."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@contextlib.contextmanager
def seeded(seed: int, deterministic: bool = True) -> Iterator[None]:
    """Seed Python, NumPy and PyTorch for the ``with`` block, then restore all of it (chapters 3, 5 and 9).

    With ``deterministic`` PyTorch uses deterministic algorithms where it has
    them and warns (instead of failing) where it does not, so CPU runs repeat
    exactly.  Afterwards the random states (Python, NumPy, the CPU and CUDA
    generators) and the deterministic-algorithm settings are what they were
    before, so code after the block is not silently seeded or slowed.
    ``CUBLAS_WORKSPACE_CONFIG`` is set for CUDA's matrix products when unset
    (it must be before CUDA starts, so it stays set).
    """
    python_state, numpy_state = random.getstate(), np.random.get_state()
    settings = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
            torch.use_deterministic_algorithms(settings[0], warn_only=settings[1])
            torch.backends.cudnn.benchmark = settings[2]


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` PyTorch CPU threads, then restore the number (chapter 5).

    Small layers (a linear head, one block on cached activations) run faster on
    one thread: waking a second one for each tiny product costs more than it
    saves, many times more on a busy two-core machine.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
