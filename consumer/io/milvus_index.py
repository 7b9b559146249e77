"""The candidate index in Milvus (`index.backend = "milvus"`): the `VectorIndex` seam over a shared server.

Why Milvus: the embedded hnswlib graph lives in one process's memory (3 KB per record per member at 1M,
docs/scale-out.md), so capacity is one machine and every member of a group holds a full copy. Milvus keeps
the vectors once, sharded and replicated by its own machinery (issue 39).

Layout: one collection per profile, hash key and vector size (`collection_name`: vectors made with another
key or encoder set are not comparable), fields `id` (INT64 primary key: the store's row number) and
`vector` (FLOAT_VECTOR); metric IP over the L2-normalised composite vectors, as hnswlib's "ip" space; an
HNSW index with `index.m` / `index.ef_construction`, searched with the Blocker's ef (at least k). No raw
value and no record id reach Milvus: rows are numbers, vectors are what the Blocker indexes.

Freshness, the design choice: Milvus stamps every write and a search sees the writes older than its
*guarantee timestamp*. Strong consistency sets it to now, so each search waits until the query nodes have
consumed every write (measured on the standalone server, idle: ~215 ms per search call, one time tick,
against ~3 ms under Bounded); Bounded sets it to now minus the server's graceful time (5 s by default), so
a search never waits but may miss the newest writes (measured: a row searched right after its insert was
missed 20 times in 20; other clients saw inserts after 0.2-0.5 s) - exactly where a twin arriving right
after its original lives. So searches run under `index.milvus_consistency` (Bounded by default) and the rows this
process inserted in the last `index.milvus_fresh_seconds` (10 s: above the graceful time plus clock skew)
are also searched exactly in memory (`consumer.engine.recent`); both hit lists are merged (each row once,
best similarity, top k). Rows written by *other* processes become visible after the graceful time; until
then the late-link rule of the service is the safety net (docs/scale-out.md).

Erasure: `remove` deletes by primary key (`id in [...]`) and the rows are left out of this process's
searches at once (a filter on the rows erased within the window, since a Bounded search may read a
snapshot from before the delete). Milvus only marks deleted rows; their bytes leave its segment files when
compaction rewrites them (`compact`), so the erasure bound includes compaction (docs/scale-out.md).

A file run (`dedup batch`, `eval`, `train`, `label`) owns its collection and starts it empty
(`recreate=True`), because its row numbers start at 0; the connection is made on first use, so commands
that never search (`dedup score`, `openapi`) never touch the server. pymilvus is optional (the `milvus`
extra) and imported only here, only then.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from consumer.config import ConfigError, Settings, key_id
from consumer.engine.blocking import IndexFactory
from consumer.engine.index import finite_vectors
from consumer.engine.recent import RecentVectors, merge_hits

__all__ = ["MilvusIndex", "collection_name", "milvus_index_factory", "milvus_uri"]

log = logging.getLogger(__name__)

#: Milvus refuses a search asking for more than this many neighbours.
MAX_TOPK = 16384
#: Rows per insert/delete call: well under Milvus's 64 MB gRPC message limit at any vector size we use.
WRITE_CHUNK = 5000


def collection_name(prefix: str, profile: str, hash_key: str, dim: int) -> str:
    """<prefix>_<profile>_<key id>_d<dim>: a Milvus name (letters, digits, _). The key id (an HMAC of the hash
    key, `consumer.config.key_id`) tells collections of two keys apart without revealing either."""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", profile)
    return f"{prefix}_{safe}_{key_id(hash_key)}_d{dim}"


def milvus_uri(settings: Settings) -> str:
    """`index.milvus_uri`, else http(s)://host:port from the host, port and TLS settings."""
    s = settings.index
    return s.milvus_uri or f"{'https' if s.milvus_tls else 'http'}://{s.milvus_host}:{s.milvus_port}"


def milvus_index_factory(settings: Settings, *, recreate: bool, collection_prefix: str | None = None) -> IndexFactory:
    """The `Pipeline(index_factory=...)` of `index.backend = "milvus"`: a `MilvusIndex` for the composite
    vector's size, in the collection of this profile, key and size. Fails now, with one line, when pymilvus
    is missing, or when the CA file to check the server against is not there (not at the first search, deep
    in a run). `collection_prefix`: instead of `index.milvus_collection_prefix` (a group's shared collection)."""
    _pymilvus()
    s = settings.index
    if s.milvus_ca_file and not Path(s.milvus_ca_file).is_file():
        raise ConfigError(f"index.milvus_ca_file {s.milvus_ca_file!r} is not a readable file (a PEM CA)")

    def build(dim: int) -> MilvusIndex:
        return MilvusIndex(dim, uri=milvus_uri(settings),
                           collection=collection_name(collection_prefix or s.milvus_collection_prefix,
                                                      settings.profile.name,
                                                      settings.encoders.hash_key, dim),
                           consistency=s.milvus_consistency, fresh_seconds=s.milvus_fresh_seconds, m=s.m,
                           ef_construction=s.ef_construction, ef=s.ef, token=s.milvus_token,
                           user=s.milvus_user, password=s.milvus_password, secure=s.milvus_tls,
                           ca_file=s.milvus_ca_file, timeout=s.milvus_timeout_seconds, recreate=recreate)

    return build


def _pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError:
        raise ConfigError("index.backend = 'milvus' needs pymilvus: pip install 'dedup-stream[milvus]'") from None
    return pymilvus


class MilvusIndex:
    """A `VectorIndex` in one Milvus collection, plus the exact in-memory search of this process's recent
    rows (module docstring). Thread-safe: pymilvus calls are, and the recent rows have their own lock."""

    def __init__(self, dim: int, *, uri: str, collection: str, consistency: str = "Bounded",
                 fresh_seconds: float = 10.0, m: int = 12, ef_construction: int = 64, ef: int = 128,
                 token: str = "", user: str = "", password: str = "", secure: bool = False,
                 ca_file: str = "", timeout: float = 30.0, recreate: bool = False, fresh_rows: int | None = None):
        """`ca_file`: a PEM CA the proxy's TLS certificate must chain to (pymilvus's `server_pem_path`: one-way
        TLS, the client is known by its token or user); "" = the system's roots. `fresh_rows`: the fresh window's
        cap (`RecentVectors.max_rows`)."""
        self.dim = dim
        self.name = collection
        self.consistency = consistency
        self.recent = RecentVectors(dim, fresh_seconds, max_rows=fresh_rows)
        self._ef = ef
        self._params = {"M": m, "efConstruction": ef_construction}
        self._connect_args: dict[str, Any] = {"uri": uri, "token": token, "user": user, "password": password,
                                              "secure": secure, "timeout": timeout}
        if ca_file:  # pymilvus reads it only with TLS on; an https:// URI turns TLS on by itself
            self._connect_args["server_pem_path"] = ca_file
        self._timeout = timeout
        self._recreate = recreate
        self._alias = f"dedup-{uuid.uuid4().hex[:12]}"
        self._open_lock = threading.Lock()
        self._collection: Any = None
        #: Rows in the collection when opened (a reopened one) plus rows inserted here: `len`.
        self._base = 0
        self._added = 0

    @property
    def alias(self) -> str:
        """This object's pymilvus connection alias (each index has its own connection)."""
        return self._alias

    # -- the VectorIndex seam ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._base + self._added

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Insert rows (one call per `WRITE_CHUNK`); then remember them for the fresh window."""
        if len(ids) == 0:
            return
        vecs, rows = self._write("insert", vectors, ids)
        # After the insert returned: its Milvus timestamp is older than this entry, so the window covers it.
        self.recent.add(vecs, rows)
        self._added += len(rows)

    def upsert(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Write rows to Milvus by primary key, replacing any row of the same key, and *not* into the fresh
        window: a `dedup run` member publishes the records it decided this way (`SharedMilvusIndex.publish`),
        before their Redis write, so a replayed batch writes the same keys again instead of duplicating them."""
        if len(ids) == 0:
            return
        self._write("upsert", vectors, ids)

    def _write(self, op: str, vectors: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`op` ("insert" or "upsert") of the rows, `WRITE_CHUNK` per call; (the vectors written, their ids)."""
        vecs, rows = finite_vectors(vectors), np.asarray(ids, np.int64)
        coll = self._open()
        for lo in range(0, len(rows), WRITE_CHUNK):
            getattr(coll, op)([rows[lo:lo + WRITE_CHUNK].tolist(), vecs[lo:lo + WRITE_CHUNK].tolist()],
                             timeout=self._timeout)
        return vecs, rows

    def open(self) -> None:
        """Connect, create (or re-create) the collection and its index, and load it now."""
        self._open()

    def is_empty(self) -> bool:
        """Whether the collection holds no row at all, read under Strong consistency (a start-up check)."""
        got = self._open().query("id >= 0", output_fields=["id"], limit=1, consistency_level="Strong",
                                 timeout=self._timeout)
        return not got

    def remove(self, ids: np.ndarray) -> int:
        """Delete rows by primary key and hide them from this process's searches at once; returns how many
        rows were asked for (Milvus does not say how many existed)."""
        rows = np.unique(np.asarray(ids, np.int64))
        if len(rows) == 0:
            return 0
        coll = self._open()
        for lo in range(0, len(rows), WRITE_CHUNK):
            coll.delete(f"id in {rows[lo:lo + WRITE_CHUNK].tolist()}", timeout=self._timeout)
        self.recent.remove(rows)
        return len(rows)

    def query(self, vectors: np.ndarray, k: int, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of Milvus (under `consistency`, leaving out rows erased within the window) merged with the
        exact top-k of the recent rows; -1 / 0 pad."""
        queries = finite_vectors(vectors)
        n = len(queries)
        if n == 0 or k == 0:
            return np.full((n, k), -1, np.int64), np.zeros((n, k), np.float32)
        kk = min(k, MAX_TOPK)
        hidden = self.recent.hidden()
        param = {"metric_type": "IP", "params": {"ef": max(ef or self._ef, kk)}}
        # As lists: pymilvus packs each query with struct.pack(*row), twice as slow over numpy scalars.
        found = self._open().search(queries.tolist(), "vector", param, limit=kk,
                                    expr=f"id not in {hidden}" if hidden else None,
                                    consistency_level=self.consistency, timeout=self._timeout)
        ids = np.full((n, k), -1, np.int64)
        sims = np.zeros((n, k), np.float32)
        for i, hits in enumerate(found):
            got = min(len(hits), k)
            ids[i, :got] = hits.ids[:got]
            sims[i, :got] = hits.distances[:got]  # metric IP: the distance is the inner product
        r_ids, r_sims = self.recent.search(queries, k)
        return merge_hits(ids, sims, r_ids, r_sims, k)

    def memory_bytes(self) -> int:
        """What this process holds: the recent rows (the index itself lives in Milvus)."""
        return self.recent.memory_bytes()

    def save(self, path: str) -> None:
        raise NotImplementedError("a Milvus index lives in Milvus: replica snapshots need index.backend = hnswlib")

    def load(self, path: str, capacity: int) -> None:
        raise NotImplementedError("a Milvus index lives in Milvus: replica snapshots need index.backend = hnswlib")

    def close(self) -> None:
        """Drop this object's connection (the collection stays)."""
        with self._open_lock:
            if self._collection is not None:
                _pymilvus().connections.disconnect(self._alias)
                self._collection = None

    # -- beyond the seam: audits and operations ----------------------------------------------------------
    def stored(self, ids: np.ndarray) -> set[int]:
        """Which of `ids` Milvus holds, read under Strong consistency (an erasure check wants the truth, not
        speed)."""
        rows = np.unique(np.asarray(ids, np.int64)).tolist()
        if not rows:
            return set()
        got = self._open().query(f"id in {rows}", output_fields=["id"], consistency_level="Strong",
                                 timeout=self._timeout)
        return {int(r["id"]) for r in got}

    def compact(self, wait_seconds: float | None = None) -> None:
        """Ask Milvus to compact the collection: rewrites segments without deleted rows (what makes an
        erasure leave disk); waits up to `wait_seconds` for it when given."""
        coll = self._open()
        coll.flush(timeout=self._timeout)  # deletes in growing segments reach a sealed one first
        coll.compact(timeout=self._timeout)
        if wait_seconds:
            coll.wait_for_compaction_completed(timeout=wait_seconds)

    def _open(self) -> Any:
        """Connect, create (or re-create) the collection and its index, load it: on first use only."""
        if self._collection is not None:
            return self._collection
        with self._open_lock:
            if self._collection is None:
                self._collection = self._connect()
            return self._collection

    def _connect(self) -> Any:
        pm = _pymilvus()
        pm.connections.connect(alias=self._alias, **self._connect_args)
        utility = pm.utility
        if self._recreate and utility.has_collection(self.name, using=self._alias):
            utility.drop_collection(self.name, using=self._alias)
        self._recreate = False  # once: a use after `close` reconnects to the rows inserted so far
        if utility.has_collection(self.name, using=self._alias):
            coll = pm.Collection(self.name, using=self._alias)
            dims = [f.params.get("dim") for f in coll.schema.fields if f.name == "vector"]
            if dims != [self.dim]:
                raise ValueError(f"Milvus collection {self.name} holds vectors of size {dims}, not {self.dim}")
            self._base = coll.num_entities
        else:
            schema = pm.CollectionSchema([
                pm.FieldSchema("id", pm.DataType.INT64, is_primary=True, auto_id=False),
                pm.FieldSchema("vector", pm.DataType.FLOAT_VECTOR, dim=self.dim),
            ], description="dedup-stream candidate vectors (row number -> composite vector)")
            coll = pm.Collection(self.name, schema, using=self._alias, consistency_level=self.consistency)
            coll.create_index("vector", {"index_type": "HNSW", "metric_type": "IP", "params": self._params},
                              timeout=self._timeout)
        coll.load(timeout=self._timeout)
        log.info("milvus index open", extra={"collection": self.name, "rows": self._base,
                                             "consistency": self.consistency})
        return coll
