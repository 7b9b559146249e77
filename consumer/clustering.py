"""Incremental clustering in arrival order: join, start, or bridge (merge) clusters, with chaining guards.

Single-link clustering over noisy matches builds giant clusters (one bad link glues two families
together). So:

- a record *joins* the cluster of its best match, but a cluster of 3+ members must also be supported on
  average by the members the record was compared with (`join_support`);
- a record *merges* a second cluster into the first only with more evidence than a join (best score at
  least `match + merge_margin`, and the same support test); otherwise the link is reported as a
  possible duplicate for review instead of applied;
- on a merge the older cluster (lower founding row) keeps its id, so ids are stable and deterministic.

Cluster ids are derived from the founding record id, so the same input gives the same ids, and a replay
cannot mint a new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from consumer.store.record_state import cluster_id_for

__all__ = ["ClusterState", "Assignment", "cluster_id_for"]


@dataclass
class Assignment:
    """What clustering decided for one record."""

    cluster: int  # founding row of the cluster the record ended in
    outcome: str  # "new" | "joined" | "merged"
    merged: list[int] = field(default_factory=list)  # founding rows of clusters absorbed
    #: candidate rows whose link was not applied (review band, or a merge without enough evidence)
    held_back: list[int] = field(default_factory=list)


class ClusterState:
    """row -> cluster (its founding row) and cluster -> member rows."""

    def __init__(self) -> None:
        self.cluster_of: dict[int, int] = {}
        self.members: dict[int, list[int]] = {}

    def size(self, cluster: int) -> int:
        return len(self.members[cluster])

    def largest(self) -> int:
        return max((len(m) for m in self.members.values()), default=0)

    def assign(self, row: int, cand_rows: np.ndarray, scores: np.ndarray, labels: np.ndarray,
               match_threshold: float, merge_margin: float, join_support: float) -> Assignment:
        """Place `row` given its scored candidates (labels: 2 match, 1 possible, 0 no)."""
        if not (labels == 2).any():  # the common case (a record with no match): it founds a cluster
            self.cluster_of[row] = row
            self.members[row] = [row]
            return Assignment(row, "new", [], [])
        by_cluster: dict[int, list[int]] = {}
        cluster_of = self.cluster_of
        for j, cand in enumerate(cand_rows.tolist()):
            c = cluster_of.get(cand)
            if c is not None:
                by_cluster.setdefault(c, []).append(j)

        def best(c: int) -> float:
            return float(max(scores[j] for j in by_cluster[c]))

        def supported(c: int) -> bool:
            idx = by_cluster[c]
            if self.size(c) < 3 or len(idx) < 2:
                return True
            return float(np.mean([scores[j] for j in idx])) >= join_support * match_threshold

        matched = [c for c, idx in by_cluster.items() if any(labels[j] == 2 for j in idx)]
        # Strongest evidence first; ties go to the older cluster (lower founding row): deterministic.
        matched.sort(key=lambda c: (-best(c), c))
        target: int | None = None
        merged: list[int] = []
        held: list[int] = []
        for c in matched:
            if target is None:
                if supported(c):
                    target = c
                else:
                    held.extend(int(cand_rows[j]) for j in by_cluster[c])
            elif best(c) >= match_threshold + merge_margin and supported(c):
                merged.append(c)
            else:
                held.extend(int(cand_rows[j]) for j in by_cluster[c] if labels[j] == 2)

        if target is None:
            self.cluster_of[row] = row
            self.members[row] = [row]
            return Assignment(row, "new", [], held)
        survivor = min([target, *merged])
        for c in [target, *merged]:
            if c != survivor:
                for r in self.members.pop(c):
                    self.cluster_of[r] = survivor
                    self.members[survivor].append(r)
        self.cluster_of[row] = survivor
        self.members[survivor].append(row)
        absorbed = sorted(c for c in [target, *merged] if c != survivor)
        return Assignment(survivor, "merged" if absorbed else "joined", absorbed, held)
