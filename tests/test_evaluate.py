"""Metrics on toy cases, and the exactness of the prefiltered string baseline."""

from __future__ import annotations

import itertools
import random
from difflib import SequenceMatcher

import numpy as np
import pytest

from consumer.engine.records import Record
from consumer.evaluation.baselines import string_baseline
from consumer.evaluation.evaluate import cluster_scores, pair_scores


def test_cluster_scores_toy() -> None:
    truth = {"a": "1", "b": "1", "c": "1", "d": "2"}
    perfect = cluster_scores({"a": "x", "b": "x", "c": "x", "d": "y"}, truth)
    assert perfect.f1 == 1.0 and perfect.bcubed_f1 == 1.0
    split = cluster_scores({"a": "x", "b": "x", "c": "z", "d": "y"}, truth)
    assert split.precision == 1.0 and split.recall == pytest.approx(1 / 3)
    missing = cluster_scores({}, truth)  # rejected rows count as singletons
    assert missing.recall == 0.0


def test_pair_scores_uses_components_for_bcubed() -> None:
    truth = {"a": "1", "b": "1", "c": "2"}
    s = pair_scores(np.array([[0, 1], [1, 2]]), ["a", "b", "c"], truth)
    assert s.precision == 0.5 and s.recall == 1.0 and s.largest_cluster == 3


def test_string_baseline_is_exact_sequence_matcher() -> None:
    rnd = random.Random(3)
    base = ["Kyle Roberts", "Mark Anderson", "Katie Ward", "Pam Velasquez", "Ricardo Diaz"]
    names = [b if rnd.random() < 0.5 else b.replace("a", "e", 1) for b in base for _ in range(4)]
    recs = [Record(str(i), n, "Joseshire", (), "", "", ()) for i, n in enumerate(names)]
    got = {tuple(p) for p in string_baseline(recs).tolist()}
    want = {(i, j) for i, j in itertools.combinations(range(len(recs)), 2)
            if SequenceMatcher(None, f"{names[i]} Joseshire", f"{names[j]} Joseshire").ratio() >= 0.85}
    assert got == want
