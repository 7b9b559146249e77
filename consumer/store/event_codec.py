"""A record's stored events (`ev:<id>` in Redis): their byte format. A leaf module (zlib and orjson only).

Why its own module: the format is frozen per header (records written with it must stay readable), and
`consumer/store/redis.py` stays about the keys and the batch script.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import orjson

__all__ = ["EVENTS_ZDICT_1", "pack_events", "unpack_events", "events_json"]

#: Preset deflate dictionary for stored events, version 1 (header b"E1"). Schema vocabulary only (field
#: names, event types, outcomes, the built-in profiles' modality names: no data value), most frequent last
#: (deflate codes near distances cheaper). FROZEN: records written with it must stay readable; a changed
#: dictionary needs a new header (b"E2") and this one kept for reading.
EVENTS_ZDICT_1 = (
    b'"surviving_cluster_id":"cl_","merged_cluster_ids":["cl_"],"event_type":"clusters.merged",'
    b'"outcome":"possible","outcome":"merged","outcome":"joined","decision":"possible"'
    b'"scores":{"text":,"name":,"email":,"phone":,"address":,"person":,"city":,"behaviour":,"device":},'
    b'"decision":"match"},{"record_id":"","cluster_id":"cl_","fused":0.'
    b'[{"event_id":"","event_type":"record.clustered","schema_version":"2","record_id":"","cluster_id":"cl_",'
    b'"canonical_id":"","matches":[],"model_version":"learned:","config_version":"",'
    b'"source":{"topic":"","partition":,"offset":},"event_time":"20-T:.Z","record_time":"20-T:.Z",'
    b'"fused":null,"scores":{},"outcome":"new"}]'
)


def pack_events(events: Sequence[bytes]) -> bytes:
    """A record's stored events: b"E1" + raw deflate of the JSON list with `EVENTS_ZDICT_1` (replays only).

    Why a preset dictionary: one record's events are too short for deflate to learn the field names, so
    they were most of the compressed bytes (measured: 357 -> ~203 bytes per record, benchmarks/redis_bytes.py).
    Lossless either way: a replay re-sends byte-identical events.

    Why memory level 7 (zlib's default is 8, this was 9): the compressor is built once per record, and its
    hash tables and buffers at level 8 or 9 cost more to allocate and clear than one record's events cost to
    compress (73 us a call at 9, 51 at 8, 6 at 7, measured on a 700-byte event). Inputs of a few KB find the
    same matches with the smaller tables (95% of 3,000 generated event lists the same bytes, the rest the same
    size within a byte); the format, the dictionary and what `unpack_events` reads are unchanged."""
    comp = zlib.compressobj(6, zlib.DEFLATED, -15, 7, zlib.Z_DEFAULT_STRATEGY, EVENTS_ZDICT_1)
    return b"E1" + comp.compress(b"[" + b",".join(events) + b"]") + comp.flush()


def unpack_events(raw: bytes) -> list[Any]:
    """Stored events as parsed JSON; also reads what earlier versions wrote: b"Z" + zlib (issue 12's first
    form) and the uncompressed "[...]" lists from before."""
    if raw[:2] == b"E1":
        dec = zlib.decompressobj(-15, EVENTS_ZDICT_1)
        return orjson.loads(dec.decompress(raw[2:]) + dec.flush())
    return orjson.loads(zlib.decompress(raw[1:]) if raw[:1] == b"Z" else raw)


def events_json(raw: bytes) -> bytes:
    """Stored events as their JSON bytes, not parsed (a search for an id over every record's events only
    needs to inflate them: erasure, consumer/store/erasure.py)."""
    if raw[:2] == b"E1":
        dec = zlib.decompressobj(-15, EVENTS_ZDICT_1)
        return dec.decompress(raw[2:]) + dec.flush()
    return zlib.decompress(raw[1:]) if raw[:1] == b"Z" else raw
