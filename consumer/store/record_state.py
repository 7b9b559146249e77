"""A record's persisted state and its byte format: a leaf module (numpy and orjson only).

Why a leaf: the stores (Redis, memory) and the engine both use it, and a store must not import the
engine. A record's state is its signature columns (vectors and keyed hashes: no raw values), its keeper
inputs, its arrival sequence and its cluster's founding record; the pipeline rebuilds everything else
from it (`Pipeline.restore`).

Payload: 4-byte little-endian header length, a JSON header {"c": completeness, "r": recency, "cols":
{name: [dtype, shape]}}, then each column's bytes in header order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import orjson

__all__ = ["RecordState", "cluster_id_for", "encode_rows", "decode_payload"]


def cluster_id_for(record_id: str) -> str:
    """A cluster's id, derived from its founding record id (stable, deterministic)."""
    return "cl_" + hashlib.sha256(record_id.encode("utf-8")).hexdigest()[:20]


@dataclass(frozen=True)
class RecordState:
    record_id: str
    seq: int  # arrival order across the whole stream (the row it had)
    founder_id: str  # record id that founded its cluster (cluster id = cluster_id_for(founder_id))
    payload: bytes  # encoded columns + keeper inputs

    @property
    def cluster_id(self) -> str:
        return cluster_id_for(self.founder_id)


def encode_rows(cols: Mapping[str, np.ndarray], completeness: np.ndarray, recency: np.ndarray) -> list[bytes]:
    """Payloads of a batch of rows (first axis of every column), the column layout serialised once: the
    service persists every new record of every micro-batch, so per-row work is kept minimal (measured)."""
    batch = {k: np.ascontiguousarray(v) for k, v in cols.items()}
    layout = orjson.dumps({k: [str(v.dtype), list(v.shape[1:])] for k, v in batch.items()})
    out = []
    for i in range(len(completeness)):
        head = b'{"c":%s,"r":%s,"cols":%s}' % (orjson.dumps(float(completeness[i])),
                                                 orjson.dumps(float(recency[i])), layout)
        out.append(len(head).to_bytes(4, "little") + head + b"".join(v[i].tobytes() for v in batch.values()))
    return out


def decode_payload(payload: bytes) -> tuple[dict[str, np.ndarray], float, float]:
    """(columns of one row, completeness, recency)."""
    n = int.from_bytes(payload[:4], "little")
    meta = orjson.loads(payload[4: 4 + n])
    offset = 4 + n
    cols: dict[str, np.ndarray] = {}
    for name, (dtype, shape) in meta["cols"].items():
        dt = np.dtype(dtype)
        count = int(np.prod(shape))
        cols[name] = np.frombuffer(payload, dt, count=count, offset=offset).reshape(shape).copy()
        offset += count * dt.itemsize
    return cols, float(meta["c"]), float(meta["r"])
