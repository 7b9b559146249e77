"""Erasure (GDPR Art. 17): forget records in the pipeline's memory, then re-check the clusters they left.

Pure: records (ids) in, decisions out. Two steps, because in a group every member applies the first and
only one member may decide the second:

- `erase`: the record leaves the signature store (id gone, columns zeroed), the HNSW graph (vector
  overwritten, then marked deleted), the term-frequency counts, its cluster and the keeper state. If it
  founded its cluster, the rest is re-keyed under the earliest remaining record (cluster ids derive from
  founding records, so the old id ends). Every replica does exactly this when it reads the erasure in the
  changelog, whoever received the erasure.
- `recheck`: the cluster the rest now forms is re-clustered from all its member pairs (the same
  average-linkage split as after a disagreeing join, down to two members): when the erased record was
  what held it together, it splits. The keeper is chosen again. One member decides this (the service
  claims each erasure in Redis) and writes the pieces as splits, which the others apply like any split.

A mixin of `Pipeline`, like `PersistedState`; the methods stay `Pipeline` methods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from consumer.engine.blocking import Blocker
from consumer.engine.clustering import ClusterState, Guards, cluster_id_for
from consumer.engine.decisions import Split
from consumer.engine.frequencies import FrequencyTable
from consumer.engine.keys import KeyBlocker
from consumer.store.memory import SignatureStore

__all__ = ["Erased", "Rechecked", "Erasure"]


@dataclass
class Erased:
    """What erasing one record id did to this pipeline."""

    record_id: str
    #: False: the id is unknown here (never seen, or erased already): nothing changed.
    found: bool
    #: The cluster the record was in, by its id before the erasure.
    cluster_id: str | None = None
    #: The record founded that cluster: the rest now has another id (the earliest remaining record's).
    founder: bool = False
    #: The cluster's keeper before the erasure (to tell subscribers when it changed).
    previous_canonical_id: str | None = None
    #: Record ids left in the cluster (what `recheck` looks at).
    rest: list[str] = field(default_factory=list)


@dataclass
class Rechecked:
    """The re-check of the cluster an erased record left: where the rest is, and any split."""

    record_id: str
    #: The cluster holding the rest (the earliest remaining record's piece); None when none is left.
    cluster_id: str | None
    canonical_id: str | None
    previous_canonical_id: str | None
    #: The cluster whose records moved: the old id when the founder was erased (every record moved), else
    #: the rest's cluster when it split. None: nothing moved.
    split_cluster_id: str | None = None
    #: The pieces, each with every record id it holds (for a founder: every piece, the kept one included).
    pieces: list[Split] = field(default_factory=list)


class Erasure:
    """Mixed into `Pipeline`; the attributes below are the pipeline's."""

    store: SignatureStore
    clusters: ClusterState
    frequencies: FrequencyTable
    blocker: Blocker
    keys: KeyBlocker | None
    answers: Any  # Answers | None (`consumer.engine.answers`)
    canonical: dict[int, int]
    guards: Guards
    fuser: Any
    update_canonical: Callable[[int, list[int]], None]
    score_pairs: Callable[[Sequence[int], Sequence[int]], np.ndarray]

    def erase(self, record_ids: Iterable[str]) -> list[Erased]:
        """Forget each record (unknown ids: `found=False`, nothing changes; erasing twice is a no-op)."""
        out: list[Erased] = []
        rows: list[int] = []
        ids = self.store.record_ids
        for rid in record_ids:
            row = self.store.row_of.get(rid)
            if row is None or row in rows:
                out.append(Erased(rid, False))
                continue
            rows.append(row)
            cluster = self.clusters.cluster_of[row]
            old_id = cluster_id_for(ids[cluster])
            keeper = self.canonical.get(cluster)
            previous = ids[keeper] if keeper is not None else None
            _, rest = self.clusters.remove(row)
            self.canonical.pop(cluster, None)
            if rest:
                self.update_canonical(self.clusters.cluster_of[rest[0]], [])
            out.append(Erased(rid, True, old_id, cluster == row, previous, [ids[r] for r in rest]))
        if rows:  # the per-row work batched: one gather, one index pass (the topic erases hundreds a poll)
            idx = np.array(rows, np.int64)
            gathered = self.store.gather(idx)
            self.frequencies.forget(gathered)
            if self.keys is not None:
                self.keys.remove(gathered, rows)
            self.blocker.remove(idx)
            for row in rows:
                self.store.erase(row)
                if self.answers is not None:  # the erased record's answers no longer reach its row
                    self.answers.forget(row)
        return out

    def recheck(self, erased: Erased) -> Rechecked:
        """Re-cluster what `erased` left behind; a split is applied here and returned as pieces."""
        ids = self.store.record_ids
        rows = [r for r in (self.store.row_of.get(x) for x in erased.rest) if r is not None]
        if not rows:
            return Rechecked(erased.record_id, None, None, erased.previous_canonical_id)
        key = self.clusters.cluster_of[rows[0]]
        with self.fuser.thread_limits():
            split = self.clusters.recheck(key, self.score_pairs, self.guards)
        self.update_canonical(key, [])
        for founder, _ in split:
            self.update_canonical(founder, [])
        pieces = [Split(cluster_id_for(ids[f]), ids[f], ids[self.canonical[f]], [ids[r] for r in sorted(m)])
                  for f, m in split]
        kept = cluster_id_for(ids[key])
        canonical = ids[self.canonical[key]]
        if erased.founder:  # every record changed cluster: the kept piece is announced too
            members = sorted(self.clusters.members[key])
            pieces.insert(0, Split(kept, ids[key], canonical, [ids[r] for r in members]))
            return Rechecked(erased.record_id, kept, canonical, erased.previous_canonical_id,
                             erased.cluster_id, pieces)
        return Rechecked(erased.record_id, kept, canonical, erased.previous_canonical_id,
                         kept if pieces else None, pieces)
