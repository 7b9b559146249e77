"""One pass's work used twice: the fit to a file and the run over it share the encoding and the search.

`dedup batch` on a file it fits weights to (the person profile; listings checked against the shipped model)
runs the engine over the file twice: once to read the comparison vectors the fit learns from, once to
decide with the fitted weights. When the fit read the whole file (up to `FIT_FLOOR` records) both passes
encode the same records with the same encoders (deterministic and batch-invariant), insert the same vectors
into the same kind of index in the same order and ask it the same questions, so the second pass's columns
and candidate lists are the first pass's (HNSW inserts on one thread in arrival order and its searches are
deterministic: `consumer.engine.blocking`). The fit pass records them (`RecordingEncoder`,
`RecordingBlocker`) and the run reads them back (`ReplayEncoder`, `ReplayBlocker`) instead of encoding,
building a second graph and searching it again. The pass also compared every candidate pair, and the
comparison reads nothing the two passes do not share (the stored columns and the rarity counts, built from
the same records in the same order, never a cluster): for a batch whose final candidate lists (exact keys
and source links applied) are the logged ones, the run takes the logged feature rows (`ReplayComparator`)
instead of gathering and comparing again. Scoring and clustering run as always, so the decisions are the
same, byte for byte (tests/test_replay.py).

What makes it safe: a record's columns are reused only when the record is the one encoded in the fit pass
(same id, equal content by hash), and a candidate list only for a row that holds the same record as in the
fit pass. At the first record that differs (a file changed between the passes, a sampled fit) the log is
stale: that batch and every later one are searched and compared afresh (the rows stored so far go into the
real index), and the run goes on as it always does from there. The encoder, which may run a batch ahead on
another thread, only notes which records differ; the log turns stale when the batch holding the first of
them is decided, so the batches before it replay whatever thread got there first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from consumer.encoders.base import Columns
from consumer.engine.blocking import Blocker, Search
from consumer.engine.records import Record
from consumer.store.memory import SignatureStore

if TYPE_CHECKING:
    from consumer.engine.pipeline import Pipeline

__all__ = ["CandidateLog", "RecordingBlocker", "RecordingEncoder", "ReplayBlocker", "ReplayComparator", "ReplayEncoder",
           "record_into", "replay_from"]


@dataclass
class CandidateLog:
    """What one pass encoded and found: the blocker's candidate rows per store row, the columns each encoder
    produced, a hash of each record encoded, and the pass's store (its columns, and the record each row held),
    set by `finish` once the pass is over: a log without it replays nothing."""

    cands: dict[int, np.ndarray] = field(default_factory=dict)
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    fingerprints: dict[str, int] = field(default_factory=dict)
    store: SignatureStore | None = None
    #: A record differed from the logged pass's: nothing more is replayed.
    stale: bool = False
    #: Ids of records whose content differs from the logged pass's (noted by the encoder, possibly a batch
    #: ahead): the first batch holding one makes the log stale (`matches`).
    changed: set[str] = field(default_factory=set)
    #: Per store row: the final candidate list it was compared with and its feature rows (`Pipeline.pair_log`),
    #: and the comparator's feature names; set by `finish`.
    pairs: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    features: tuple[str, ...] = ()
    #: A sampled fit (a file larger than the fit's sample): the run takes the encoders' columns of the records
    #: the fit encoded, one record at a time, and searches and compares everything itself.
    columns_only: bool = False
    #: Wraps the pass's encoders before anything is logged: `dedup batch` runs them in its encoder process
    #: (`consumer.io.encode_process`), which the run then encodes in as well.
    encoders: Callable[[list[Any]], list[Any]] | None = None

    def matches(self, store: SignatureStore, rows: np.ndarray) -> bool:
        """Does every row hold the record it held in the logged pass (and have a logged list)?"""
        if self.stale or self.store is None:
            return False
        ids, logged = store.record_ids, self.store.record_ids
        if self.changed and any(ids[int(r)] in self.changed for r in rows):
            self.stale = True  # from this batch on nothing is replayed
            return False
        return all(0 <= r < len(logged) and ids[r] == logged[r] and r in self.cands for r in (int(x) for x in rows))

    def finish(self, pipe: Pipeline) -> None:
        """The logged pass is over: keep its store (the run reads columns and row ids from it) and the
        pairs it compared (its `pair_log`, which `record_into` turned on)."""
        self.store = pipe.store
        self.pairs = {row: (cands, feats) for row, cands, feats in pipe.pair_log or ()}
        self.features = tuple(pipe.comparator.features)


def record_into(pipe: Pipeline, log: CandidateLog) -> None:
    """Make `pipe` (a fit's pass) log its encoders' columns, its candidate lists and (`finish`) the pairs
    it compared into `log`."""
    if log.encoders is not None:
        pipe.encoders = log.encoders(pipe.encoders)
    pipe.encoders = [RecordingEncoder(e, log) for e in pipe.encoders]  # type: ignore[misc]
    if log.columns_only:
        return
    pipe.blocker = RecordingBlocker(pipe.blocker, log)  # type: ignore[assignment]
    if pipe.pair_log is None:
        pipe.pair_log = []


def replay_from(pipe: Pipeline, log: CandidateLog) -> None:
    """Make `pipe` (the run) take columns, candidate lists and comparisons from a finished `log` while its
    records are the logged pass's; nothing changes for a log that was never finished."""
    if log.store is None:
        return
    pipe.encoders = [ReplayEncoder(e, log) for e in pipe.encoders]  # type: ignore[misc]
    if log.columns_only:
        return
    pipe.blocker = ReplayBlocker(pipe.blocker, log, pipe.store)  # type: ignore[assignment]
    if log.pairs and tuple(pipe.comparator.features) == log.features:
        pipe.comparator = ReplayComparator(pipe.comparator, log, pipe.store)  # type: ignore[assignment]


def _fingerprint(rec: Record) -> int:
    """A hash of everything the record holds (ids, fields, blobs); -1, never replayed, if it cannot be hashed."""
    try:
        return hash(rec)
    except TypeError:  # a plug-in's record holding a list: encode it afresh rather than guess
        return -1


class _Proxy:
    """Everything a `Blocker` has, from the blocker it wraps (the stage timers, `spec`, `index`, `close`)."""

    def __init__(self, inner: Blocker) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class RecordingEncoder(_Proxy):
    """An encoder that notes which columns it produced and a hash of every record it encoded (the fit pass)."""

    def __init__(self, inner: Any, log: CandidateLog) -> None:
        super().__init__(inner)
        self.log = log

    def encode(self, records: Sequence[Record]) -> Columns:
        out: Columns = self.inner.encode(records)
        self.log.columns[self.inner.name] = tuple(out)
        self.log.fingerprints.update((r.record_id, _fingerprint(r)) for r in records)
        return out


class ReplayEncoder(_Proxy):
    """An encoder that answers from the logged pass's store for records encoded there, unchanged, and
    encodes the others (a batch's rows are laid side by side: encoders are batch-invariant, so a record's
    columns do not depend on the records encoded with it)."""

    def __init__(self, inner: Any, log: CandidateLog) -> None:
        super().__init__(inner)
        self.log = log
        self.replayed = 0

    def encode(self, records: Sequence[Record]) -> Columns:
        log, store = self.log, self.log.store
        names = log.columns.get(self.inner.name)
        if names is None or store is None or log.stale:
            return self.inner.encode(records)
        rows = [store.row_of.get(r.record_id, -1) for r in records]
        seen = [log.fingerprints.get(r.record_id) for r in records]
        logged = [row >= 0 and fp not in (None, -1) and fp == _fingerprint(r)
                  for row, fp, r in zip(rows, seen, records)]
        fresh = [i for i, ok in enumerate(logged) if not ok]
        if fresh:  # a full replay stops at this batch, when it is decided (`CandidateLog.matches`)
            log.changed.update(records[i].record_id for i in fresh)
            if len(fresh) == len(records):
                return self.inner.encode(records)
        took = [i for i, ok in enumerate(logged) if ok]
        got = {name: store.column(name)[np.asarray([rows[i] for i in took], np.int64)] for name in names}
        self.replayed += len(took)
        if not fresh:
            return got
        new = self.inner.encode([records[i] for i in fresh])
        if set(new) != set(names):  # an encoder whose columns vary with its input: nothing to lay side by side
            return self.inner.encode(records)
        out: Columns = {}
        for name in names:
            col = np.empty((len(records), *new[name].shape[1:]), new[name].dtype)
            col[took], col[fresh] = got[name], new[name]
            out[name] = col
        return out


class RecordingBlocker(_Proxy):
    """A `Blocker` that writes every candidate list it returns into `log` (the fit pass)."""

    def __init__(self, inner: Blocker, log: CandidateLog) -> None:
        super().__init__(inner)
        self.log = log

    def candidates(self, vecs: np.ndarray, rows: np.ndarray, ahead: Search | None = None,
                   take: np.ndarray | None = None, searched: np.ndarray | None = None) -> list[np.ndarray]:
        out = self.inner.candidates(vecs, rows, ahead, take, searched)
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
                   take: np.ndarray | None = None, searched: np.ndarray | None = None) -> list[np.ndarray]:
        rows = np.asarray(rows, np.int64)
        if not self.live and self.log.matches(self.store, rows):
            self.replayed += len(rows)
            return [self.log.cands[r].copy() for r in rows.tolist()]
        if not self.live:
            self._go_live(rows)
            ahead = None
        if vecs.shape[1] == 0:  # encoded while replaying: assembled from the store now
            vecs, searched = self._stored_vectors(rows), None
        return self.inner.candidates(vecs, rows, ahead, take, searched)

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


class ReplayComparator(_Proxy):
    """A `Comparator` that gives the logged pass's feature rows for a batch compared there with the same
    candidate lists (`logged`); `compare` itself is the real one.

    Why that is exact: a pair's features read the two rows' stored columns and the rarity counts, and both
    are the logged pass's while its rows hold the same records (`CandidateLog.matches`, which also ends with
    the blocker's replay: an erasure or a record decided elsewhere changes the counts)."""

    def __init__(self, inner: Any, log: CandidateLog, store: SignatureStore) -> None:
        super().__init__(inner)
        self.log = log
        self.store = store
        self.replayed = 0

    def logged(self, rows: np.ndarray, cands: Sequence[np.ndarray]) -> np.ndarray | None:
        log = self.log
        rows = np.asarray(rows, np.int64)
        if not log.matches(self.store, rows):
            return None
        got = [log.pairs.get(r) for r in rows.tolist()]
        if not got or any(g is None or not np.array_equal(g[0], c) for g, c in zip(got, cands)):
            return None
        self.replayed += len(rows)
        return np.concatenate([g[1] for g in got])  # type: ignore[index]
