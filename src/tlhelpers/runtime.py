"""Where and how the code runs: environment switches, the device, seeded runs, atomic files and clocks (chapters 1–4).

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

**Files** the package writes and paths it shows.

:func:`save_atomically` writes a ``torch.save`` payload to a temporary file
beside the target and renames it, so a crash never leaves half a file;
:func:`shown_path` gives the path relative to a root, as notebooks print it
(outputs must not show where a machine keeps its files).

**Clocks**: how fast a model answers, latency at batch 1 and throughput at a larger batch (chapter 7).

They time any callable that runs the model on a prepared batch, so PyTorch
and onnxruntime are measured the same way: a few untimed warm-up calls (the
first calls allocate memory and pick kernels), then the median of several
timed calls, which a busy machine disturbs less than the mean.
``make bench`` uses the same functions.
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

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
    """The best device here: ``cuda``, else Apple's ``mps``, else ``cpu``."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@contextlib.contextmanager
def seeded(seed: int, deterministic: bool = True) -> Iterator[None]:
    """Seed Python, NumPy and PyTorch for the ``with`` block, then restore all of it.

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
    """Run the block with ``n`` PyTorch CPU threads, then restore the number.

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


# --------------------------------------------------------------------------- #
# Files
# --------------------------------------------------------------------------- #


def save_atomically(payload, path: str | os.PathLike) -> Path:
    """``torch.save(payload)`` to ``path`` through a temporary file and a rename; returns the path."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path


def shown_path(path: str | os.PathLike, root: str | os.PathLike | None) -> str:
    """``path`` relative to ``root`` with ``/`` separators, or the whole path when it lies elsewhere."""
    path = Path(path)
    if root is not None:
        with contextlib.suppress(ValueError):
            return path.relative_to(root).as_posix()
    return path.as_posix()


# --------------------------------------------------------------------------- #
# Clocks
# --------------------------------------------------------------------------- #


def seconds(
    run: Callable[[], object],
    repeats: int,
    warmup: int = 0,
    summary: Callable[[list[float]], float] = statistics.median,
) -> float:
    """``summary`` (default the median) of ``repeats`` timed calls of ``run()`` after ``warmup`` untimed ones.

    Used by :func:`latency`, :func:`throughput` and the vector-search sweep (chapters 6 and 7, indirectly).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return summary(times)


def latency(predict: Callable, batch, repeats: int = 10, warmup: int = 2) -> float:
    """Median seconds of ``predict(batch)``; a batch of one photo gives the latency at batch 1."""
    return seconds(lambda: predict(batch), repeats, warmup)


def throughput(predict: Callable, batch, repeats: int = 3, warmup: int = 1) -> float:
    """Photos per second of ``predict(batch)``: ``len(batch)`` over the median time of a call."""
    return len(batch) / seconds(lambda: predict(batch), repeats, warmup)


def run_in_batches(predict: Callable, photos: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, float]:
    """``predict`` on all of ``photos`` in batches: the outputs, concatenated, and the photos per second.

    The throughput is ``batch_size`` over the median time of the full
    batches, so one pass over a test set measures accuracy and speed at once
    (the median leaves out the slower first call).  With no full batch it is
    measured on the last one.
    """
    outputs, times = [], []
    for start in range(0, len(photos), batch_size):
        chunk = photos[start : start + batch_size]
        begin = time.perf_counter()
        outputs.append(np.asarray(predict(chunk)))
        if len(chunk) == batch_size or start + batch_size >= len(photos) and not times:
            times.append((time.perf_counter() - begin) / len(chunk))
    if not outputs:
        raise ValueError("no photos to run")
    return np.concatenate(outputs), 1.0 / statistics.median(times)
