"""The service's side of a shared Milvus index (`index.backend = "milvus"` under `dedup run`, issue 39).

A mixin of `Service`, apart from the batch state machine in `consumer.service.runner`: it builds the
pipeline's index (the group's collection, `consumer.io.milvus_shared`), publishes the vectors of the records
this member decided *before* their Redis write (so a record in the changelog always has its vector in
Milvus, and a replayed batch writes the same global ids again), and, at start-up against an empty
collection (a new Milvus, or a store written with hnswlib before), writes every held record once.

With `index.backend = "hnswlib"` every method here is a no-op and nothing Milvus is imported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from consumer.config import ServiceSettings, Settings
from consumer.engine.blocking import IndexFactory
from consumer.engine.pipeline import Pipeline
from consumer.service.batch import Batch
from consumer.store.record_state import decode_payloads
from consumer.store.redis import RedisStateStore

__all__ = ["SharedIndexDuties"]

log = logging.getLogger("dedup.service")

#: Rows per publish call while backfilling an empty collection.
BACKFILL_CHUNK = 5000
#: Newest rows whose index-only columns a member on a shared collection keeps (`SignatureStore.recent`):
#: far more than a batch (published right after it is decided) or the records pending in one sync.
RECENT_INDEX_ROWS = 20_000


class SharedIndexDuties:
    """Mixed into `Service`; the attributes below are the service's."""

    settings: Settings
    svc: ServiceSettings
    store: RedisStateStore
    _retry: Callable[..., Any]
    #: The shared index of the current pipeline (None with hnswlib).
    shared_index: Any = None
    #: Records written to an empty collection at the last start-up (`_backfill`).
    backfilled = 0

    def _index_factory(self) -> IndexFactory | None:
        """The pipeline's index: None (the embedded hnswlib) unless `index.backend = "milvus"`."""
        if self.settings.index.backend != "milvus":
            return None
        from consumer.io.milvus_shared import shared_index_factory

        self._built: list[Any] = []
        return shared_index_factory(self.settings, self.svc.redis_prefix, self._built)

    def _bind_index(self, pipe: Pipeline) -> None:
        """Point the index just built at the pipeline's record ids (its rows' names)."""
        if self.settings.index.backend == "milvus":
            self.shared_index = self._built[-1]
            self.shared_index.bind(pipe.store.record_ids)

    def _publish(self, batch: Batch, pipe: Pipeline) -> None:
        """Write the vectors of the batch's new decisions to the group's collection (before the Redis write:
        module docstring). Retried while Milvus is away, like Redis."""
        index = self.shared_index
        if index is None:
            return
        fresh = [d for d in batch.decisions if d.outcome != "replay"]
        if not fresh:
            return
        rows = np.array([d.row for d in fresh], np.int64)
        vecs, ok = self._vectors(pipe, rows)
        ids = [d.record_id for d, has in zip(fresh, ok.tolist()) if has]
        vecs = vecs[ok]
        self._retry("milvus", "publish vectors", lambda: index.publish(vecs, ids), batch)

    def _backfill(self, pipe: Pipeline) -> None:
        """Open the group's collection; if it is empty while this member holds records, write them all once
        (every member that starts then does the same; upserts by global id make that harmless)."""
        index = self.shared_index
        if index is None:
            return
        # Opened here, before the member reports ready: opened by the first search instead, it held the
        # member's first batch for seconds (the client's import, the collection's load) while the group's
        # batches registered meanwhile stopped waiting for it and needed late links (docs/scale-out.md).
        self._retry("milvus", "open the collection", index.open)
        if not len(pipe.store):
            return
        if not self._retry("milvus", "check the collection", index.is_empty):
            return
        t0 = time.perf_counter()
        ids = pipe.store.record_ids
        live = np.array([r for r, rid in enumerate(ids) if rid], np.int64)
        for lo in range(0, len(live), BACKFILL_CHUNK):
            rows = live[lo:lo + BACKFILL_CHUNK]
            vecs, ok = self._vectors(pipe, rows)
            vecs, names = vecs[ok], [ids[r] for r in rows[ok].tolist()]
            self._retry("milvus", "backfill vectors", lambda v=vecs, n=names: index.publish(v, n))
        self.backfilled = len(live)
        log.info("empty milvus collection filled from the state", extra={
            "records": len(live), "collection": index.name, "seconds": round(time.perf_counter() - t0, 2)})

    def _vectors(self, pipe: Pipeline, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index vectors of held rows, and which rows have one. A member on a shared collection keeps the
        index-only columns of its newest rows only (`RECENT_INDEX_ROWS`): older rows' vectors are rebuilt
        from their payloads in Redis (a backfill; a batch just decided is always recent). A row whose
        payload is gone (erased meanwhile) has none."""
        out, held = pipe.held_vectors(rows)
        if held.all():
            return out, held
        others = np.flatnonzero(~held)
        ids = [pipe.store.record_ids[r] for r in rows[others].tolist()]
        states, _ = self._retry("redis", "read payloads", lambda: self.store.fetch_states(ids))
        found = [i for i, rid in enumerate(ids) if rid in states]
        if found:
            cols, _, _ = decode_payloads([states[ids[i]].payload for i in found])
            out[others[found]] = pipe.blocker.vectors(cols)
            held[others[found]] = True
        return out, held
