"""The candidate index never raises for a query (issue 10: found by benchmarks/fuzz_inputs.py).

After ~60k fuzzed records hnswlib refused whole query batches ("Cannot return the results in a contiguous
2D array. Probably ef or M is too small") when one query reached fewer than k points, which aborted
`dedup batch`. The index now falls back to per-row queries (larger ef, then smaller k) and pads with -1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from consumer.engine.index import CandidateIndex


class _Stingy:
    """The real hnswlib index, except that, like a degraded graph, it reaches at most `reach` points."""

    def __init__(self, inner: Any, reach: int) -> None:
        self._inner, self._reach = inner, reach

    def knn_query(self, data: np.ndarray, k: int, num_threads: int = 1) -> Any:
        if k > self._reach:
            raise RuntimeError("Cannot return the results in a contiguous 2D array. Probably ef or M is too small")
        return self._inner.knn_query(data, k=k, num_threads=num_threads)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _vectors(n: int, dim: int = 16) -> np.ndarray:
    v = np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_query_falls_back_instead_of_raising() -> None:
    idx = CandidateIndex(16, m=12, ef_construction=64, ef=32, capacity=64, query_threads=1)
    v = _vectors(500)
    idx.add(v, np.arange(500))
    want_ids, _ = idx.query(v[:20], 8)
    idx._index = _Stingy(idx._index, reach=5)
    ids, sims = idx.query(v[:20], 8)
    assert ids.shape == (20, 8) and (ids[:, 4:] == -1).all()  # k halved to 4 for every row
    assert (ids[:, :4] == want_ids[:, :4]).all() and np.isfinite(sims).all()


def test_non_finite_vectors_do_not_poison_the_index() -> None:
    idx = CandidateIndex(16, m=12, ef_construction=64, ef=32, capacity=64, query_threads=1)
    v = _vectors(300)
    bad = v.copy()
    bad[::7] = np.nan
    idx.add(bad, np.arange(300))
    ids, sims = idx.query(np.vstack([v[:10], np.full((1, 16), np.inf, np.float32)]), 8)
    assert ids.shape == (11, 8) and np.isfinite(sims).all()
    assert ids[1, 0] == 1  # a healthy vector still finds itself
