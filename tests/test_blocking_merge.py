"""`merge_candidates` (the vectorised batch merge of index and in-batch candidates) against the per-record
reference it replaced: same candidate sets on random batches, including short indexes (-1 padding),
k larger than the batch, and NaN similarities."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.engine.blocking import merge_candidates


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


def _blocker_steps(background: bool, ahead: bool) -> list[list[list[int]]]:
    """Five batches through a Blocker: candidates, then advance (as `Pipeline.process` does)."""
    from consumer.config import IndexSettings
    from consumer.encoders.base import IndexVector
    from consumer.engine.blocking import Blocker

    rng = np.random.default_rng(3)
    blocker = Blocker([IndexVector("v", 16, 1.0)], IndexSettings(k=8, ef=16, initial_capacity=64),
                      query_threads=1, background_add=background)
    batches = []
    for b in range(5):
        v = rng.normal(size=(100, 16)).astype(np.float32)
        batches.append((v / np.linalg.norm(v, axis=1, keepdims=True), np.arange(100 * b, 100 * b + 100)))
    out = []
    search = None
    for i, (vecs, rows) in enumerate(batches):
        out.append([c.tolist() for c in blocker.candidates(vecs, rows, search)])
        blocker.advance(vecs, rows)
        nxt = batches[i + 1][0] if i + 1 < len(batches) else None
        search = blocker.search_ahead(lambda nxt=nxt: nxt) if ahead and nxt is not None else None
    assert len(blocker.index) == 500  # `index` inserts the held batch
    if ahead:
        assert blocker.ahead_used == 4 and blocker.ahead_stale == 0
    blocker.close()
    return out


def test_search_ahead_and_held_batch_give_the_synchronous_candidates() -> None:
    """The held batch is compared exactly and the next batch's search runs on the add thread (chunks
    shared with the caller): the same candidates as searching on the caller's thread, batch by batch."""
    sync = _blocker_steps(background=False, ahead=False)
    assert _blocker_steps(background=True, ahead=True) == sync
    assert _blocker_steps(background=True, ahead=False) == sync
    # Batch 1 sees batch 0 only as the held batch (exact), batch 2 sees batch 0 in the index.
    assert any(r < 100 for c in sync[1] for r in c) and any(r < 100 for c in sync[2] for r in c)


def test_a_failed_search_ahead_falls_back_to_searching_on_the_caller() -> None:
    """The encoder raised (or had nothing) for the batch searched ahead: no hang, the caller searches."""
    from consumer.config import IndexSettings
    from consumer.encoders.base import IndexVector
    from consumer.engine.blocking import Blocker

    def broken() -> np.ndarray:
        raise RuntimeError("encoder failed")

    rng = np.random.default_rng(5)
    vecs = rng.normal(size=(50, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    blocker = Blocker([IndexVector("v", 8, 1.0)], IndexSettings(k=4, ef=8), query_threads=1, background_add=True)
    blocker.advance(vecs[:25], np.arange(25))
    expected = [c.tolist() for c in blocker.candidates(vecs[25:], np.arange(25, 50))]
    for source in (broken, lambda: None):
        got = blocker.candidates(vecs[25:], np.arange(25, 50), blocker.search_ahead(source))
        assert [c.tolist() for c in got] == expected
    assert blocker.ahead_used == 0
    blocker.close()


@pytest.mark.parametrize("n,m,k,levels", [(1, 0, 4, 0), (30, 0, 8, 3), (60, 40, 16, 4), (200, 200, 32, 0),
                                          (50, 50, 64, 2)])
def test_compiled_pool_and_numpy_form_keep_the_same_rows(n: int, m: int, k: int, levels: int) -> None:
    """The compiled top-k and its numpy form (no numba) keep the same rows, ties included: few score levels make many
    ties at the k-th place, NaN scores and -1 padding are mixed in."""
    from consumer.engine.exact_index import TOP_K

    rng = np.random.default_rng(n + 7 * m + k)

    def unit(count: int) -> np.ndarray:
        if levels:  # vectors from a few prototypes: equal scores
            protos = rng.normal(size=(levels, 12)).astype(np.float32)
            v = protos[rng.integers(0, levels, count)]
        else:
            v = rng.normal(size=(count, 12)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    vecs, held = unit(n), unit(m)
    rows = np.arange(5000, 5000 + n, dtype=np.int64)
    held_rows = np.arange(4000, 4000 + m, dtype=np.int64)
    ids = np.stack([rng.choice(4000, size=k, replace=False) for _ in range(n)]).astype(np.int64)
    ids[rng.random((n, k)) < 0.2] = -1  # an index that found fewer than k
    sims = np.round(rng.uniform(-1, 1, size=(n, k)), 1).astype(np.float32)
    sims[rng.random((n, k)) < 0.05] = np.nan
    got = [c.tolist() for c in merge_candidates(ids, sims, vecs, rows, k, held, held_rows)]
    with TOP_K.disabled():
        ref = [c.tolist() for c in merge_candidates(ids, sims, vecs, rows, k, held, held_rows)]
    assert got == ref
    assert all(c == sorted(set(c)) and len(c) <= k for c in got)


def test_ties_at_the_kth_place_go_to_the_earlier_record() -> None:
    """Equal scores at the cut keep the earlier pool entry: index neighbours (in the index's order), then the
    held batch, then the batch: the rule the exact index's own top-k uses, so the cut never depends on how
    a partition happened to order equal values."""
    vecs = np.ones((2, 1), np.float32)  # every exact score is 1.0
    ids = np.array([[7, 3], [7, 3]], np.int64)
    sims = np.array([[1.0, 1.0]] * 2, np.float32)
    held = np.ones((2, 1), np.float32)
    got = merge_candidates(ids, sims, vecs, np.array([20, 21]), 3, held, np.array([10, 11]))
    assert [c.tolist() for c in got] == [[3, 7, 10], [3, 7, 10]]
    got = merge_candidates(np.full((2, 1), -1, np.int64), np.zeros((2, 1), np.float32), vecs,
                           np.array([20, 21]), 2, held, np.array([10, 11]))
    assert [c.tolist() for c in got] == [[10, 11], [10, 11]]
