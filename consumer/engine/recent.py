"""The vectors this process inserted (and the rows it erased) in the last few seconds, searched exactly.

Why: a shared index that answers fast does not show its newest writes at once. Milvus under Bounded
consistency searches a snapshot up to its graceful time (5 s by default) old, so a twin arriving a moment
after its original would not find it; Strong consistency would, at the price of waiting for every write
(measured on the standalone server: ~215 ms per search call against ~3 ms under Bounded). Keeping what this
process wrote in the last `seconds` in memory, and searching it exactly beside the index, closes that gap
for the cost of a few thousand vectors: after `seconds` the index shows the rows itself. Rows erased in
that window are likewise remembered (`hidden`), so an index that still shows them can be told to leave them
out.

Pure (numpy, a clock handed in): the adapter around a remote index (`consumer.io.milvus_index`) uses it,
and it is tested without a server. `merge_hits` combines its hits with the index's.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

__all__ = ["RecentVectors", "merge_hits"]


class RecentVectors:
    """Exact inner-product search over the rows added in the last `seconds` (thread-safe)."""

    def __init__(self, dim: int, seconds: float, clock: Callable[[], float] = time.monotonic,
                 max_rows: int | None = None):
        """`max_rows`: keep at most this many (the newest) rows, whatever their age. Why: a member of a group
        that loads its whole state at start-up adds every row at once; only the newest can still be missing
        from a Bounded search, and an exact product over a million rows would stall every batch for
        `seconds`. None: no cap (a process adds only what it inserts, at its own rate)."""
        self.dim = dim
        self.seconds = seconds
        self.max_rows = max_rows
        self._clock = clock
        self._lock = threading.Lock()
        #: (time added, ids, vectors) per `add` call, oldest first.
        self._chunks: deque[tuple[float, np.ndarray, np.ndarray]] = deque()
        #: Erased row -> when; hidden from the index's answers until the index shows the erasure itself.
        self._hidden: dict[int, float] = {}
        #: Concatenation of the chunks, rebuilt lazily after a change (searches outnumber adds).
        self._flat: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return sum(len(ids) for _, ids, _ in self._chunks)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Remember rows just written to the index (a row written again is no longer hidden)."""
        if self.seconds <= 0 or len(ids) == 0:
            return
        ids = np.asarray(ids, np.int64)
        vecs = np.asarray(vectors, dtype=np.float32)
        if self.max_rows is not None and len(ids) > self.max_rows:
            ids, vecs = ids[len(ids) - self.max_rows:], vecs[len(vecs) - self.max_rows:]
        ids = ids.copy()
        vecs = np.ascontiguousarray(vecs).copy()
        with self._lock:
            for row in ids.tolist():
                self._hidden.pop(row, None)
            self._chunks.append((self._clock(), ids, vecs))
            self._flat = None
            self._expire()
            self._cap()

    def remove(self, ids: np.ndarray) -> int:
        """Forget erased rows and hide them from the index's answers for `seconds`; returns how many of
        them were held here."""
        gone = set(np.asarray(ids, np.int64).tolist())
        held = 0
        with self._lock:
            now = self._clock()
            for row in gone:
                self._hidden[row] = now
            kept: deque[tuple[float, np.ndarray, np.ndarray]] = deque()
            for t, rows, vecs in self._chunks:
                keep = ~np.isin(rows, list(gone))
                held += int((~keep).sum())
                if keep.any():
                    kept.append((t, rows[keep], vecs[keep]))
            self._chunks = kept
            self._flat = None
            self._expire()
        return held

    def hidden(self) -> list[int]:
        """Rows erased within the window (sorted): an index answering from an older snapshot may still hold
        them, so its searches must leave them out."""
        with self._lock:
            self._expire()
            return sorted(self._hidden)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k (ids, similarities) per query row among the recent rows; -1 / 0 pad."""
        n = len(queries)
        ids = np.full((n, k), -1, np.int64)
        sims = np.zeros((n, k), np.float32)
        with self._lock:
            self._expire()
            if self._flat is None and self._chunks:
                self._flat = (np.concatenate([c[1] for c in self._chunks]),
                              np.concatenate([c[2] for c in self._chunks]))
            flat = self._flat if self._chunks else None
        if flat is None or n == 0 or k == 0:
            return ids, sims
        rows, vecs = flat
        score = np.asarray(queries, np.float32) @ vecs.T
        kk = min(k, len(rows))
        top = np.argpartition(-score, kk - 1, axis=1)[:, :kk] if kk < len(rows) else \
            np.broadcast_to(np.arange(len(rows)), (n, len(rows)))
        best = np.take_along_axis(score, top, axis=1)
        order = np.argsort(-best, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        ids[:, :kk] = rows[top]
        sims[:, :kk] = np.take_along_axis(best, order, axis=1)
        return ids, sims

    def memory_bytes(self) -> int:
        with self._lock:
            return sum(r.nbytes + v.nbytes for _, r, v in self._chunks) + 64 * len(self._hidden)

    def _cap(self) -> None:
        """Drop the oldest rows beyond `max_rows` (caller holds the lock)."""
        if self.max_rows is None:
            return
        extra = sum(len(r) for _, r, _ in self._chunks) - self.max_rows
        while extra > 0 and self._chunks:
            t, rows, vecs = self._chunks.popleft()
            if len(rows) > extra:
                self._chunks.appendleft((t, rows[extra:], vecs[extra:]))
                extra = 0
            else:
                extra -= len(rows)
            self._flat = None

    def _expire(self) -> None:
        """Drop what the index shows by itself now (caller holds the lock)."""
        cutoff = self._clock() - self.seconds
        while self._chunks and self._chunks[0][0] < cutoff:
            self._chunks.popleft()
            self._flat = None
        if self._hidden and min(self._hidden.values()) < cutoff:
            self._hidden = {r: t for r, t in self._hidden.items() if t >= cutoff}


def merge_hits(a_ids: np.ndarray, a_sims: np.ndarray, b_ids: np.ndarray, b_sims: np.ndarray,
               k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k most similar of two hit lists (-1 = none), each row id once with its best similarity,
    most similar first; -1 / 0 pad (the `VectorIndex.query` contract)."""
    n = len(a_ids)
    out_ids = np.full((n, k), -1, np.int64)
    out_sims = np.zeros((n, k), np.float32)
    ids = np.hstack([a_ids, b_ids])
    sims = np.hstack([a_sims, b_sims]).astype(np.float32)
    sims = np.where(ids >= 0, sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")
    ids = np.take_along_axis(ids, order, axis=1)
    sims = np.take_along_axis(sims, order, axis=1)
    for i in range(n):
        row, first = np.unique(ids[i], return_index=True)
        keep = np.sort(first[row >= 0])[:k]  # the first (best) occurrence of each id, in rank order
        out_ids[i, :len(keep)] = ids[i, keep]
        out_sims[i, :len(keep)] = sims[i, keep]
    return out_ids, out_sims
