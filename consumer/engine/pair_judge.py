"""Pairs of stored rows judged on demand: what the clustering asks about records beyond a batch's candidates.

A mixin of `Pipeline` (it uses the pipeline's store, comparator, frequencies, fuser and answers), kept in its
own module so `consumer.engine.pipeline` holds the decide path; the methods stay `Pipeline` methods. Every
pair is compared and fused as a candidate pair is (the rarity of `left`'s values as counted so far), so a
replay or a restored consumer decides the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from consumer.engine.answers import with_support
from consumer.engine.clustering import Guards
from consumer.engine.comparison import Comparator
from consumer.engine.frequencies import FrequencyTable
from consumer.store.memory import SignatureStore

__all__ = ["PairJudging"]


class PairJudging:
    """Mixed into `Pipeline`; the attributes below are the pipeline's."""

    store: SignatureStore
    comparator: Comparator
    frequencies: FrequencyTable
    fuser: Any  # Fuser (`consumer.engine.fusion`)
    answers: Any  # Answers | None (`consumer.engine.answers`)
    guards: Guards

    def score_pairs(self, left: Sequence[int], right: Sequence[int]) -> np.ndarray:
        """Fused scores of pairs of known rows: the clustering's average linkage over members the search did
        not return. Called under the thread limit."""
        return self.judge_pairs(left, right)[0]

    def judge_pairs(self, left: Sequence[int], right: Sequence[int]
                    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """`score_pairs`, whether each pair conflicts (`Comparator.conflicts`) and what holds about them
        (`with_support`: the user's answers, answered pairs scoring as answered, else `Support`), at once."""
        if not len(left):
            return np.zeros(0, np.float32), None, None
        feats = self.compare_pairs(left, right)
        scores, said = self.fuser.score(feats)[0], None
        if self.answers is not None:
            scores, said = self.answers.apply(left, right, scores)
        return scores, self.comparator.conflicts(feats), with_support(said, self.fuser.supported(feats))

    def join_vetoes(self, left: Sequence[int], right: Sequence[int]) -> np.ndarray | None:
        """Per pair, whether `left[i]` may not join a cluster holding `right[i]` however it scored: a decisive
        conflict or a learned floor (`Comparator.join_conflicts`), or the user's "no"; None when the profile
        can say neither (nothing compared)."""
        said = self.answers.said(left, right) if self.answers is not None and len(left) else None
        if not len(left) or not (self.comparator.vetoes_joins or said is not None):
            return None
        feats = self.compare_pairs(left, right) if self.comparator.vetoes_joins else None
        return self._vetoes(feats, said, len(left))

    def candidate_vetoes(self, feats: np.ndarray, said: np.ndarray | None) -> np.ndarray | None:
        """`join_vetoes` of a batch's candidate pairs from the features the batch compared already and the
        user's answers about them (`said`); None where the clustering reads no veto (not partner mode)."""
        if not (self.guards.partner and self.guards.join_veto is not None):
            return None
        return self._vetoes(feats, said, len(feats))

    def _vetoes(self, feats: np.ndarray | None, said: np.ndarray | None, n: int) -> np.ndarray | None:
        """The join conflicts of compared pairs (`feats`; None: not compared) or'd with the answered "no"s."""
        out = self.comparator.join_conflicts(feats) if feats is not None else None
        if said is None:
            return out
        no = np.asarray(said) < 0
        return no if out is None else out | no

    def compare_pairs(self, left: Sequence[int], right: Sequence[int]) -> np.ndarray:
        """The comparator's features [P, F] of the pairs (left[i], right[i]) of known rows, as candidate
        pairs get them (labelled pairs the candidate search never proposed are compared this way)."""
        skip, rows = self.comparator.unused_columns, (np.asarray(left, np.int64), np.asarray(right, np.int64))
        a, b = self.store.gather(rows[0], skip), self.store.gather(rows[1], skip)
        return self.comparator.compare(a, b, self.frequencies.pair_rarity(a, b, rows))
