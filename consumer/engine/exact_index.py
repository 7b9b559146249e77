"""Exact candidate search for an index small enough to scan, and the switch to HNSW once it is not.

Why: HNSW pays twice per record, once to insert it (a search of `ef_construction` plus linking) and once to
search for it, and both walk the graph one cache miss at a time. While the index is small, one matrix product
of the batch with every indexed vector (BLAS, ~80 GFLOP/s a core here) plus a compiled top-k is cheaper
than both, and it finds the true top-k instead of most of it. The cost of a scan grows with the index and an
HNSW search's barely does, so past `index.exact_rows` rows `SwitchingIndex` inserts every row it holds into
the HNSW index, in the order they came, and searches that from then on. Measured on a generated 50,000-person
file (256-d vectors, one thread): HNSW insert 8.0 s + search 12.1 s, the scan 8-9 s (docs/benchmarks.md).

Determinism: the top-k is the k largest inner products, ties to the row inserted first; the switch happens
at a row count, not a time; the HNSW index is then built in arrival order, as it would have been row by row.
The numpy form (`_top_k_numpy`) is the no-numba path; the kernel gives the same bits (tests/test_exact_index.py
checks both against the definition, a stable sort).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np

from consumer.engine.compiled import Kernel
from consumer.engine.index import RWLock, VectorIndex, finite_vectors

__all__ = ["ExactIndex", "SwitchingIndex", "TOP_K", "top_k"]

#: Query rows scored per matrix product: most of a product's cost is reading the indexed vectors (BLAS packs
#: them once per call), so one product per batch; 256 rows x 50,000 indexed rows is 51 MB of scores.
ROWS_PER_PRODUCT = 256


def _top_k_raw(sims: np.ndarray, k: int, ids: np.ndarray, vals: np.ndarray) -> None:  # pragma: no cover - compiled
    """Per row of `sims` [q, n]: the k largest columns, best first, ties to the lower column; `ids`/`vals`
    [q, >= k] receive them (columns past n stay as the caller filled them). A bounded heap per row, the worst
    at its root: most columns cost one comparison with the current k-th best."""
    q, n = sims.shape
    kk = min(k, n)
    heap_v = np.empty(kk, np.float32)
    heap_i = np.empty(kk, np.int64)

    def sift(pos: int, size: int) -> None:
        # "worse" = a lower score, or the same score and the later column
        while True:
            worst = pos
            for child in (2 * pos + 1, 2 * pos + 2):
                if child < size and (heap_v[child] < heap_v[worst] or
                                     (heap_v[child] == heap_v[worst] and heap_i[child] > heap_i[worst])):
                    worst = child
            if worst == pos:
                return
            heap_v[pos], heap_v[worst] = heap_v[worst], heap_v[pos]
            heap_i[pos], heap_i[worst] = heap_i[worst], heap_i[pos]
            pos = worst

    for r in range(q):
        row = sims[r]
        for j in range(kk):
            heap_v[j] = row[j]
            heap_i[j] = j
        for start in range(kk // 2 - 1, -1, -1):
            sift(start, kk)
        for j in range(kk, n):
            if row[j] > heap_v[0]:  # strictly better than the worst: a tie keeps the earlier column
                heap_v[0] = row[j]
                heap_i[0] = j
                sift(0, kk)
        for end in range(kk - 1, 0, -1):  # heap sort: the worst goes to the back, so the best ends first
            heap_v[0], heap_v[end] = heap_v[end], heap_v[0]
            heap_i[0], heap_i[end] = heap_i[end], heap_i[0]
            sift(0, end)
        for j in range(kk):
            ids[r, j] = heap_i[j]
            vals[r, j] = heap_v[j]


TOP_K = Kernel(_top_k_raw)


def _top_k_numpy(sims: np.ndarray, k: int, ids: np.ndarray, vals: np.ndarray) -> None:
    """The numpy form (no numba): each row's k-th largest score by a partition, then the columns at or above
    it ordered by (score descending, column ascending), the kernel's order. Not a full sort of every row: a
    batch against 50,000 rows would cost ~1 s."""
    n = sims.shape[1]
    kk = min(k, n)
    cut = np.partition(sims, n - kk, axis=1)[:, n - kk]
    for r in range(len(sims)):
        cols = np.flatnonzero(sims[r] >= cut[r])
        best = cols[np.lexsort((cols, -sims[r, cols]))][:kk]
        ids[r, :kk] = best
        vals[r, :kk] = sims[r, best]


def top_k(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(columns [q, k] int64, -1 padded; scores [q, k] float32, 0 padded) of each row's k best columns."""
    q = sims.shape[0]
    ids = np.full((q, k), -1, np.int64)
    vals = np.zeros((q, k), np.float32)
    if q and sims.shape[1] and k:
        kernel = TOP_K.get()
        (kernel or _top_k_numpy)(np.ascontiguousarray(sims, np.float32), k, ids, vals)
    return ids, vals


class ExactIndex:
    """Every vector in one growing float32 matrix, searched by a matrix product and `top_k`: the
    `VectorIndex` contract (inner product over L2-normalised vectors, ids = the store's rows) without a
    graph. An erased row leaves the matrix at once (the rows after it move up; order is kept)."""

    MAGIC = b"dedup-exact-index\n"

    def __init__(self, dim: int, capacity: int = 1024):
        self.dim = dim
        self._lock = RWLock()
        self._vecs = np.zeros((max(capacity, 16), dim), np.float32)
        self._ids = np.zeros(max(capacity, 16), np.int64)
        self._count = 0  # rows held
        self._added = 0  # rows ever inserted (the `VectorIndex` length: monotonic)

    #: `Blocker` searches hand a whole batch to one `query` call (see ROWS_PER_PRODUCT).
    query_rows = ROWS_PER_PRODUCT

    def __len__(self) -> int:
        return self._added

    @property
    def held(self) -> int:
        """Rows in the matrix now (erased ones gone)."""
        return self._count

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, ids) held, in insertion order (copies)."""
        with self._lock.read():
            return self._vecs[:self._count].copy(), self._ids[:self._count].copy()

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = finite_vectors(vectors)
        with self._lock.write():
            need = self._count + len(ids)
            if need > len(self._ids):
                size = max(need, 2 * len(self._ids))
                self._vecs = np.concatenate([self._vecs[:self._count], np.zeros((size - self._count, self.dim),
                                                                                 np.float32)])
                self._ids = np.concatenate([self._ids[:self._count], np.zeros(size - self._count, np.int64)])
            self._vecs[self._count:need] = vectors
            self._ids[self._count:need] = ids
            self._count = need
            self._added += len(ids)

    def remove(self, ids: np.ndarray) -> int:
        with self._lock.write():
            gone = np.isin(self._ids[:self._count], np.asarray(ids, np.int64))
            done = int(gone.sum())
            if done:
                keep = np.flatnonzero(~gone)
                self._vecs[:len(keep)] = self._vecs[keep]
                self._ids[:len(keep)] = self._ids[keep]
                self._vecs[len(keep):self._count] = 0.0  # nothing of an erased vector stays in memory
                self._count = len(keep)
        return done

    def query(self, vectors: np.ndarray, k: int, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The exact top-k (`ef` is ignored: there is nothing to approximate)."""
        queries = finite_vectors(vectors)
        ids = np.full((len(queries), k), -1, np.int64)
        sims = np.zeros((len(queries), k), np.float32)
        with self._lock.read():
            held = self._vecs[:self._count]
            for lo in range(0, len(queries), ROWS_PER_PRODUCT):
                hi = min(lo + ROWS_PER_PRODUCT, len(queries))
                cols, sims[lo:hi] = top_k(queries[lo:hi] @ held.T, k)
                ids[lo:hi] = np.where(cols >= 0, self._ids[np.maximum(cols, 0)], -1)
        return ids, sims

    def memory_bytes(self) -> int:
        return int(self._vecs.nbytes + self._ids.nbytes)

    def save(self, path: str) -> None:
        vecs, ids = self.rows()
        buf = io.BytesIO()
        np.savez(buf, vecs=vecs, ids=ids, added=np.int64(self._added))
        with open(path, "wb") as fh:
            fh.write(self.MAGIC + buf.getvalue())

    def load(self, path: str, capacity: int) -> None:
        with open(path, "rb") as fh:
            blob = fh.read()
        if not blob.startswith(self.MAGIC):
            raise ValueError(f"{path} is not an exact index file")
        with np.load(io.BytesIO(blob[len(self.MAGIC):]), allow_pickle=False) as z:
            vecs, ids, added = z["vecs"], z["ids"], int(z["added"])
        with self._lock.write():
            size = max(capacity, len(ids), 16)
            self._vecs = np.zeros((size, self.dim), np.float32)
            self._ids = np.zeros(size, np.int64)
            self._vecs[:len(ids)] = vecs
            self._ids[:len(ids)] = ids
            self._count = len(ids)
            self._added = added

    def close(self) -> None:
        """Nothing to release."""

    @classmethod
    def is_file(cls, path: str) -> bool:
        with open(path, "rb") as fh:
            return fh.read(len(cls.MAGIC)) == cls.MAGIC


class SwitchingIndex:
    """`ExactIndex` while it holds at most `exact_rows` rows, then the HNSW index `make_hnsw()` builds, fed
    every held row in insertion order (once, on the insert that would pass the limit) and used from then on.
    Its length counts every row ever inserted, across the switch."""

    def __init__(self, dim: int, exact_rows: int, make_hnsw: Callable[[], VectorIndex]):
        self.dim = dim
        self.exact_rows = exact_rows
        self._make_hnsw = make_hnsw
        self._exact: ExactIndex | None = ExactIndex(dim, capacity=min(exact_rows, 16384))
        self._hnsw: VectorIndex | None = None
        self._before = 0  # rows inserted before the switch (the HNSW index's own length starts after them)

    @property
    def exact(self) -> bool:
        """Whether searches are still exact."""
        return self._exact is not None

    @property
    def query_rows(self) -> int:
        """Rows a search should hand to one `query` call: the active index's preference."""
        return int(getattr(self._active(), "query_rows", 32))

    def _active(self) -> VectorIndex:
        active = self._exact if self._exact is not None else self._hnsw
        assert active is not None
        return active

    def __len__(self) -> int:
        if self._exact is not None:
            return len(self._exact)
        assert self._hnsw is not None
        return self._before + len(self._hnsw)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        if self._exact is not None and self._exact.held + len(ids) > self.exact_rows:
            self._switch()
        self._active().add(vectors, ids)

    def _switch(self) -> None:
        """Build the HNSW index from the held rows (the caller is the one thread that inserts)."""
        assert self._exact is not None
        hnsw = self._make_hnsw()
        vecs, ids = self._exact.rows()
        hnsw.add(vecs, ids)
        self._before = len(self._exact) - len(hnsw)
        self._hnsw, self._exact = hnsw, None  # searches from now on go to the graph, which holds every row

    def remove(self, ids: np.ndarray) -> int:
        return self._active().remove(ids)

    def query(self, vectors: np.ndarray, k: int, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self._active().query(vectors, k, ef)

    def memory_bytes(self) -> int:
        return self._active().memory_bytes()

    def save(self, path: str) -> None:
        self._active().save(path)

    def load(self, path: str, capacity: int) -> None:
        """A saved exact matrix stays exact (if under the limit); a saved graph, or a matrix past the limit,
        makes the HNSW index."""
        if ExactIndex.is_file(path):
            exact = ExactIndex(self.dim)
            exact.load(path, capacity=min(capacity, max(self.exact_rows, 16)))
            self._exact, self._hnsw, self._before = exact, None, 0
            if exact.held > self.exact_rows:
                self._switch()
            return
        hnsw = self._make_hnsw()
        hnsw.load(path, capacity)
        self._exact, self._hnsw, self._before = None, hnsw, 0

    def close(self) -> None:
        self._active().close()
