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

The index lags one micro-batch behind (issue 14): batch i's candidates are the HNSW top-k over every
batch up to i-2, plus *exact* inner products with every record of batch i-1 (the held batch) and with the
earlier records of batch i itself; the k best of all of them are kept. Batch i-1 is inserted while batch i
is decided (`advance`). That fixed rule is what makes the search movable: with `background_add`, one
thread (C++ that releases the GIL) inserts batch i-1 and then searches batch i+1, already encoded, against
the index as it is then, while the deciding thread compares, fuses and clusters batch i. The search
result is used only when the index held exactly the rows it must (`Search.indexed`); otherwise the
deciding thread searches itself. Inserts happen in arrival order either way, so the graph, every
candidate list and every decision are the same with or without the background thread.

Anything that makes the index whole before the next batch (`add` for absorbed records, the `index`
property a snapshot saves) inserts the held batch first; the following batch then finds those records
through the index rather than exactly, a difference only where HNSW misses a neighbour.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from consumer.config import IndexSettings
from consumer.encoders.base import Columns, IndexVector
from consumer.engine.candidate_pool import merge_candidates
from consumer.engine.exact_index import SwitchingIndex
from consumer.engine.index import CandidateIndex, VectorIndex

__all__ = ["index_vectors", "merge_candidates", "search_width", "Blocker", "IndexFactory", "Search"]

#: Builds the candidate index for vectors of a given size (`index.backend` other than the embedded hnswlib:
#: the adapter lives outside the engine, which does no I/O, and is handed in).
IndexFactory = Callable[[int], VectorIndex]


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
    those strangers grow with the index, but sub-linearly (docs/benchmarks.md, *Accuracy as the file grows*). ef starts
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


class Search:
    """A batch's index search started ahead of its turn (`Blocker.search_ahead`), split into chunks of rows
    that the add thread and, once it arrives, the deciding thread both take: when the add thread is the
    busier one, the deciding thread helps instead of waiting. Each row's result depends only on the row and
    the index, which does not change meanwhile (nothing is inserted until the batch's `advance`), so who
    searched which chunk changes nothing."""

    CHUNK = 32

    def __init__(self, vectors: Callable[[], np.ndarray | None]):
        self._vectors = vectors
        self._cond = threading.Condition()
        self._ready = False  # the add thread has the vectors, and the index holds what it must search
        self._next = 0  # first row not yet taken
        self._busy = 0  # chunks taken and not finished
        self.failed = False
        self.vecs: np.ndarray | None = None
        #: Rows the index held when searched: the result stands only if that is still the index's size.
        self.indexed = -1
        #: The blocker's erasure count when searched (an erasure since makes the result stale).
        self.removals = -1
        self.k = 0
        self.chunk = self.CHUNK
        self.ids = np.zeros((0, 0), np.int64)
        self.sims = np.zeros((0, 0), np.float32)

    def start(self, blocker: Blocker) -> float:
        """On the add thread, after every insert submitted before it: fetch the vectors, then search."""
        try:
            vecs = self._vectors()
            if vecs is not None and len(vecs):
                # The add thread is the only writer, so the size read here is the size every chunk sees.
                self.indexed = blocker.inserted
                self.removals = blocker.removals
                self.k = blocker.k_for(self.indexed)
                # An exact scan is cheapest as one product of the whole batch (its cost is mostly reading
                # the indexed vectors once per call); a graph search is cheapest shared out in chunks.
                self.chunk = blocker.query_rows
                self.ids = np.full((len(vecs), self.k), -1, np.int64)
                self.sims = np.zeros((len(vecs), self.k), np.float32)
                self.vecs = vecs
        except Exception:  # noqa: BLE001 - e.g. the encoder failed: the deciding thread encodes (or raises) itself
            self.vecs = None
        finally:
            with self._cond:  # always, or the deciding thread would wait for ever
                self.failed = self.vecs is None
                self._ready = True
                self._cond.notify_all()
        return self.work(blocker)

    def work(self, blocker: Blocker) -> float:
        """Search chunks until none is left; returns the seconds spent searching."""
        spent = 0.0
        while True:
            with self._cond:
                if self.vecs is None or self._next >= len(self.vecs):
                    return spent
                lo = self._next
                self._next = hi = min(lo + self.chunk, len(self.vecs))
                self._busy += 1
            t0 = time.perf_counter()
            try:
                self.ids[lo:hi], self.sims[lo:hi] = blocker.search(self.vecs[lo:hi], self.indexed)
            except Exception:  # noqa: BLE001 - the deciding thread then searches itself, and raises if it must
                self.failed = True
            spent += time.perf_counter() - t0
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()

    def finish(self, blocker: Blocker) -> tuple[np.ndarray, np.ndarray] | None:
        """On the deciding thread: take the remaining chunks, wait for the ones taken by the add thread, and
        return (ids, sims), or None when it could not be searched ahead."""
        with self._cond:
            while not self._ready:
                self._cond.wait()
        self.work(blocker)
        with self._cond:
            while self._busy:
                self._cond.wait()
        return None if self.failed or self.vecs is None else (self.ids, self.sims)


class Blocker:
    """Top-k candidates from the index, the held (previous) batch and the earlier records of the same batch."""

    def __init__(self, spec: Sequence[IndexVector], settings: IndexSettings, query_threads: int | None = None,
                 background_add: bool = False, index_factory: IndexFactory | None = None, exact_rows: int = 0):
        """`index_factory`: builds the index for the composite vector's size; None = the embedded hnswlib
        `CandidateIndex` (`index.backend = "hnswlib"`), searched exactly up to `exact_rows` rows
        (`consumer.config.exact_rows`). Another backend must be handed in by the runner."""
        if not spec:
            raise ValueError("no encoder contributes an index vector: blocking needs at least one")
        self.k = settings.k
        self.settings = settings
        self.spec = tuple(spec)
        dim = sum(v.size for v in self.spec)
        if index_factory is not None:
            self._index: VectorIndex = index_factory(dim)
        elif settings.backend != "hnswlib":
            raise ValueError(f"index.backend = {settings.backend!r}: the runner must hand in the index "
                             "(consumer.io.artifacts.build_pipeline does); the engine builds only hnswlib")
        else:
            def hnsw() -> CandidateIndex:
                return CandidateIndex(dim, m=settings.m, ef_construction=settings.ef_construction,
                                      ef=settings.ef, seed=settings.seed, capacity=settings.initial_capacity,
                                      query_threads=settings.query_threads or query_threads)

            self._index = SwitchingIndex(dim, exact_rows, hnsw) if exact_rows > 0 else hnsw()
        self._background = background_add
        self._adder: ThreadPoolExecutor | None = None
        self._pending: list[Future[float]] = []
        #: The last decided batch (vectors, rows): compared exactly, inserted when the next one is decided.
        self._held: tuple[np.ndarray, np.ndarray] | None = None
        #: Seconds spent inserting (on the add thread when in background) and waiting for an insert or a
        #: search run ahead; seconds of searches run ahead (on the add thread).
        self.add_seconds = 0.0
        self.wait_seconds = 0.0
        self.search_seconds = 0.0
        #: Batches whose search ran ahead and was used / ran ahead but the index had changed since.
        self.ahead_used = 0
        self.ahead_stale = 0
        #: Erasures so far (`remove` calls): a search run ahead across one is not used.
        self.removals = 0

    def vectors(self, cols: Columns) -> np.ndarray:
        """Index vectors of encoded records (the input of `candidates` and `add`)."""
        return index_vectors(cols, self.spec)

    @property
    def index(self) -> VectorIndex:
        """The index with every record in it (the held batch is inserted first: see the module docstring)."""
        self.flush()
        return self._index

    @property
    def inserted(self) -> int:
        """Rows in the index right now, without waiting for anything (the add thread's own view)."""
        return len(self._index)

    def settle(self) -> None:
        """Wait for the background adds (re-raising an error, if any)."""
        pending, self._pending = self._pending, []
        for fut in pending:
            t0 = time.perf_counter()
            self.add_seconds += fut.result()
            self.wait_seconds += time.perf_counter() - t0

    def flush(self) -> None:
        """Insert the held batch now and wait for every insert."""
        held, self._held = self._held, None
        if held is not None:
            self._insert(*held)
        self.settle()

    @property
    def query_rows(self) -> int:
        """Rows per index query when a search is shared out in chunks: the index's own preference (an exact
        scan wants the whole batch in one product), else `Search.CHUNK`."""
        return int(getattr(self._index, "query_rows", Search.CHUNK))

    def k_for(self, indexed: int) -> int:
        """How many candidates a batch keeps when the index holds `indexed` rows (the held batch not counted).
        Called once per batch with the size its search saw, on whichever thread searches."""
        return search_width(self.settings, indexed)[0]

    def search(self, vecs: np.ndarray, indexed: int) -> tuple[np.ndarray, np.ndarray]:
        """The index search (ids, sims: [rows, k_for(indexed)]) against the index as it is, which holds
        `indexed` rows: the one place that decides what is asked of HNSW, on the deciding thread or ahead on
        the add thread alike. Rows must not depend on each other (a batch may be searched in chunks, by two
        threads); k and ef are functions of `indexed` alone, so both threads ask the same."""
        k, ef = search_width(self.settings, indexed)
        return self._index.query(vecs, k, ef)

    def search_ahead(self, vectors: Callable[[], np.ndarray | None]) -> Search | None:
        """Search a later batch on the add thread, after every insert submitted so far (None without
        `background_add`). `vectors` is called there (it may wait for the encoder); None = nothing to do."""
        if not self._background:
            return None
        search = Search(vectors)
        self._thread().submit(self._search_job, search)
        return search

    def _search_job(self, search: Search) -> None:
        self.search_seconds += search.start(self)

    def candidates(self, vecs: np.ndarray, rows: np.ndarray, ahead: Search | None = None,
                   take: np.ndarray | None = None, searched: np.ndarray | None = None) -> list[np.ndarray]:
        """Candidate rows per batch record (sorted, unique); `vecs` from `vectors`.

        `ahead`: this batch's `search_ahead` (rows `take` of it, when the batch shrank since); used only if
        the index still holds exactly what it searched, else the search runs here. `searched`: the vectors
        `take` counts in, when records joined the batch after its search started: the rows past the ones
        searched ahead are searched here. One pass over the whole
        batch, no per-record Python work: the index's top-k, the held batch and every earlier record of the
        batch are laid side by side, and each row keeps its k best valid entries. That is the same set as
        "index top-k plus the held and the batch's top-k, then the k best of all" (an exact entry outside
        its own block's top-k can never be among the k best overall).
        """
        found = self._searched_ahead(ahead, take, searched)
        if found is None:
            self.settle()  # the previous batch's insert
            indexed = len(self._index)
            k = self.k_for(indexed)
            found = self.search(vecs, indexed)
        else:
            k = found[0].shape[1]
        held_vecs, held_rows = self._held if self._held is not None else (None, None)
        return merge_candidates(*found, vecs, np.asarray(rows, np.int64), k, held_vecs, held_rows)

    def _searched_ahead(self, ahead: Search | None, take: np.ndarray | None,
                        searched: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        if ahead is None:
            return None
        t0 = time.perf_counter()
        self.settle()  # the inserts submitted before the search (done once the search has started)
        self.wait_seconds += time.perf_counter() - t0
        found = ahead.finish(self)
        if found is None or ahead.indexed != len(self._index) or ahead.removals != self.removals:
            self.ahead_stale += found is not None
            return None
        self.ahead_used += 1
        if searched is not None and len(searched) > len(found[0]):  # rows that joined: same index, same k
            ids, sims = self.search(searched[len(found[0]):], ahead.indexed)
            found = (np.concatenate([found[0], ids]), np.concatenate([found[1], sims]))
        return found if take is None else (found[0][take], found[1][take])

    def advance(self, vecs: np.ndarray, rows: np.ndarray) -> None:
        """This batch's candidates are found: insert the held batch (returns at once with `background_add`)
        and hold this one, compared exactly with the next batch."""
        held, self._held = self._held, (vecs, np.asarray(rows, np.int64))
        if held is not None:
            self._insert(*held)

    def add(self, vecs: np.ndarray, rows: np.ndarray) -> None:
        """Insert rows now, after the held batch (records decided elsewhere: absorbed, restored)."""
        held, self._held = self._held, None
        if held is not None:
            self._insert(*held)
        self._insert(vecs, rows)

    def _insert(self, vecs: np.ndarray, rows: np.ndarray) -> None:
        """Insert rows after any earlier insert (one thread, in order); returns at once with `background_add`."""
        if not self._background:
            self.add_seconds += self._timed_add(vecs, rows)
            return
        self._pending.append(self._thread().submit(self._timed_add, vecs, rows))

    def remove(self, rows: np.ndarray) -> None:
        """Erase rows from the index (after inserting the held batch, which may hold them). A search run
        ahead before this is stale from now on (it may return them): `removals` tells `_searched_ahead`."""
        self.flush()
        self._index.remove(np.asarray(rows, np.int64))
        self.removals += 1

    def _thread(self) -> ThreadPoolExecutor:
        if self._adder is None:
            self._adder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="index-add")
        return self._adder

    def close(self, wait: bool = True) -> None:
        """Stop the add thread (after any submitted insert; `wait=False` returns at once), then release the
        index (a server connection, for a shared one) once those inserts are done."""
        adder, self._adder = self._adder, None
        if adder is None:
            self._index.close()
            return
        adder.submit(self._index.close)  # after every pending insert, on the thread that runs them
        adder.shutdown(wait=wait)

    def _timed_add(self, vecs: np.ndarray, rows: np.ndarray) -> float:
        t0 = time.perf_counter()
        self._index.add(vecs, rows)
        return time.perf_counter() - t0
