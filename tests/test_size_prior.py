"""The size prior: in a file whose duplicates come in pairs, a third record needs more evidence.

RLdata10000 holds each person at most twice, and its errors left after every pairwise fix were triples: a
namesake ("JUERGEN MUELLER 1964-05-02") matching both records of a true pair ("JUERGEN MUELLER 1964-05-24",
"JUERGEQN MUELLER 1964-05-24") above the threshold. The file's own candidate pairs say how rare a third
record is (`consumer.learn.size_prior.estimate`), and the clustering's re-check asks a group that would grow
past two for that much more log-odds (`Guards.size_penalty`). A file of noisy copies (FEBRL3) gets no penalty.
"""

from __future__ import annotations

import numpy as np
import pytest

from consumer.config import ClusterSettings
from consumer.engine.clustering import Assignment, ClusterState, Guards, size_penalty
from consumer.learn.size_prior import MAX_PENALTY, estimate

T = 0.5
#: 0 and 1: one person (name typo, same date); 2: a namesake one date part away, a match with both.
NAMESAKE = {frozenset((0, 1)): 0.999, frozenset((0, 2)): 0.72, frozenset((1, 2)): 0.64}
#: Three noisy copies of one original: every pair a confident match.
COPIES = {frozenset((0, 1)): 0.999, frozenset((0, 2)): 0.995, frozenset((1, 2)): 0.98}


def place(st: ClusterState, row: int, pairs: dict[frozenset[int], float], penalty: float) -> Assignment:
    """`row` arrives; its candidates are every earlier row, scored from `pairs`."""

    def scorer(left: list[int], right: list[int]) -> np.ndarray:
        return np.array([pairs.get(frozenset((a, b)), 0.0) for a, b in zip(left, right)], np.float32)

    cands = list(range(row))
    s = scorer([row] * len(cands), cands)
    labels = np.where(s >= T, 2, np.where(s >= T / 2, 1, 0))
    g = Guards(T, 0.3, 0.8, 8, 0.5, True, size_penalty=penalty)
    return st.assign(row, np.array(cands, np.int64), s, labels, g, scorer=scorer)


def run(pairs: dict[frozenset[int], float], penalty: float, order: tuple[int, ...] = (0, 1, 2)) -> ClusterState:
    st = ClusterState()
    rename = {old: new for new, old in enumerate(order)}
    arrived = {frozenset(rename[r] for r in k): v for k, v in pairs.items()}
    for row in range(3):
        place(st, row, arrived, penalty)
    return st


def groups(st: ClusterState) -> list[list[int]]:
    return sorted(sorted(m) for m in st.members.values() if m)


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1), (0, 2, 1)])
def test_a_namesake_of_a_pair_is_split_off_under_the_prior(order: tuple[int, ...]) -> None:
    """Whichever record arrives last, the pair stays and the namesake stands alone."""
    st = run(NAMESAKE, penalty=3.0, order=order)
    pair = sorted([order.index(0), order.index(1)])
    assert groups(st) == sorted([pair, [order.index(2)]])


def test_without_the_prior_the_namesake_joins() -> None:
    """The contrast: every pair clears the threshold, so average linkage keeps all three."""
    assert groups(run(NAMESAKE, penalty=0.0)) == [[0, 1, 2]]


def test_three_confident_copies_stay_together_under_the_prior() -> None:
    """The prior asks for more evidence, not for pairs: a third record matching both well still joins."""
    assert groups(run(COPIES, penalty=3.0)) == [[0, 1, 2]]


def _pairs_file(n_pairs: int, singles: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Candidate pairs of a file of `n_pairs` duplicate pairs and `singles` records alone: each record's
    true partner at p 0.98, and two weak candidates per record (p 0.001)."""
    n = 2 * n_pairs + singles
    left = list(range(0, 2 * n_pairs, 2))
    right = list(range(1, 2 * n_pairs, 2))
    p = [0.98] * n_pairs
    rng = np.random.default_rng(0)
    for r in range(n):
        for c in rng.choice(n, 2, replace=False):
            if c != r:
                left.append(r)
                right.append(int(c))
                p.append(0.001)
    return np.array(p), np.array(left), np.array(right), n


def test_a_file_of_pairs_gets_a_penalty_and_a_file_of_copies_none() -> None:
    p, left, right, n = _pairs_file(200, 1600)  # share_first 0.2, share_second 1 / 401
    pairs = estimate(p, left, right, n)
    assert pairs["share_first"] == 0.2 and pairs["share_second"] < 0.01
    assert pairs["penalty"] >= 2.0
    # Groups of four noisy copies: every duplicated record has three partners.
    members = np.arange(800).reshape(200, 4)
    ii, jj = np.triu_indices(4, 1)
    left, right = members[:, ii].ravel(), members[:, jj].ravel()
    copies = estimate(np.full(len(left), 0.97), left, right, 2000)
    assert copies["share_second"] > 0.9 and copies["penalty"] == 0.0


def test_the_estimate_counts_a_pair_listed_twice_once_and_is_capped() -> None:
    """Each record of a pair proposes the other (both directions logged): one pair. 2,000 pairs among
    4,000 records and none with a second partner: log(1 / (1 / 4001)) is far past the cap."""
    left, right = np.arange(0, 4000, 2), np.arange(1, 4000, 2)
    once = estimate(np.full(2000, 0.9), left, right, 4000)
    twice = estimate(np.full(4000, 0.9), np.concatenate([left, right]), np.concatenate([right, left]), 4000)
    assert once == twice and once["share_first"] == 1.0 and once["penalty"] == MAX_PENALTY
    assert estimate(np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64), 10)["penalty"] == 0.0
    assert estimate(np.full(3, 0.2), np.arange(3), np.arange(1, 4), 10)["penalty"] == 0.0  # no likely partner


def test_the_penalty_comes_from_the_model_or_its_base_and_can_be_turned_off() -> None:
    fitted = {"kind": "fellegi-sunter", "size_prior": {"penalty": 2.9}}
    labelled = {"kind": "labelled", "base": fitted}
    assert size_penalty(fitted) == size_penalty(labelled) == 2.9
    assert size_penalty(fitted, "off") == 0.0
    assert size_penalty({"kind": "forest"}) == 0.0 and size_penalty(None) == 0.0
    assert ClusterSettings().size_prior == "auto"


@pytest.mark.parametrize(("sizes", "low", "high"), [((1, 2), 1.5, MAX_PENALTY), ((1, 3, 4), 0.0, 0.3)])
def test_a_fit_without_labels_estimates_the_prior_of_its_file(tmp_path, sizes, low, high) -> None:
    """End to end: `dedup batch --profile person` fits the file and its model carries the file's prior; a
    file of pairs gets one, a file of three or four noisy copies (nearly) none."""
    from consumer.config import load_settings
    from consumer.io.batch import run_batch
    from tests.test_person_profile import febrl_like

    src = tmp_path / "people.csv"
    febrl_like(src, n_people=400, sizes=sizes)
    summary, pipe = run_batch(src, tmp_path / "out.jsonl", load_settings(profile="person", env={}), progress=False)
    try:
        prior = pipe.fuser.model.meta["size_prior"]
        assert low <= prior["penalty"] <= high, prior
        assert pipe.guards.size_penalty == prior["penalty"]
    finally:
        pipe.close()
