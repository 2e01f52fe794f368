"""How fast a model answers: latency at batch 1 and throughput at a larger batch (chapter 7).

They time any callable that runs the model on a prepared batch, so PyTorch
and onnxruntime are measured the same way: a few untimed warm-up calls (the
first calls allocate memory and pick kernels), then the median of several
timed calls, which a busy machine disturbs less than the mean.
``make bench`` uses the same functions.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np


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
    """Median seconds of ``predict(batch)`` (chapter 7); a batch of one photo gives the latency at batch 1."""
    return seconds(lambda: predict(batch), repeats, warmup)


def throughput(predict: Callable, batch, repeats: int = 3, warmup: int = 1) -> float:
    """Photos per second of ``predict(batch)``: ``len(batch)`` over the median time of a call (chapter 7)."""
    return len(batch) / seconds(lambda: predict(batch), repeats, warmup)


def run_in_batches(predict: Callable, photos: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, float]:
    """``predict`` on all of ``photos`` in batches: the outputs, concatenated, and the photos per second (chapter 7).

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
