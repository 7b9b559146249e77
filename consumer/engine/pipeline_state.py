"""The pipeline's persisted state: a row's durable form (`snapshot`), and loading records decided elsewhere
(`restore` into an empty pipeline, `absorb` the other members' records) without scoring or events.

A mixin of `Pipeline` (it uses the pipeline's store, clusters, frequencies, blocker and keeper), kept in its
own module so `consumer.engine.pipeline` holds the decide path; the methods stay `Pipeline` methods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import cached_property

import numpy as np

from consumer.encoders.base import Encoder
from consumer.engine.blocking import Blocker
from consumer.engine.clustering import ClusterState
from consumer.engine.frequencies import FrequencyTable
from consumer.engine.keys import KeyBlocker
from consumer.store.memory import SignatureStore
from consumer.store.record_state import RecordState, decode_payloads, encode_rows

__all__ = ["PersistedState"]


class PersistedState:
    """Mixed into `Pipeline`; the attributes below are the pipeline's."""

    store: SignatureStore
    clusters: ClusterState
    frequencies: FrequencyTable
    blocker: Blocker
    keys: KeyBlocker | None
    update_canonical: Callable[[int, list[int]], None]
    encoders: Sequence[Encoder]

    @cached_property
    def declared_columns(self) -> frozenset[str]:
        """The columns this version's encoders store: what persisted state may bring back. A payload or
        snapshot of an older version may carry one nothing reads any more (the person profile's date
        vector), which would only take memory."""
        return frozenset(c for e in self.encoders for c in e.contribution.columns)

    # -- state --------------------------------------------------------------------------------------------
    def snapshot(self, rows: Iterable[int]) -> list[RecordState]:
        """Persistable state of the given rows (after `process`): what a durable store keeps. One gather
        for all rows: the service persists every new record of every micro-batch (measured)."""
        rows = [int(r) for r in rows]
        if not rows:
            return []
        idx = np.array(rows)
        payloads = encode_rows(self.store.gather(idx), self.store.completeness[idx], self.store.recency[idx])
        ids = self.store.record_ids
        return [RecordState(ids[row], row, ids[self.clusters.cluster_of[row]], payload)
                for row, payload in zip(rows, payloads)]

    def restore(self, states: Iterable[RecordState]) -> int:
        """Load persisted records into this (empty) pipeline in arrival order, rebuilding the index, the
        clusters, the canonical records and the term frequencies; returns how many were loaded. Rebuilding
        in arrival order reproduces the same rows, index and ids, so a restarted consumer decides exactly as
        the one it replaces would have."""
        if len(self.store):
            raise ValueError("restore() needs an empty pipeline")
        return len(self.absorb(states))

    def absorb(self, states: Iterable[RecordState]) -> np.ndarray:
        """Append records decided elsewhere (another consumer, a snapshot, Redis) with the cluster their
        decider gave them, in arrival order: no scoring, no events. Returns their rows. A founder this
        pipeline does not know makes the record found its own cluster (as `restore` always did)."""
        items = sorted(states, key=lambda s: s.seq)
        if not items:
            return np.zeros(0, np.int64)
        cols, completeness, recency = decode_payloads([s.payload for s in items])
        cols = {k: v for k, v in cols.items() if k in self.declared_columns}
        rows = self.store.append([s.record_id for s in items], cols, completeness, recency)
        row_of, cluster_of, members = self.store.row_of, self.clusters.cluster_of, self.clusters.members
        touched: set[int] = set()
        for s, row in zip(items, rows):
            founder = row_of.get(s.founder_id, int(row))
            cluster = cluster_of.get(founder, founder)
            cluster_of[int(row)] = cluster
            members.setdefault(cluster, []).append(int(row))
            touched.add(cluster)
        for c in touched:
            self.update_canonical(c, [])
        self.frequencies.observe(cols)
        self.blocker.add(self.blocker.vectors(cols), rows)
        if self.keys is not None:  # the key columns are stored columns: the table rebuilds from them
            self.keys.add(cols, rows)
        return rows
