"""Pipeline state as plain bytes: what a durable store (Redis) persists and what a restart rebuilds from.

A record's state is its signature columns (vectors and keyed hashes: no raw values), its keeper inputs,
its arrival sequence and its cluster's founding record. That is enough to rebuild everything else in
memory: the HNSW index (from the columns), the cluster membership, the canonical records and the
term-frequency table. Rebuilding in arrival-sequence order reproduces the same rows, index and ids, so a
restarted consumer decides exactly as the one it replaces would have.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import orjson

from consumer.blocking import index_vectors
from consumer.clustering import cluster_id_for
from consumer.pipeline import Decision, Pipeline

__all__ = ["RecordState", "record_states", "restore", "rows_to_persist"]


@dataclass(frozen=True)
class RecordState:
    record_id: str
    seq: int  # arrival order across the whole stream (the row it had)
    founder_id: str  # record id that founded its cluster (cluster id = cluster_id_for(founder_id))
    payload: bytes  # encoded columns + keeper inputs

    @property
    def cluster_id(self) -> str:
        return cluster_id_for(self.founder_id)


def _encode(cols: dict[str, np.ndarray], completeness: float, recency: float) -> bytes:
    meta = {"c": completeness, "r": recency,
            "cols": {k: [str(v.dtype), list(v.shape)] for k, v in cols.items()}}
    head = orjson.dumps(meta)
    return len(head).to_bytes(4, "little") + head + b"".join(np.ascontiguousarray(v).tobytes()
                                                            for v in cols.values())


def _decode(payload: bytes) -> tuple[dict[str, np.ndarray], float, float]:
    n = int.from_bytes(payload[:4], "little")
    meta = orjson.loads(payload[4: 4 + n])
    offset = 4 + n
    cols: dict[str, np.ndarray] = {}
    for name, (dtype, shape) in meta["cols"].items():
        dt = np.dtype(dtype)
        size = int(np.prod(shape)) * dt.itemsize
        cols[name] = np.frombuffer(payload, dt, count=int(np.prod(shape)), offset=offset).reshape(shape).copy()
        offset += size
    return cols, float(meta["c"]), float(meta["r"])


def record_states(pipe: Pipeline, rows: Iterable[int]) -> list[RecordState]:
    """Current state of the given rows (after `process`), ready to persist.

    One gather for all rows and the column layout serialised once: the service persists every new record of
    every micro-batch, and per-row gathers cost more than the rest of its bookkeeping (measured). The bytes
    are exactly what `_encode` writes for one row."""
    rows = [int(r) for r in rows]
    if not rows:
        return []
    ids = pipe.store.record_ids
    batch = {k: np.ascontiguousarray(v) for k, v in pipe.store.gather(np.array(rows)).items()}
    layout = orjson.dumps({k: [str(v.dtype), list(v.shape[1:])] for k, v in batch.items()})
    out = []
    for i, row in enumerate(rows):
        head = b'{"c":%s,"r":%s,"cols":%s}' % (orjson.dumps(float(pipe.store.completeness[row])),
                                                 orjson.dumps(float(pipe.store.recency[row])), layout)
        payload = len(head).to_bytes(4, "little") + head + b"".join(v[i].tobytes() for v in batch.values())
        out.append(RecordState(ids[row], row, ids[pipe.clusters.cluster_of[row]], payload))
    return out


def restore(pipe: Pipeline, states: Iterable[RecordState]) -> int:
    """Load persisted records into a fresh pipeline, in arrival order; returns how many were loaded."""
    if len(pipe.store):
        raise ValueError("restore() needs an empty pipeline")
    items = sorted(states, key=lambda s: s.seq)
    if not items:
        return 0
    decoded = [_decode(s.payload) for s in items]
    names = list(decoded[0][0])
    cols = {k: np.stack([d[0][k] for d in decoded]) for k in names}
    rows = pipe.store.append([s.record_id for s in items], cols,
                             np.array([d[1] for d in decoded], np.float32), np.array([d[2] for d in decoded]))
    row_of = pipe.store.row_of
    for s, row in zip(items, rows):
        founder = row_of.get(s.founder_id, int(row))
        pipe.clusters.cluster_of[int(row)] = founder
        pipe.clusters.members.setdefault(founder, []).append(int(row))
    for c in pipe.clusters.members:
        pipe._update_canonical(c, [])
    pipe.frequencies.observe(cols)
    pipe.blocker.add(index_vectors(cols), rows)
    return len(items)


def rows_to_persist(pipe: Pipeline, decisions: Iterable[Decision]) -> list[int]:
    """Rows whose persisted state a batch changed: each new record, plus every member of a cluster that
    absorbed another (their founding record changed). Replays change nothing."""
    rows: set[int] = set()
    for d in decisions:
        if d.outcome == "replay":
            continue
        rows.add(d.row)
        if d.merged_cluster_ids:
            rows.update(pipe.clusters.members[pipe.clusters.cluster_of[d.row]])
    return sorted(rows)
