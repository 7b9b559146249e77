"""`search_width`: the candidate policy (k, ef) as the index grows (issue 11)."""

from __future__ import annotations

import dataclasses

import numpy as np

from consumer.config import IndexSettings
from consumer.encoders.base import IndexVector
from consumer.engine.blocking import Blocker, search_width


def test_fixed_while_small_then_growing_and_capped() -> None:
    s = IndexSettings()
    assert search_width(s, 0) == (s.k, s.ef)
    first = min(s.k_from, s.ef_from)
    assert search_width(s, first) == (s.k, s.ef)  # files up to that size: exactly the fixed policy of before
    sizes = (first + 1, s.ef_from * 2, s.k_from, s.k_from * 2, s.k_from * 10, 10**9)
    widths = [search_width(s, n) for n in sizes]
    ks, efs = [w[0] for w in widths], [w[1] for w in widths]
    assert ks == sorted(ks) and efs == sorted(efs)  # never shrinks as the index grows
    assert search_width(s, s.k_from)[0] == s.k  # k grows only past k_from (it costs deciding time)
    assert search_width(s, 2 * s.k_from)[0] > s.k and search_width(s, 2 * s.ef_from)[1] > s.ef
    assert widths[-1] == (s.k_max, s.ef_max)
    assert all(ef >= k for k, ef in widths)


def test_zero_growth_is_the_fixed_policy() -> None:
    s = dataclasses.replace(IndexSettings(), k_growth=0.0, ef_growth=0.0)
    assert {search_width(s, n) for n in (0, 10**5, 10**7)} == {(s.k, s.ef)}


def test_blocker_uses_the_grown_k() -> None:
    s = dataclasses.replace(IndexSettings(), k=2, ef=4, k_from=10, ef_from=10, k_growth=1.0,
                            ef_growth=1.0, k_max=8)
    b = Blocker([IndexVector("v", 4, 1.0)], s)
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(60, 4)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    b.add(vecs[:40], np.arange(40))
    cands = b.candidates(vecs[40:41], np.array([40]))
    assert len(cands[0]) == search_width(s, 40)[0] == 8
