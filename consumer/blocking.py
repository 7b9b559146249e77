"""Blocking (candidate generation): which earlier records a new record is compared with.

One HNSW index over a *composite* vector, itself a small late fusion of modality embeddings, built from
the encoders' declared index vectors (`Contribution.index`); for the built-in encoders:

    v = normalise([0.5 * transformer, 1.0 * name char-grams, 0.5 * city char-grams, 0.6 * login hours])

so the inner product is a weighted sum of per-modality cosines. Measured on generated CRM data (README):
the transformer vector alone reaches only ~0.91 of true pairs at k=32 (it is weak on typos and initials),
character grams alone ~0.97, the composite >= 0.99. A record is also compared with the most similar
earlier records of its own micro-batch (exact, since they are not indexed yet), so batch boundaries never
hide a duplicate.

How many neighbours, and how hard to search for them, grows with the index (`search_width`, issue 11):
exact search over these vectors on the held-out generator reaches 0.984 of true pairs at k=32 with 10k
records but 0.960 at 100k (the misses are heavily edited duplicates: name-gram cosine ~0.5 to the partner,
outranked by strangers that are merely similar, not by exact namesakes), and HNSW at a fixed ef=128 found
only 0.941 at 100k (the graph loses more of the true top-k as it grows).

Inserting a batch into the HNSW graph is pure C++ that releases the GIL, and its result is first needed by
the *next* batch's query. With `background_add`, `add` therefore runs on its own thread while the caller
compares, fuses and clusters, and every later use of the index waits for it first: inserts happen in the
same order as before, so the graph, and every candidate list, is the same as with synchronous adds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from consumer.config import IndexSettings
from consumer.encoders.base import Columns, IndexVector
from consumer.index import CandidateIndex

__all__ = ["index_vectors", "merge_candidates", "search_width", "Blocker"]


def index_vectors(cols: Columns, spec: Sequence[IndexVector]) -> np.ndarray:
    """The composite, L2-normalised index vector of each record."""
    parts = [cols[v.column].astype(np.float32) * v.weight for v in spec]
    v = np.hstack(parts)
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norm > 0, norm, 1.0)


def search_width(settings: IndexSettings, size: int) -> tuple[int, int]:
    """(k, ef) for a search of an index holding `size` records: the configured k/ef while the index is
    small, then each growing as a power of the index size past its own start (`k_from` / `ef_from`),
    capped at k_max / ef_max and never below the configured k/ef.

    Why grow: with a fixed ef HNSW finds a smaller share of the exact top-k in a larger graph, and with a
    fixed k more strangers outrank a typo'd or renamed duplicate as the index grows. A power law because
    those strangers grow with the index, but sub-linearly (README, *Accuracy as the file grows*). ef starts
    growing earlier than k: it costs search time only, where k costs scoring on the deciding thread. A pure
    function of the size, so any thread that knows the size it searches gets the same answer.
    """
    k = _grown(settings.k, size, settings.k_from, settings.k_growth, settings.k_max)
    ef = _grown(settings.ef, size, settings.ef_from, settings.ef_growth, settings.ef_max)
    return k, max(ef, k)


def _grown(base: int, size: int, start: int, growth: float, cap: int) -> int:
    if size <= start or growth <= 0:
        return base
    return max(base, min(cap, round(base * (size / start) ** growth)))


#: Sort key of an empty slot: below any cosine (-1) and any NaN-mapped score, so it is never kept.
_EMPTY = -np.inf
#: Score of a real candidate whose similarity is NaN: kept only when there is room, as before.
_NAN_SCORE = -2.0


def merge_candidates(ids: np.ndarray, sims: np.ndarray, vecs: np.ndarray, rows: np.ndarray,
                     k: int) -> list[np.ndarray]:
    """Per batch record: the k most similar of its index neighbours (`ids`/`sims`, -1 = none) and the
    earlier records of its batch (`vecs[:i]`, rows `rows[:i]`), as sorted unique row arrays."""
    n = len(rows)
    if n == 0:
        return []
    local = vecs @ vecs.T
    earlier = np.tri(n, n, -1, dtype=bool)  # j < i: only earlier records of the batch
    valid = np.hstack([ids >= 0, earlier])
    score = np.hstack([sims.astype(np.float32, copy=False), local.astype(np.float32, copy=False)])
    score = np.where(np.isnan(score), _NAN_SCORE, score)
    score[~valid] = _EMPTY
    pool = np.hstack([ids, np.broadcast_to(rows, (n, n))])
    width = pool.shape[1]
    if width > k:
        top = np.argpartition(-score, k - 1, axis=1)[:, :k]
        pool = np.take_along_axis(pool, top, axis=1)
        valid = np.take_along_axis(valid, top, axis=1)
    counts = valid.sum(axis=1)
    # Empty slots sort last (max int), so each row's valid candidates are a sorted prefix.
    keyed = np.sort(np.where(valid, pool, np.iinfo(np.int64).max), axis=1)
    return [keyed[i, :c] for i, c in enumerate(counts.tolist())]


class Blocker:
    """Top-k candidates from the index plus the top-k earlier records of the same batch."""

    def __init__(self, spec: Sequence[IndexVector], settings: IndexSettings, query_threads: int | None = None,
                 background_add: bool = False):
        if not spec:
            raise ValueError("no encoder contributes an index vector: blocking needs at least one")
        self.k = settings.k
        self.settings = settings
        self.spec = tuple(spec)
        self._index = CandidateIndex(sum(v.size for v in self.spec), m=settings.m,
                                     ef_construction=settings.ef_construction,
                                     ef=settings.ef, seed=settings.seed, capacity=settings.initial_capacity,
                                     query_threads=settings.query_threads or query_threads)
        self._background = background_add
        self._adder: ThreadPoolExecutor | None = None
        self._pending: Future[float] | None = None
        #: Seconds spent inserting (on the add thread when in background) and waiting for an insert.
        self.add_seconds = 0.0
        self.wait_seconds = 0.0

    def vectors(self, cols: Columns) -> np.ndarray:
        """Index vectors of encoded records (the input of `candidates` and `add`)."""
        return index_vectors(cols, self.spec)

    @property
    def index(self) -> CandidateIndex:
        """The index with every submitted add applied."""
        self.settle()
        return self._index

    def settle(self) -> None:
        """Wait for a background add (re-raising its error, if any)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            t0 = time.perf_counter()
            self.add_seconds += pending.result()
            self.wait_seconds += time.perf_counter() - t0

    def candidates(self, vecs: np.ndarray, rows: np.ndarray) -> list[np.ndarray]:
        """Candidate rows per batch record (sorted, unique); `vecs` from `vectors`.

        One pass over the whole batch, no per-record Python work: the index's top-k and every earlier
        record of the batch are laid side by side, and each row keeps its k best valid entries. That is
        the same set as "index top-k plus the batch's top-k, then the k best of both" (an entry of the
        batch outside its own top-k can never be among the k best overall).
        """
        index = self.index  # waits for the previous batch's insert
        k, ef = search_width(self.settings, len(index))
        ids, sims = index.query(vecs, k, ef)
        return merge_candidates(ids, sims, vecs, np.asarray(rows, np.int64), k)

    def add(self, vecs: np.ndarray, rows: np.ndarray) -> None:
        """Insert rows (after any earlier insert); returns at once with `background_add`."""
        self.settle()
        if not self._background:
            self.add_seconds += self._timed_add(vecs, rows)
            return
        if self._adder is None:
            self._adder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="index-add")
        self._pending = self._adder.submit(self._timed_add, vecs, rows)

    def close(self, wait: bool = True) -> None:
        """Stop the add thread (after any submitted insert; `wait=False` returns at once)."""
        adder, self._adder = self._adder, None
        if adder is not None:
            adder.shutdown(wait=wait)

    def _timed_add(self, vecs: np.ndarray, rows: np.ndarray) -> float:
        t0 = time.perf_counter()
        self._index.add(vecs, rows)
        return time.perf_counter() - t0
