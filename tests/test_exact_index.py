"""The exact candidate search (`consumer.engine.exact_index`): the true top-k, the same bits compiled or not,
erasure at once, snapshots, and the switch to HNSW at `index.exact_rows` rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from consumer.config import IndexSettings, Settings, exact_rows, load_settings
from consumer.encoders.base import IndexVector
from consumer.engine.blocking import Blocker
from consumer.engine.exact_index import TOP_K, ExactIndex, SwitchingIndex, top_k
from consumer.engine.index import CandidateIndex


def _unit(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _hnsw(dim: int = 16) -> CandidateIndex:
    return CandidateIndex(dim, m=12, ef_construction=64, ef=64, capacity=64, query_threads=1)


@pytest.mark.parametrize(("rows", "cols", "k"), [(7, 3, 5), (9, 40, 8), (64, 5000, 32), (3, 100, 0), (5, 1, 1)])
def test_top_k_is_the_k_best_ties_to_the_earlier_column_compiled_or_not(rows: int, cols: int, k: int) -> None:
    sims = np.round(np.random.default_rng(rows).normal(size=(rows, cols)), 1).astype(np.float32)  # many ties
    ids, vals = top_k(sims, k)
    with TOP_K.disabled():
        ref_ids, ref_vals = top_k(sims, k)
    assert np.array_equal(ids, ref_ids) and np.array_equal(vals, ref_vals)
    kk = min(k, cols)
    assert (ids[:, kk:] == -1).all() and (vals[:, kk:] == 0).all()
    for r in range(rows):  # the definition: sort by (score descending, column ascending)
        want = sorted(range(cols), key=lambda c: (-sims[r, c], c))[:kk]
        assert ids[r, :kk].tolist() == want


def test_exact_index_returns_the_true_top_k_and_forgets_erased_rows(tmp_path: Path) -> None:
    v = _unit(500)
    idx = ExactIndex(16, capacity=16)  # grows on demand
    idx.add(v[:300], np.arange(1000, 1300))
    idx.add(v[300:], np.arange(1300, 1500))
    ids, sims = idx.query(v[:20], 10)
    full = v[:20] @ v.T
    assert np.array_equal(ids, 1000 + np.argsort(-full, axis=1, kind="stable")[:, :10])
    assert np.allclose(sims, np.sort(full, axis=1)[:, ::-1][:, :10], atol=1e-6)
    assert idx.remove(np.array([1000, 1001, 99])) == 2 and len(idx) == 500 and idx.held == 498
    ids, _ = idx.query(v[:2], 5)
    assert 1000 not in ids and 1001 not in ids
    assert not np.any(np.all(idx._vecs[idx.held:] == v[0], axis=1))  # the erased vector's bytes are gone
    path = str(tmp_path / "index.bin")
    idx.save(path)
    again = ExactIndex(16)
    again.load(path, capacity=64)
    assert len(again) == 500 and np.array_equal(again.query(v[:20], 10)[0], idx.query(v[:20], 10)[0])


def test_fewer_rows_than_k_pad_with_minus_one() -> None:
    idx = ExactIndex(16)
    ids, sims = idx.query(_unit(3), 4)
    assert (ids == -1).all() and (sims == 0).all()
    idx.add(_unit(2), np.array([5, 6]))
    ids, sims = idx.query(_unit(3), 4)
    assert sorted(ids[0, :2].tolist()) == [5, 6] and (ids[:, 2:] == -1).all() and (sims[:, 2:] == 0).all()


def test_switches_to_the_graph_once_past_the_limit_with_every_row_in_it(tmp_path: Path) -> None:
    v = _unit(400)
    idx = SwitchingIndex(16, exact_rows=250, make_hnsw=_hnsw)
    idx.add(v[:200], np.arange(200))
    idx.remove(np.array([3]))
    assert idx.exact and len(idx) == 200 and idx.query_rows > 32
    idx.add(v[200:251], np.arange(200, 251))  # 250 held: still exact
    assert idx.exact
    path = str(tmp_path / "exact.bin")
    idx.save(path)
    idx.add(v[251:300], np.arange(251, 300))
    assert not idx.exact and len(idx) == 300 and idx.query_rows == 32
    ids, _ = idx.query(v[:300], 1)
    found = set(ids[:, 0].tolist())
    assert 3 not in found and len(found - set(range(300))) == 0 and len(found) >= 290  # the graph holds them
    restored = SwitchingIndex(16, exact_rows=250, make_hnsw=_hnsw)
    restored.load(path, capacity=1024)
    assert restored.exact and len(restored) == 251
    graph = str(tmp_path / "graph.bin")
    idx.save(graph)
    restored.load(graph, capacity=1024)
    assert not restored.exact and len(restored) == 299


def test_blocker_candidates_the_same_with_the_add_thread_or_without() -> None:
    """Search-ahead hands an exact index the whole batch; the candidates are those of the plain path."""
    v = _unit(600, dim=8, seed=3)
    spec = [IndexVector("v", 8, 1.0)]
    settings = IndexSettings(k=6, ef=32, m=8, ef_construction=32)

    def run(background: bool, limit: int) -> list[list[int]]:
        blocker = Blocker(spec, settings, background_add=background, exact_rows=limit)
        out: list[list[int]] = []
        for lo in range(0, 600, 50):
            vecs, rows = v[lo:lo + 50], np.arange(lo, lo + 50)
            ahead = blocker.search_ahead(lambda vecs=vecs: vecs)
            out += [c.tolist() for c in blocker.candidates(vecs, rows, ahead)]
            blocker.advance(vecs, rows)
        blocker.close()
        return out

    assert run(True, 10_000) == run(False, 10_000)
    assert run(True, 300) == run(False, 300)


def test_exact_rows_comes_from_the_profile_unless_set() -> None:
    assert exact_rows(Settings()) == 0
    person = load_settings(None, env={}, profile="person")
    assert exact_rows(person) == 50_000
    assert exact_rows(load_settings(None, env={"DEDUP_INDEX__EXACT_ROWS": "0"}, profile="person")) == 0
    assert exact_rows(load_settings(None, env={"DEDUP_INDEX__EXACT_ROWS": "1000"})) == 1000
    assert Settings().fingerprint() == load_settings(None, env={}).fingerprint()
