"""`merge_candidates` (the vectorised batch merge of index and in-batch candidates) against the per-record
reference it replaced: same candidate sets on random batches, including short indexes (-1 padding),
k larger than the batch, and NaN similarities."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.blocking import merge_candidates


def _reference(ids: np.ndarray, sims: np.ndarray, vecs: np.ndarray, rows: np.ndarray, k: int) -> list[list[int]]:
    """The loop `Blocker.candidates` ran before (one record at a time)."""
    local = vecs @ vecs.T
    n = len(rows)
    local[np.triu_indices(n)] = -np.inf
    out = []
    for i in range(n):
        found = ids[i] >= 0
        cand, score = ids[i][found], sims[i][found]
        if i:
            kk = min(k, i)
            top = np.argpartition(-local[i, :i], kk - 1)[:kk] if kk < i else np.arange(i)
            cand = np.concatenate([cand, rows[top]])
            score = np.concatenate([score, local[i, top]])
        if len(cand) > k:
            cand = cand[np.argpartition(-score, k - 1)[:k]]
        out.append(sorted(cand.tolist()))
    return out


@pytest.mark.parametrize("n,k,known", [(1, 4, 10), (7, 4, 10), (40, 8, 3), (64, 32, 0), (200, 16, 1000)])
def test_merge_matches_per_record_reference(n: int, k: int, known: int) -> None:
    rng = np.random.default_rng(n * 31 + k)
    vecs = rng.normal(size=(n, 12)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    rows = np.arange(known, known + n, dtype=np.int64)
    have = min(k, known)
    ids = np.full((n, k), -1, np.int64)
    sims = np.zeros((n, k), np.float32)
    for i in range(n):
        ids[i, :have] = rng.choice(known, size=have, replace=False) if have else []
        sims[i, :have] = rng.uniform(-1, 1, size=have)
    got = [c.tolist() for c in merge_candidates(ids, sims, vecs, rows, k)]
    assert got == _reference(ids, sims, vecs, rows, k)
    assert all(len(c) == len(set(c)) for c in got)


def test_nan_similarity_is_kept_only_when_there_is_room() -> None:
    vecs = np.eye(3, dtype=np.float32)
    ids = np.array([[5, 6], [5, 6], [5, 6]], np.int64)
    sims = np.array([[0.9, np.nan]] * 3, np.float32)
    got = merge_candidates(ids, sims, vecs, np.array([10, 11, 12]), k=2)
    assert got[0].tolist() == [5, 6]  # room for both
    assert all(len(c) == 2 and 5 in c.tolist() for c in got)


def test_empty_batch() -> None:
    assert merge_candidates(np.zeros((0, 4), np.int64), np.zeros((0, 4), np.float32),
                            np.zeros((0, 3), np.float32), np.zeros(0, np.int64), 4) == []
