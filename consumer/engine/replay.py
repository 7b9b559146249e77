"""Candidates found once, used twice: the fit to a file and the run over it share one candidate search.

`dedup batch` on a file it fits weights to (the person profile; any profile without a shipped model) runs
the engine over the file twice: once to read the comparison vectors the fit learns from, once to decide
with the fitted weights. When the fit read the whole file (up to `FIT_FLOOR` records) both passes insert the
same vectors into the same kind of index in the same order and ask it the same questions, so the second
pass's candidate lists are the first pass's (HNSW inserts on one thread in arrival order and searches are
deterministic: `consumer.engine.blocking`). The fit pass records them (`RecordingBlocker`), and the run
reads them back (`ReplayBlocker`) instead of building a second graph and searching it again: on
RLdata10000 that was a third of the run (index inserts 1.2 s on the second core, searches 2.1 s).

What makes it safe: a list is reused only for a row that holds the same record id as in the fit pass; at
the first row that does not (a file that changed between the passes, a sampled fit), the replay stops,
every row stored so far goes into the real index, and the run searches as it always does from there on.
Everything after the blocker (exact-key candidates, source links, scoring, clustering) runs unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from consumer.encoders.base import Columns
from consumer.engine.blocking import Blocker, Search
from consumer.store.memory import SignatureStore

__all__ = ["CandidateLog", "RecordingBlocker", "ReplayBlocker"]


@dataclass
class CandidateLog:
    """The blocker's candidate rows per store row of one pass, and the record id each row held."""

    cands: dict[int, np.ndarray] = field(default_factory=dict)
    record_ids: list[str] = field(default_factory=list)

    def matches(self, store: SignatureStore, rows: np.ndarray) -> bool:
        """Does every row hold the record it held in the logged pass (and have a logged list)?"""
        ids = store.record_ids
        return all(0 <= r < len(self.record_ids) and ids[r] == self.record_ids[r] and r in self.cands
                   for r in (int(x) for x in rows))


class _Proxy:
    """Everything a `Blocker` has, from the blocker it wraps (the stage timers, `spec`, `index`, `close`)."""

    def __init__(self, inner: Blocker) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class RecordingBlocker(_Proxy):
    """A `Blocker` that writes every candidate list it returns into `log` (the fit pass)."""

    def __init__(self, inner: Blocker, log: CandidateLog) -> None:
        super().__init__(inner)
        self.log = log

    def candidates(self, vecs: np.ndarray, rows: np.ndarray, ahead: Search | None = None,
                   take: np.ndarray | None = None) -> list[np.ndarray]:
        out = self.inner.candidates(vecs, rows, ahead, take)
        for r, c in zip(np.asarray(rows, np.int64).tolist(), out):
            self.log.cands[r] = c
        return out


class ReplayBlocker(_Proxy):
    """A `Blocker` that answers from `log` while the store's rows are the logged pass's, then searches.

    While replaying nothing is inserted or searched (`advance` and `search_ahead` do nothing) and index
    vectors are not even assembled (`vectors` gives zero-width rows). `live` says whether it has stopped."""

    def __init__(self, inner: Blocker, log: CandidateLog, store: SignatureStore) -> None:
        super().__init__(inner)
        self.log = log
        self.store = store
        self.live = False
        self.replayed = 0

    def vectors(self, cols: Columns) -> np.ndarray:
        if self.live:
            return self.inner.vectors(cols)
        return np.zeros((len(next(iter(cols.values()))) if cols else 0, 0), np.float32)

    def candidates(self, vecs: np.ndarray, rows: np.ndarray, ahead: Search | None = None,
                   take: np.ndarray | None = None) -> list[np.ndarray]:
        rows = np.asarray(rows, np.int64)
        if not self.live and self.log.matches(self.store, rows):
            self.replayed += len(rows)
            return [self.log.cands[r].copy() for r in rows.tolist()]
        if not self.live:
            self._go_live(rows)
            ahead = None
        if vecs.shape[1] == 0:  # encoded while replaying: assembled from the store now
            vecs = self._stored_vectors(rows)
        return self.inner.candidates(vecs, rows, ahead, take)

    def _go_live(self, rows: np.ndarray) -> None:
        """Stop replaying before `rows` are searched: the rows stored before them go into the index."""
        self.live = True
        self.log.cands.clear()
        before = np.setdiff1d(np.arange(len(self.store), dtype=np.int64), rows)
        before = before[[bool(self.store.record_ids[r]) for r in before.tolist()]]  # not erased rows
        if len(before):
            self.inner.add(self._stored_vectors(before), before)

    def _stored_vectors(self, rows: np.ndarray) -> np.ndarray:
        """Index vectors of stored rows, from the columns the store keeps (it keeps the index-only ones)."""
        return self.inner.vectors(self.store.gather(rows))

    def advance(self, vecs: np.ndarray, rows: np.ndarray) -> None:
        if self.live:
            self.inner.advance(vecs if vecs.shape[1] else self._stored_vectors(np.asarray(rows, np.int64)), rows)

    def search_ahead(self, vectors: Callable[[], np.ndarray | None]) -> Search | None:
        """Live only, and never for a batch encoded while replaying (its rows have no vectors yet)."""
        if not self.live:
            return None

        def ready() -> np.ndarray | None:
            vecs = vectors()
            return None if vecs is None or vecs.shape[1] == 0 else vecs

        return self.inner.search_ahead(ready)

    def add(self, vecs: np.ndarray, rows: np.ndarray) -> None:
        """Rows decided elsewhere must be searchable: the replay ends (their lists were never logged)."""
        if not self.live:
            self._go_live(np.zeros(0, np.int64))
        self.inner.add(vecs if vecs.shape[1] else self._stored_vectors(np.asarray(rows, np.int64)), rows)

    def remove(self, rows: Sequence[int] | np.ndarray) -> None:
        """An erased row may be a logged candidate: end the replay first, then erase as usual."""
        if not self.live:
            self._go_live(np.zeros(0, np.int64))
        self.inner.remove(np.asarray(rows, np.int64))
