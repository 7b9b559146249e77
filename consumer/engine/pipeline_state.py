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
from consumer.engine.decisions import Encoded
from consumer.engine.frequencies import FrequencyTable
from consumer.engine.keys import KeyBlocker
from consumer.engine.records import Record
from consumer.store.memory import Columns, SignatureStore
from consumer.store.record_state import RecordState, decode_payloads, encode_rows

__all__ = ["PersistedState", "keeper_inputs"]


def keeper_inputs(records: Sequence[Record]) -> tuple[np.ndarray, np.ndarray]:
    """(completeness float32, recency float64: the last login's epoch seconds, 0 without one) per record."""
    recency = np.array([r.login_times[-1].timestamp() if r.login_times else 0.0 for r in records])
    return np.array([r.completeness() for r in records], np.float32), recency


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

    #: Encode each batch's payloads on the encode thread (`encode_ahead`): set by a caller that persists
    #: every decision (the service). Why: compressing them was ~7% of the deciding thread's time at 500
    #: records/s, and zlib lets go of the GIL, so on the encode thread it runs beside the decisions.
    payloads_ahead: bool = False
    #: The last processed batch's payloads by row, when they were encoded ahead (`stash_payloads`).
    _stashed: dict[int, bytes] | None = None

    # -- state --------------------------------------------------------------------------------------------
    def encode_payloads(self, records: Sequence[Record], cols: Columns) -> tuple[list[bytes] | None, tuple[str, ...]]:
        """(payloads, their column names) of records encoded ahead, or (None, ()) unless `payloads_ahead`.
        The bytes `snapshot` would write: the columns a payload carries (`SignatureStore.persisted`), in the
        order given; `stash_payloads` uses them only where that is the store's order."""
        if not self.payloads_ahead or not records:
            return None, ()
        kept = self.store.persisted(cols)
        return encode_rows(kept, *keeper_inputs(records)), tuple(kept)

    def stash_payloads(self, rows: np.ndarray, encoded: Encoded | None, take: np.ndarray | None | bool) -> None:
        """Keep the payloads encoded ahead for the rows just appended (`take`: which of `encoded`'s rows they
        are, None = all), for `snapshot`; only while the store's columns are exactly the ones encoded, in the
        same order (else a gather would give other bytes). Replaces the previous batch's."""
        payloads = None if encoded is None or take is False else encoded.payloads
        if payloads is None or tuple(self.store.persisted_columns()) != encoded.payload_columns:  # type: ignore[union-attr]
            self._stashed = None
            return
        picked = payloads if take is None else [payloads[int(i)] for i in take]  # type: ignore[union-attr]
        self._stashed = dict(zip(rows.tolist(), picked))

    def snapshot(self, rows: Iterable[int]) -> list[RecordState]:
        """Persistable state of the given rows (after `process`): what a durable store keeps. One gather
        for all rows: the service persists every new record of every micro-batch (measured). Rows of the
        last batch whose payloads were encoded ahead use those bytes (the same: same columns, same keeper
        inputs), unless erased since."""
        rows = [int(r) for r in rows]
        if not rows:
            return []
        ids = self.store.record_ids
        stash = self._stashed or {}
        payloads = [stash.get(row) if ids[row] else None for row in rows]
        missing = [i for i, p in enumerate(payloads) if p is None]
        if missing:
            idx = np.array([rows[i] for i in missing], np.int64)
            held = self.store.holds(idx)
            for part in (held, ~held):
                if part.any():  # rows with every column (`SignatureStore.holds`), then the rest
                    sub = idx[part]
                    encoded = encode_rows(self.store.gather(sub), self.store.completeness[sub], self.store.recency[sub])
                    for i, payload in zip(np.flatnonzero(part).tolist(), encoded):
                        payloads[missing[i]] = payload
        return [RecordState(ids[row], row, ids[self.clusters.cluster_of[row]], payload)  # type: ignore[arg-type]
                for row, payload in zip(rows, payloads)]

    def held_vectors(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index vectors of `rows`, and which rows have one: those the store `holds` every column of (all,
        but where a ring keeps the index-only columns of the newest rows only); zeros for the rest."""
        rows = np.asarray(rows, np.int64)
        held = self.store.holds(rows)
        if held.all():
            return self.blocker.vectors(self.store.gather(rows)), held
        out = np.zeros((len(rows), sum(v.size for v in self.blocker.spec)), np.float32)
        if held.any():
            out[held] = self.blocker.vectors(self.store.gather(rows[held]))
        return out, held

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
