"""Incremental clustering: join, new, guarded merges, stable ids; the keeper rule."""

from __future__ import annotations

import numpy as np

from consumer.clustering import ClusterState
from consumer.keeper import choose_canonical

T, MARGIN, SUPPORT = 0.5, 0.1, 0.85


def assign(state: ClusterState, row: int, cands: list[int], scores: list[float]) -> object:
    s = np.array(scores, np.float32)
    labels = np.where(s >= T, 2, np.where(s >= 0.3, 1, 0))
    return state.assign(row, np.array(cands, np.int64), s, labels, T, MARGIN, SUPPORT)


def test_new_join_and_possible() -> None:
    st = ClusterState()
    assert assign(st, 0, [], []).outcome == "new"
    a = assign(st, 1, [0], [0.9])
    assert a.outcome == "joined" and a.cluster == 0
    b = assign(st, 2, [0, 1], [0.35, 0.2])
    assert b.outcome == "new" and st.cluster_of[2] == 2


def test_merge_needs_more_evidence_and_older_id_survives() -> None:
    st = ClusterState()
    for r in (0, 1):
        assign(st, r, [], [])
    weak = assign(st, 2, [0, 1], [0.9, 0.55])  # second link above match but below match + margin
    assert weak.outcome == "joined" and weak.merged == [] and weak.held_back == [1]
    strong = assign(st, 3, [1, 0], [0.95, 0.9])
    assert strong.outcome == "merged" and strong.cluster == 0 and strong.merged == [1]
    assert {st.cluster_of[r] for r in range(4)} == {0}


def test_chaining_guard_refuses_a_join_the_cluster_does_not_support() -> None:
    st = ClusterState()
    assign(st, 0, [], [])
    assign(st, 1, [0], [0.9])
    assign(st, 2, [0, 1], [0.9, 0.9])
    # One strong link but the other members disagree: not joined, held back for review.
    a = assign(st, 3, [0, 1, 2], [0.6, 0.05, 0.05])
    assert a.outcome == "new" and set(a.held_back) == {0, 1, 2}


def test_keeper_prefers_complete_recent_representative() -> None:
    rows = np.array([10, 11, 12])
    vecs = np.array([[1.0, 0.0], [0.96, 0.28], [0.0, 1.0]], np.float32)
    completeness = np.array([0.4, 1.0, 1.0], np.float32)
    recency = np.array([100.0, 300.0, 200.0])
    assert choose_canonical(rows, vecs, completeness, recency) == 11
    assert choose_canonical(rows[:1], vecs[:1], completeness[:1], recency[:1]) == 10
