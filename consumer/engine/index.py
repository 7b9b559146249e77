"""The HNSW candidate index: hnswlib behind a lock, grown on demand, deterministic.

Why a wrapper: hnswlib's `add_items` is not safe alongside `knn_query`, `knn_query` fails outright when
asked for more neighbours than the index holds, and `mark_deleted` only hides vectors. Callers never touch
hnswlib directly; they get `add` and `query`.

Determinism: a fixed `random_seed` and single-threaded adds in arrival order make the same input build the
same graph, so the same file gives the same candidates and clusters.

`VectorIndex` is the seam the `Blocker` talks to: `CandidateIndex` is the embedded implementation, and an
adapter outside the engine (`consumer.io.milvus_index`, `index.backend = "milvus"`) is the shared one. The
engine never imports a client library; the adapter is handed in (`Pipeline(index_factory=...)`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import hnswlib
import numpy as np

from consumer.engine.cores import usable_cores

__all__ = ["RWLock", "CandidateIndex", "IndexUnavailable", "VectorIndex", "finite_vectors"]


class IndexUnavailable(Exception):
    """A remote index could not answer (its server away or too slow): not the records' fault. Why its own type:
    the service's poison-pill guard must not dead-letter a batch for it, but undo the attempt and retry it
    (as while Redis is away); the embedded index never raises it."""


class VectorIndex(Protocol):
    """What the `Blocker` needs of a candidate index: inner product over L2-normalised vectors, ids = the
    store's row numbers. Implementations must keep `query`'s contract (-1 ids / 0 similarities pad a row
    when fewer than k are found) and make `remove`d rows unfindable at once (erasure)."""

    dim: int

    def __len__(self) -> int:
        """Rows inserted through this object so far (erased ones included): monotonic."""
        ...

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Insert rows (in the given order)."""
        ...

    def remove(self, ids: np.ndarray) -> int:
        """Erase rows; returns how many were there (as far as the index can tell)."""
        ...

    def query(self, vectors: np.ndarray, k: int, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (ids [n, k] int64, similarities [n, k] float32) per query row."""
        ...

    def memory_bytes(self) -> int:
        """Bytes this process holds for the index."""
        ...

    def save(self, path: str) -> None:
        """Write the index to a file (snapshots)."""
        ...

    def load(self, path: str, capacity: int) -> None:
        """Replace the index with a saved one."""
        ...

    def close(self) -> None:
        """Release connections or threads (idempotent)."""
        ...


class RWLock:
    """Many readers or one writer; writers are not starved (new readers wait while one is queued)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class CandidateIndex:
    """Inner-product HNSW over L2-normalised vectors; ids are the store's row numbers."""

    def __init__(self, dim: int, m: int = 16, ef_construction: int = 200, ef: int = 96, seed: int = 42,
                 capacity: int = 16384, query_threads: int | None = None):
        self.dim = dim
        self._params = (m, ef_construction, ef, seed)
        self._query_threads = query_threads if query_threads and query_threads > 0 else usable_cores()
        self._lock = RWLock()
        #: Slots of erased rows not yet reused (inserts replace them first).
        self._deleted = 0
        self._added = 0
        self._index = self._new(max(capacity, 16))

    def _new(self, capacity: int) -> hnswlib.Index:
        m, efc, ef, seed = self._params
        index = hnswlib.Index(space="ip", dim=self.dim)
        # allow_replace_deleted: the slots of erased rows are reused by later inserts (`remove`).
        index.init_index(max_elements=capacity, ef_construction=efc, M=m, random_seed=seed,
                         allow_replace_deleted=True)
        index.set_ef(ef)
        index.set_num_threads(1)
        return index

    def __len__(self) -> int:
        """Rows ever inserted (erased ones included): monotonic, so a search run ahead can tell that an
        insert happened since even when it reused an erased row's slot."""
        return self._added

    @property
    def capacity(self) -> int:
        return self._index.get_max_elements()

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add rows in the given order (single-threaded, so the graph is reproducible)."""
        if len(ids) == 0:
            return
        vectors = finite_vectors(vectors)
        with self._lock.write():
            need = self._index.get_current_count() + len(ids)
            if need > self._index.get_max_elements():
                self._index.resize_index(max(need, 2 * self._index.get_max_elements()))
            self._index.add_items(vectors, np.asarray(ids, dtype=np.int64), num_threads=1,
                                  replace_deleted=self._deleted > 0)
            self._deleted = max(0, self._deleted - len(ids))
            self._added += len(ids)

    def remove(self, ids: np.ndarray) -> int:
        """Erase rows from the graph (GDPR erasure); returns how many were there. hnswlib's `mark_deleted`
        only hides a vector, so each one is first overwritten with zeros (a saved graph, i.e. a snapshot,
        then holds nothing of it) and then marked deleted; its slot is reused by a later insert."""
        zero = np.zeros((1, self.dim), np.float32)
        done = 0
        with self._lock.write():
            for row in (int(r) for r in ids):
                try:  # a row never inserted, or deleted already, is refused by hnswlib: nothing to erase
                    self._index.add_items(zero, np.array([row], np.int64), num_threads=1)
                    self._index.mark_deleted(row)
                except RuntimeError:
                    continue
                done += 1
            self._deleted += done
        return done

    def query(self, vectors: np.ndarray, k: int, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (ids, similarities) per query row; -1 ids pad rows when the index holds fewer than k.
        `ef`: this query's search breadth (default: the one the index was built with; at least k). Safe from
        several threads at once (the blocker's add thread and deciding thread share a batch, with one ef:
        the search policy is a function of the index size, which does not change while a batch is searched)."""
        n = vectors.shape[0]
        queries = finite_vectors(vectors)
        with self._lock.read():
            out = self._query(queries, k, ef, fallback=False)
        if out is None:
            # The row-by-row fallback changes the index's ef while it runs: alone, never beside a search.
            with self._lock.write():
                out = self._query(queries, k, ef, fallback=True)
        assert out is not None
        labels, dist, kk = out
        ids = np.full((n, k), -1, np.int64)
        sims = np.zeros((n, k), np.float32)
        if kk:
            ids[:, :kk] = labels
            sims[:, :kk] = 1.0 - dist  # hnswlib's "ip" distance is 1 - dot
        ids[ids < 0] = -1
        return ids, sims

    def _query(self, queries: np.ndarray, k: int, ef: int | None,
               fallback: bool) -> tuple[np.ndarray, np.ndarray, int] | None:
        """hnswlib's knn_query under the caller's lock; None when it refused and `fallback` is off."""
        count = self._index.get_current_count()
        kk = min(k, count)
        if kk == 0 or len(queries) == 0:
            return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32), 0
        ef = max(ef or self._params[2], kk)
        if self._index.ef != ef:
            self._index.set_ef(ef)
        try:
            # Queries are independent of each other, so running them on every core changes no result.
            labels, dist = self._index.knn_query(queries, k=kk, num_threads=self._query_threads)
        except RuntimeError:
            if not fallback:
                return None
            # hnswlib refuses the whole batch when one query reaches fewer than k points (seen after
            # ~60k fuzzed records); per row, with growing ef and then a smaller k, never raise.
            labels, dist = self._query_rows(queries, kk, ef, count)
        return labels, dist, kk

    def _query_rows(self, queries: np.ndarray, kk: int, ef: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Row-by-row fallback of `query` (caller holds the read lock); missing neighbours are -1 / dist 1."""
        labels = np.full((len(queries), kk), -1, np.int64)
        dist = np.ones((len(queries), kk), np.float32)
        for i, row in enumerate(queries):
            k_row, ef_row = kk, ef
            while k_row > 0:
                self._index.set_ef(ef_row)
                try:
                    lab, d = self._index.knn_query(row[None, :], k=k_row, num_threads=1)
                except RuntimeError:
                    if ef_row < count:
                        ef_row = min(count, ef_row * 4)
                    else:
                        k_row //= 2
                    continue
                labels[i, :k_row], dist[i, :k_row] = lab[0], d[0]
                break
        self._index.set_ef(ef)
        return labels, dist

    def save(self, path: str) -> None:
        """hnswlib's own file of the graph (a snapshot: loading it is far faster than re-inserting)."""
        with self._lock.read():
            self._index.save_index(path)

    def load(self, path: str, capacity: int) -> None:
        """Replace the graph with a saved one (labels are the rows it was saved with)."""
        m, efc, ef, seed = self._params
        index = hnswlib.Index(space="ip", dim=self.dim)
        index.load_index(path, max_elements=max(capacity, 16), allow_replace_deleted=True)
        index.set_ef(ef)
        index.set_num_threads(1)
        with self._lock.write():
            self._index = index
            self._deleted = 0  # a saved graph's deleted slots are simply not reused
            self._added = index.get_current_count()

    def memory_bytes(self) -> int:
        """Approximate resident size: vectors + graph links (hnswlib's own layout)."""
        m = self._params[0]
        per = self.dim * 4 + (2 * m) * 4 + 8 + 4 + m * 4 * 0.5
        return int(self.capacity * per)

    def close(self) -> None:
        """Nothing to release: the graph lives in this process and goes with it."""


def finite_vectors(vectors: np.ndarray) -> np.ndarray:
    """Contiguous float32 with NaN/inf zeroed: one bad vector must not poison the shared graph."""
    out = np.ascontiguousarray(vectors, dtype=np.float32)
    if not np.isfinite(out).all():
        out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    return out
