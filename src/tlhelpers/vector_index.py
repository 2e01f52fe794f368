"""Searching millions of feature vectors: exact search against an approximate index (chapter 6).

Exact search compares a query with every stored vector: N·d multiply-adds
per query, one matrix product, right for thousands of photos.  An *inverted
file* index (IVF, from ``faiss``) first sorts the vectors into ``nlist``
clusters with k-means; a query is compared with the ``nlist`` cluster centres
and then only with the vectors of its ``nprobe`` nearest clusters, about
``nlist·d + N·d·nprobe/nlist`` multiply-adds.  With ``nlist ≈ √N`` that grows
like √N instead of N, at the price of a k-means when the index is built and
of neighbours that lie in a cluster it did not visit (recall below 1).

:func:`scaling_sweep` measures both on synthetic features; the chapter runs
it at small sizes and ``benchmarks/run.py`` up to a million vectors.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from tlhelpers import neighbours, optional, speed

TRAINING_POINTS_PER_LIST = 39  # faiss asks for at least this many k-means points per cluster


def synthetic_features(
    n: int, dim: int = 512, clusters: int = 1000, spread: float = 0.5, seed: int = 0
) -> torch.Tensor:
    """``n`` unit-length vectors drawn around ``clusters`` random centres (chapter 6, indirectly).

    Like photo features, they form groups (photos of one kind of thing) rather
    than filling space evenly; ``spread`` is the noise around a centre
    relative to the centre's length.  Deterministic for a ``seed``.
    """
    if n < 1 or dim < 1 or clusters < 1:
        raise ValueError("n, dim and clusters must be positive")
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=generator)
    out = torch.empty(n, dim)
    for begin in range(0, n, 65536):  # in chunks: the noise of a million vectors at once would double the memory
        end = min(n, begin + 65536)
        which = torch.randint(clusters, (end - begin,), generator=generator)
        out[begin:end] = centres[which] + spread * torch.randn(end - begin, dim, generator=generator)
    return torch.nn.functional.normalize(out, dim=1)


class IVFIndex:
    """An approximate inner-product index (faiss ``IndexIVFFlat``) over unit-length vectors (chapter 6, indirectly).

    ``nlist`` defaults to √N, kept small enough that k-means has enough points
    per cluster; ``nprobe`` is how many clusters a query visits.
    """

    def __init__(self, vectors: torch.Tensor, nlist: int | None = None, nprobe: int = 8, seed: int = 0):
        faiss = optional("faiss")

        x = np.ascontiguousarray(torch.as_tensor(vectors).float().numpy())
        if x.ndim != 2 or len(x) == 0:
            raise ValueError("the index needs a 2-D array of vectors, at least one")
        n, dim = x.shape
        most = max(1, n // TRAINING_POINTS_PER_LIST)
        self.nlist = max(1, min(nlist or round(math.sqrt(n)), most))
        self.nprobe = max(1, min(nprobe, self.nlist))
        quantizer = faiss.IndexFlatIP(dim)
        self.index = faiss.IndexIVFFlat(quantizer, dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
        self.index.cp.seed = seed
        self.index.train(x)
        self.index.add(x)
        self.index.nprobe = self.nprobe
        self._quantizer = quantizer  # faiss does not own it: keep it alive with the index

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, queries: torch.Tensor, k: int = 10) -> torch.Tensor:
        """Indices of (approximately) the ``k`` most similar vectors; -1 where fewer were found."""
        q = np.ascontiguousarray(torch.as_tensor(queries).float().numpy())
        _, found = self.index.search(q, k)
        return torch.from_numpy(found)


def scaling_sweep(
    sizes, dim: int = 512, queries: int = 100, k: int = 10, nprobe: int = 8, repeats: int = 3, seed: int = 0, log=None
) -> list[dict]:
    """Exact search against :class:`IVFIndex` at each size in ``sizes`` (chapters 6 and ``make bench``) (chapter 6).

    One row per size: ``n``, ``dim``, ``exact_ms`` and ``approx_ms`` (query
    time per query, the best of ``repeats`` batched runs of ``queries``
    queries), ``build_s`` (k-means and adding the vectors), ``nlist``,
    ``nprobe`` and ``recall`` (recall@k against the exact answer).  The
    queries are fresh vectors from the same distribution, around the same
    centres (``n // 100`` of them: a hundred vectors per group on average).
    """
    rows = []
    for n in sizes:
        drawn = synthetic_features(n + queries, dim, clusters=max(1, n // 100), seed=seed)
        vectors, asked = drawn[:n], drawn[n:]
        exact_s = speed.seconds(lambda v=vectors, q=asked: neighbours.search(q, v, k), repeats, summary=min)
        exact = neighbours.search(asked, vectors, k)[1]
        start = time.perf_counter()
        index = IVFIndex(vectors, nprobe=nprobe, seed=seed)
        build_s = time.perf_counter() - start
        approx_s = speed.seconds(lambda i=index, q=asked: i.search(q, k), repeats, summary=min)
        row = {
            "n": n,
            "dim": dim,
            "exact_ms": 1000 * exact_s / queries,
            "approx_ms": 1000 * approx_s / queries,
            "build_s": build_s,
            "nlist": index.nlist,
            "nprobe": index.nprobe,
            "recall": neighbours.recall_at_k(index.search(asked, k), exact),
        }
        rows.append(row)
        if log is not None:
            log(
                f"  N={n:,}: exact {row['exact_ms']:.3f} ms/query, IVF {row['approx_ms']:.3f} ms/query "
                f"(built in {build_s:.1f} s), recall@{k} {row['recall']:.3f}"
            )
        del vectors, index
    return rows
