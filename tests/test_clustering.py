"""Incremental clustering: join, new, guarded merges, stable ids; the keeper rule."""

from __future__ import annotations

import numpy as np

from consumer.engine.clustering import ClusterState
from consumer.engine.keeper import choose_canonical

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


def reference_keeper(rows: np.ndarray, vectors: np.ndarray, completeness: np.ndarray, recency: np.ndarray,
                     alpha: float = 0.7) -> int:
    """The keeper's rule written with numpy's plain calls (the form before it was made faster)."""
    if len(rows) == 1:
        return int(rows[0])
    centroid = vectors.mean(axis=0)
    norm = float(np.linalg.norm(centroid))
    sim = vectors @ (centroid / norm) if norm > 0 else np.zeros(len(rows))
    span = float(recency.max() - recency.min())
    rec = (recency - recency.min()) / span if span > 0 else np.ones(len(rows))
    score = alpha * sim + (1.0 - alpha) * (0.6 * completeness + 0.4 * rec)
    best = np.flatnonzero(score >= score.max() - 1e-9)
    return int(rows[best[np.argmin(rows[best])]])


def test_keeper_chooses_as_the_plain_numpy_rule_does_ties_included() -> None:
    rng = np.random.default_rng(5)
    vecs = rng.standard_normal((2000, 64)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    completeness = rng.random(2000).astype(np.float32)
    recency = rng.integers(0, 10**9, 2000).astype(np.float64)
    for t in range(3000):
        rows = rng.choice(2000, int(rng.integers(1, 15)), replace=False).astype(np.int64)
        v, c, r = vecs[rows].copy(), completeness[rows].copy(), recency[rows].copy()
        if t % 3 == 0:
            v[:] = v[0]  # identical text: the tie goes by quality, then to the earliest row
        if t % 5 == 0:
            r[:] = 0.0  # no recency spread
        if t % 7 == 0:
            v[:] = 0.0  # a zero centroid
        assert choose_canonical(rows, v, c, r) == reference_keeper(rows, v, c, r)


# -- average linkage (issue 11): evidence that holds for the clusters, not one bridging pair ------------------
def linked(state: ClusterState, row: int, cands: list[int], scores: list[float], truth: dict[frozenset[int], float],
           calls: list[int] | None = None) -> object:
    """`assign` with Guards and a scorer that reads pair scores from `truth` (0.0 when absent)."""
    from consumer.engine.clustering import Guards

    def scorer(left: list[int], right: list[int]) -> np.ndarray:
        if calls is not None:
            calls.append(len(left))
        return np.array([truth.get(frozenset((a, b)), 0.0) for a, b in zip(left, right)], np.float32)

    s = np.array(scores, np.float32)
    labels = np.where(s >= T, 2, np.where(s >= 0.3, 1, 0))
    return state.assign(row, np.array(cands, np.int64), s, labels, Guards(T, MARGIN, SUPPORT, 8, 0.5, True),
                        scorer=scorer)


def test_a_record_that_resembles_two_people_cannot_bridge_them() -> None:
    """Two Johnsons (clusters {0,1} and {2,3}) that do not resemble each other; record 4 matches one member
    of each strongly. Single link would glue them; the cross-cluster mean score vetoes the merge."""
    st = ClusterState()
    pairs = {frozenset((0, 1)): 0.9, frozenset((2, 3)): 0.9, frozenset((4, 0)): 0.95, frozenset((4, 1)): 0.8,
             frozenset((4, 2)): 0.95, frozenset((4, 3)): 0.8}
    linked(st, 0, [], [], pairs)
    linked(st, 1, [0], [0.9], pairs)
    linked(st, 2, [], [], pairs)
    linked(st, 3, [2], [0.9], pairs)
    a = linked(st, 4, [0, 2], [0.95, 0.95], pairs)  # 1 and 3 not among its candidates: scored on demand
    assert a.outcome == "joined" and a.merged == [] and a.held_back == [2]
    assert st.cluster_of[2] == st.cluster_of[3] == 2 and st.cluster_of[4] == 0


def test_clusters_that_agree_are_still_merged() -> None:
    st = ClusterState()
    pairs = {frozenset((a, b)): 0.85 for a in range(5) for b in range(5) if a != b}
    for r in (0, 2):
        linked(st, r, [], [], pairs)
    linked(st, 1, [0], [0.9], pairs)
    a = linked(st, 3, [0, 2], [0.95, 0.95], pairs)
    assert a.outcome == "merged" and a.cluster == 0 and a.merged == [2]
    assert {st.cluster_of[r] for r in range(4)} == {0}


def test_join_needs_the_members_the_candidate_search_missed_to_agree() -> None:
    """Record 3 matches the newest member of a 3-member cluster only; the two members it was not compared
    with are scored on demand and disagree: it starts its own cluster instead of extending a chain."""
    st = ClusterState()
    pairs = {frozenset((0, 1)): 0.9, frozenset((1, 2)): 0.9, frozenset((0, 2)): 0.7, frozenset((3, 2)): 0.7}
    linked(st, 0, [], [], pairs)
    linked(st, 1, [0], [0.9], pairs)
    linked(st, 2, [1, 0], [0.9, 0.7], pairs)
    calls: list[int] = []
    a = linked(st, 3, [2], [0.7], pairs, calls)
    assert calls == [2]  # members 0 and 1, scored in one call
    assert a.outcome == "new" and a.held_back == [2]


def test_later_evidence_splits_a_cluster_and_the_largest_piece_keeps_the_id() -> None:
    """{0,1} and {2,3} were glued by weak evidence (cross score 0.3). Record 4 joins {0,1}'s side and
    disagrees with 2 and 3: re-checked from all member pairs, the cluster splits; {0,1,4} keeps id 0 and
    {2,3} becomes a cluster named after its earliest record."""
    st = ClusterState()
    for r in range(4):
        st.cluster_of[r] = 0
    st.members[0] = [0, 1, 2, 3]
    pairs = {frozenset((0, 1)): 0.9, frozenset((2, 3)): 0.9, frozenset((4, 0)): 0.9, frozenset((4, 1)): 0.9}
    pairs.update({frozenset((a, b)): 0.3 for a in (0, 1) for b in (2, 3)})
    a = linked(st, 4, [0, 1], [0.9, 0.9], pairs)
    assert a.outcome == "joined" and a.cluster == 0 and a.split_from == 0
    assert a.splits == [(2, [2, 3])]
    assert sorted(st.members[0]) == [0, 1, 4] and st.members[2] == [2, 3]
    assert [st.cluster_of[r] for r in range(5)] == [0, 0, 2, 2, 0]


def test_no_split_when_the_cluster_holds_together() -> None:
    st = ClusterState()
    for r in range(3):
        st.cluster_of[r] = 0
    st.members[0] = [0, 1, 2]
    pairs = {frozenset((a, b)): 0.8 for a in range(3) for b in range(3) if a != b}
    pairs.update({frozenset((3, 0)): 0.95, frozenset((3, 1)): 0.9, frozenset((3, 2)): 0.1})
    a = linked(st, 3, [0, 1], [0.95, 0.9], pairs)
    assert a.outcome == "joined" and a.splits == [] and a.split_from is None
    assert sorted(st.members[0]) == [0, 1, 2, 3]
