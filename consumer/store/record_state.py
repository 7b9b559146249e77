"""A record's persisted state and its byte format: a leaf module (numpy and orjson only).

Why a leaf: the stores (Redis, memory) and the engine both use it, and a store must not import the
engine. A record's state is its signature columns (vectors and keyed hashes: no raw values), its keeper
inputs, its arrival sequence and its cluster's founding record; the pipeline rebuilds everything else
from it (`Pipeline.restore`).

Payload (format 2, written since issue 12): magic `DP\x02\x00`, the 4-byte id of the column layout
(crc32 of its JSON {name: [dtype, shape]}, stored once per layout in Redis, `layouts`), completeness
(float32), recency (float64), then the zlib-compressed column bytes in layout order. Why: the per-record
JSON header of format 1 was a third of the payload, and the columns (float16 vectors, zero-padded token
hashes) compress to ~56% (measured: 1,646 -> ~650 bytes per record; benchmarks/redis_bytes.py).
Format 1 (4-byte little-endian header length, the JSON header {"c", "r", "cols"}, the raw columns) is
still read: its header length never has the magic's third and fourth bytes.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import orjson

__all__ = ["RecordState", "cluster_id_for", "epoch_ms", "iso_of", "encode_rows", "decode_payload", "decode_payloads",
           "LAYOUTS", "register_layout", "UnknownLayout"]

MAGIC = b"DP\x02\x00"
_HEAD = struct.Struct("<4sIfd")
#: layout id -> JSON bytes of {name: [dtype, shape]}: every layout this process wrote or read from a store.
LAYOUTS: dict[int, bytes] = {}


class UnknownLayout(KeyError):
    """A format-2 payload whose layout is not registered (load the store's `layouts` first)."""


def register_layout(layout_id: int, layout: bytes) -> None:
    LAYOUTS[int(layout_id)] = bytes(layout)


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
    lid = zlib.crc32(layout)
    register_layout(lid, layout)
    n = len(completeness)
    flat = [v.reshape(n, -1).view(np.uint8) if v.ndim > 1 else v.reshape(n, 1).view(np.uint8)
            for v in batch.values()]
    rows = np.concatenate(flat, axis=1) if flat else np.zeros((n, 0), np.uint8)
    return [_HEAD.pack(MAGIC, lid, float(completeness[i]), float(recency[i])) + zlib.compress(rows[i].tobytes(), 6)
            for i in range(n)]


def layout_of(payload: bytes) -> int | None:
    """The layout id of a format-2 payload (None for format 1)."""
    return _HEAD.unpack_from(payload)[1] if payload[:4] == MAGIC else None


def decode_payload(payload: bytes) -> tuple[dict[str, np.ndarray], float, float]:
    """(columns of one row, completeness, recency)."""
    if payload[:4] == MAGIC:
        _m, lid, c, r = _HEAD.unpack_from(payload)
        layout = LAYOUTS.get(lid)
        if layout is None:
            raise UnknownLayout(lid)
        body = zlib.decompress(payload[_HEAD.size:])
        cols: dict[str, np.ndarray] = {}
        offset = 0
        for name, (dtype, shape) in orjson.loads(layout).items():
            dt = np.dtype(dtype)
            count = int(np.prod(shape))
            cols[name] = np.frombuffer(body, dt, count=count, offset=offset).reshape(shape).copy()
            offset += count * dt.itemsize
        return cols, float(c), float(r)
    n = int.from_bytes(payload[:4], "little")
    meta = orjson.loads(payload[4: 4 + n])
    offset = 4 + n
    cols = {}
    for name, (dtype, shape) in meta["cols"].items():
        dt = np.dtype(dtype)
        count = int(np.prod(shape))
        cols[name] = np.frombuffer(payload, dt, count=count, offset=offset).reshape(shape).copy()
        offset += count * dt.itemsize
    return cols, float(meta["c"]), float(meta["r"])


_STRUCT: dict[int, np.dtype] = {}


def _struct_of(lid: int) -> np.dtype:
    """The packed record dtype of a layout (parsed once per layout, not once per record)."""
    dt = _STRUCT.get(lid)
    if dt is None:
        layout = LAYOUTS.get(lid)
        if layout is None:
            raise UnknownLayout(lid)
        dt = np.dtype([(name, np.dtype(dtype), tuple(shape)) for name, (dtype, shape) in orjson.loads(layout).items()])
        _STRUCT[lid] = dt
    return dt


def decode_payloads(payloads: list[bytes]) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Many payloads at once: (columns with the record on the first axis, completeness, recency).

    Why: the replica absorbs every other member's records; decoding them one by one (a JSON layout and a
    numpy view per column per record) cost more than deciding a record (benchmarks/absorb_cost.py). Format-2
    payloads of one layout are decompressed and viewed as one packed array; anything else goes one by one."""
    if not payloads:
        return {}, np.zeros(0, np.float32), np.zeros(0)
    heads = [_HEAD.unpack_from(p) if p[:4] == MAGIC else None for p in payloads]
    lids = {h[1] for h in heads if h is not None}
    if len(lids) == 1 and all(h is not None for h in heads):
        dt = _struct_of(lids.pop())
        body = b"".join(zlib.decompress(p[_HEAD.size:]) for p in payloads)
        arr = np.frombuffer(body, dt)
        cols = {name: np.ascontiguousarray(arr[name]) for name in dt.names or ()}
        return (cols, np.array([h[2] for h in heads if h is not None], np.float32),
                np.array([h[3] for h in heads if h is not None]))
    decoded = [decode_payload(p) for p in payloads]
    cols = {k: np.stack([d[0][k] for d in decoded]) for k in decoded[0][0]}
    return cols, np.array([d[1] for d in decoded], np.float32), np.array([d[2] for d in decoded])


def epoch_ms(iso: str) -> str:
    """"2026-01-01T00:00:00.000Z" -> "1767225600000" ("" when it is not an ISO time: the script keeps ISO)."""
    try:
        return str(round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000))
    except ValueError:
        return ""


def iso_of(written: str) -> str:
    """A record hash's write time as ISO: epoch ms since issue 12's leaner layout, ISO in records before."""
    if not written.isdigit():
        return written
    secs, ms = divmod(int(written), 1000)  # integer split: a float division may round .001 down to .000
    return datetime.fromtimestamp(secs, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms:03d}Z"
