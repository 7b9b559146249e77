"""One Milvus collection shared by every member of a `dedup run` group, keyed by a *global id* (issue 39).

Why: with `index.backend = "milvus"` a file run numbers its rows from 0 and owns its collection
(`consumer.io.milvus_index`). Members of a group number rows locally, each in its own arrival order, so a
shared collection needs a key every member agrees on, and a record must be written there once, by the member
that decided it, not once per member.

**The global id** is a keyed 63-bit hash of the record id (`global_id`: BLAKE2b-64 keyed with a key derived
from `encoders.hash_key`, top bit dropped so it is a non-negative INT64). Chosen over an id allocated in
Redis (the batch script's `seq`) because every member computes it alone, with no round trip and no state: the
member deciding a record knows its id *before* the Redis write, so it can write the vector to Milvus first
(an upsert: a replayed batch writes the same key again, never a second row) and a crash between the two
leaves no record in Redis without its vector; a restarted member rebuilds its mapping from the record ids it
holds, with nothing read from Milvus. Keyed, so the ids in Milvus cannot be linked to record ids without the
key. Collisions: two of n records share an id with probability about n^2 / 2^64 (5e-6 at 10M records, 5e-4
at 100M, 0.05 at 1B); one is *detected* when a member maps an id already held by another live record
(`collisions`, logged with the id number only), and its cost is bounded: the later record's vector replaces
the earlier's in Milvus, so the earlier record is no longer a Milvus candidate (it still is through the
fresh window, the held batch and exact keys); clusters already formed are not touched.

**What each member holds** (the `VectorIndex` seam, rows = its local row numbers): the global id of each
row and the reverse map (~100 bytes per record in Python dicts, against ~1.1 KB per record of an HNSW
graph), and a window of the rows it added in the last `index.milvus_fresh_seconds` (its own decisions *and*
the records it absorbed from the changelog), searched exactly. `add` never writes to Milvus: the decider
did (`publish`, from the service before its Redis write), and a record reaches the changelog only after
that write, so by the time another member absorbs it, its vector is in Milvus and visible to a Bounded
search within the server's graceful time, shorter than the window. A Milvus hit on an id this member does
not hold yet (a record decided elsewhere a moment ago, not yet absorbed) is dropped: the pair is then
linked by the changelog's late-link rule (docs/scale-out.md), exactly as when that record was not yet in an
embedded replica's graph.

**Erasure** deletes by global id (`remove`; every member applies the erasure entry, and Milvus deletes are
idempotent). **Snapshots** hold no index file (Milvus persists the vectors); loading one rebuilds the maps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from consumer.config import Settings
from consumer.engine.blocking import IndexFactory
from consumer.engine.index import IndexUnavailable
from consumer.io.milvus_index import MilvusIndex, milvus_index_factory

__all__ = ["SharedMilvusIndex", "gid_key", "global_id", "global_ids", "milvus_errors", "shared_collection_prefix",
           "shared_index_factory", "FRESH_ROWS"]

log = logging.getLogger(__name__)

#: The fresh window's cap in rows. Why: a member loading its state adds every record at once (only the newest
#: may still be missing from a Bounded search); in normal running the window holds rate x seconds (3k rows
#: at 300 records/s), and an exact product over 20k rows of 248 floats costs ~5 ms per 32 queries.
FRESH_ROWS = 20_000
_MASK = (1 << 63) - 1


def milvus_errors() -> tuple[type[BaseException], ...]:
    """What a Milvus call raises while the server is away or slow (the service retries those, like a Redis
    outage); pymilvus is imported only here, only when asked (a `dedup run` on Milvus)."""
    try:
        from pymilvus.exceptions import MilvusException
    except ImportError:
        return (IndexUnavailable, ConnectionError, TimeoutError)
    return (MilvusException, IndexUnavailable, ConnectionError, TimeoutError)


def gid_key(hash_key: str) -> bytes:
    """The BLAKE2b key of the global ids, derived from `encoders.hash_key` (a hash key of any length)."""
    return hashlib.blake2b(hash_key.encode("utf-8"), digest_size=32, person=b"dedup-gid-v1").digest()


def global_id(record_id: str, key: bytes) -> int:
    """A record's id in the shared collection: keyed BLAKE2b-64 of the record id, as a non-negative INT64."""
    digest = hashlib.blake2b(record_id.encode("utf-8", "surrogatepass"), digest_size=8, key=key).digest()
    return int.from_bytes(digest, "big") & _MASK


def global_ids(record_ids: Sequence[str], key: bytes) -> np.ndarray:
    """`global_id` of each record id; -1 for "" (an erased row's tombstone)."""
    return np.fromiter((global_id(r, key) if r else -1 for r in record_ids), np.int64, count=len(record_ids))


def shared_collection_prefix(settings: Settings, redis_prefix: str) -> str:
    """`<milvus_collection_prefix>_s<store tag>`: one collection per store (Redis prefix), so two stores whose
    record ids overlap never share ids, and a file run of the same prefix (which empties its collection)
    never touches a group's."""
    tag = hashlib.blake2b(redis_prefix.encode("utf-8"), digest_size=4).hexdigest()
    return f"{settings.index.milvus_collection_prefix}_s{tag}"


def shared_index_factory(settings: Settings, redis_prefix: str,
                         built: list[SharedMilvusIndex]) -> IndexFactory:
    """The `Pipeline(index_factory=...)` of a `dedup run` member: a `SharedMilvusIndex` over the store's
    collection (kept, never re-created); each index built is appended to `built`, so the service can bind it
    to the pipeline's record ids and publish through it."""
    inner = milvus_index_factory(settings, recreate=False,
                                 collection_prefix=shared_collection_prefix(settings, redis_prefix))
    key = gid_key(settings.encoders.hash_key)

    def build(dim: int) -> SharedMilvusIndex:
        idx = SharedMilvusIndex(inner(dim), key)
        built.append(idx)
        return idx

    return build


class SharedMilvusIndex:
    """A `VectorIndex` over local rows, backed by the group's collection keyed by global id (module
    docstring). `bind` it to the pipeline's record ids before the first `add`. Thread-safe: the maps have
    their own lock (the blocker's add thread and the deciding thread both use them)."""

    def __init__(self, inner: MilvusIndex, key: bytes, fresh_rows: int = FRESH_ROWS):
        self.inner = inner
        self.dim = inner.dim
        self.key = key
        inner.recent.max_rows = fresh_rows
        self._record_ids: Sequence[str] = ()
        self._lock = threading.Lock()
        self._gid_of = np.full(0, -1, np.int64)  # row -> global id (-1: none, e.g. an erased row)
        self._row_of: dict[int, int] = {}  # global id -> row
        self._added = 0
        #: Erased global ids whose Milvus delete failed (retried with the next write: `_delete_pending`).
        self._pending_deletes: list[int] = []
        #: Global ids found held by another live record (module docstring: detected, bounded).
        self.collisions = 0

    @property
    def name(self) -> str:
        """The collection's name."""
        return self.inner.name

    def bind(self, record_ids: Sequence[str]) -> None:
        """The pipeline's row -> record id list (`SignatureStore.record_ids`, grown in place)."""
        self._record_ids = record_ids

    # -- the decider's write ----------------------------------------------------------------------------
    def publish(self, vectors: np.ndarray, record_ids: Sequence[str]) -> None:
        """Write the vectors of records this member decided, keyed by global id (an upsert: idempotent)."""
        if len(record_ids):
            self.inner.upsert(vectors, global_ids(record_ids, self.key))
        self._delete_pending()

    # -- the VectorIndex seam ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._added

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Map rows to their global ids and search them exactly for the fresh window; no Milvus write."""
        rows = np.asarray(ids, np.int64)
        if len(rows) == 0:
            return
        gids = global_ids([self._record_ids[r] for r in rows.tolist()], self.key)
        self._map(rows, gids)
        live = gids >= 0
        self.inner.recent.add(np.asarray(vectors)[live], gids[live])
        self._added += len(rows)

    def _map(self, rows: np.ndarray, gids: np.ndarray) -> None:
        with self._lock:
            need = int(rows.max()) + 1
            if need > len(self._gid_of):
                grown = np.full(max(need, 2 * len(self._gid_of), 1024), -1, np.int64)
                grown[:len(self._gid_of)] = self._gid_of
                self._gid_of = grown
            self._gid_of[rows] = gids
            for row, gid in zip(rows.tolist(), gids.tolist()):
                if gid < 0:
                    continue
                prev = self._row_of.get(gid)
                if prev is not None and prev != row and self._record_ids[prev] not in ("", self._record_ids[row]):
                    self.collisions += 1
                    log.warning("global id collision in the shared milvus collection", extra={"gid": gid})
                self._row_of[gid] = row

    def remove(self, ids: np.ndarray) -> int:
        """Delete the rows' vectors from Milvus by global id (and hide them here at once)."""
        rows = np.asarray(ids, np.int64)
        with self._lock:
            rows = rows[(rows >= 0) & (rows < len(self._gid_of))]
            gids = self._gid_of[rows]
            rows, gids = rows[gids >= 0], gids[gids >= 0]
            for row, gid in zip(rows.tolist(), gids.tolist()):
                if self._row_of.get(gid) == row:
                    del self._row_of[gid]
            self._gid_of[rows] = -1
        if len(gids):
            self.inner.recent.remove(gids)  # hidden from this member's searches at once, whatever Milvus says
            self._pending_deletes.extend(gids.tolist())
            self._delete_pending()
        return len(gids)

    def _delete_pending(self) -> None:
        """Delete the erased ids not deleted yet. Why deferred on failure: an erasure is applied while the
        changelog is read, and a Milvus outage there must not stop the member; every member deletes the same
        ids (idempotent), and each retries its leftovers with its next write."""
        if not self._pending_deletes:
            return
        gids = np.array(self._pending_deletes, np.int64)
        try:
            self.inner.remove(gids)
        except milvus_errors() as exc:
            log.warning("milvus delete deferred", extra={"ids": len(gids), "error": type(exc).__name__})
            return
        self._pending_deletes = self._pending_deletes[len(gids):]

    def query(self, vectors: np.ndarray, k: int, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Milvus's top-k plus the fresh window's, mapped to local rows; ids this member does not hold are
        left out (module docstring); -1 / 0 pad."""
        try:
            gids, sims = self.inner.query(vectors, k, ef)
        except milvus_errors() as exc:  # not the records' fault: the service undoes the attempt and retries
            raise IndexUnavailable(type(exc).__name__) from exc
        with self._lock:
            get = self._row_of.get
            rows = np.fromiter((get(g, -1) if g >= 0 else -1 for g in gids.ravel().tolist()), np.int64,
                               count=gids.size).reshape(gids.shape)
        valid = rows >= 0
        if valid.all():
            return rows, sims
        order = np.argsort(~valid, axis=1, kind="stable")  # found ones first, in rank order
        rows = np.take_along_axis(rows, order, axis=1)
        sims = np.where(np.take_along_axis(valid, order, axis=1), np.take_along_axis(sims, order, axis=1), 0.0)
        return rows, sims.astype(np.float32)

    def memory_bytes(self) -> int:
        """The maps and the fresh window (the vectors live in Milvus)."""
        return int(self._gid_of.nbytes) + 100 * len(self._row_of) + self.inner.memory_bytes()

    def save(self, path: str) -> None:
        """A snapshot's index file: only which collection it belongs to (Milvus holds the vectors)."""
        Path(path).write_text(json.dumps({"backend": "milvus-shared", "collection": self.name}))

    def load(self, path: str, capacity: int) -> None:
        """After a snapshot's rows were loaded into the store: rebuild the maps from their record ids."""
        meta = json.loads(Path(path).read_text())
        if meta.get("backend") != "milvus-shared":
            raise ValueError("the snapshot's index is not a shared Milvus index")
        n = len(self._record_ids)
        if n:
            rows = np.arange(n, dtype=np.int64)
            self._map(rows, global_ids(self._record_ids, self.key))
        self._added = n

    def close(self) -> None:
        self.inner.close()

    # -- operations -------------------------------------------------------------------------------------
    def is_empty(self) -> bool:
        """Whether the collection holds no vector at all (Strong read: a start-up check)."""
        return self.inner.is_empty()

    def open(self) -> None:
        """Connect, create the collection if missing, load it (a start-up step; else the first use does it)."""
        self.inner.open()

    def held_ids(self) -> np.ndarray:
        """Global ids of every live row this member holds (start-up backfill, audits)."""
        with self._lock:
            return np.array(sorted(self._row_of), np.int64)

    def row_of_gid(self, gid: int) -> int | None:
        """The local row holding a global id, if any."""
        with self._lock:
            return self._row_of.get(int(gid))
