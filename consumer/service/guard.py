"""Poison-pill guard: when deciding a micro-batch raises, find the record(s) that fail and set them aside.

Why: a record that passed validation but still makes the core raise would otherwise stop its partition for
good: the service exits, restarts, re-reads the same uncommitted batch and dies on the same record again.
The guard bisects the batch down to the failing record(s); the caller dead-letters them (reason
`internal_error`) and the rest of the batch is decided and committed as usual.

State safety (why a failed attempt is never half-applied): `Pipeline.process` mutates nothing before
`SignatureStore.append` (everything earlier is pure: id checks, encoding into deterministic caches, recency
and completeness), so when the store did not grow the failed attempt left no trace and the next attempt
runs on the same state. When it did grow (a failure after the append: index, frequencies, clusters), the
guard calls `rollback(chunks)`: the service rebuilds its pipeline from Redis, which holds exactly the
state before this batch (a batch is written to Redis only after it was decided), and then re-decides the
sub-batches already accepted with the same `process` calls, which reproduces the same in-memory state (the
core is deterministic; the calls must be the same because rarity statistics advance per call). Copying the
state up front instead would cost a copy of the HNSW index on every batch, against a case that should
never happen.

A failure that hits every record of a batch of more than one is not poison but a broken service (a model
that cannot run, memory exhausted): the first error is re-raised rather than dead-lettering the stream.

Also here: telling a replay (the same record read again) from an id conflict (another record under an id
already taken), by a keyed content fingerprint stored with each record.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from consumer.engine.index import IndexUnavailable
from consumer.engine.pipeline import Decision, Encoded, Pipeline
from consumer.engine.records import Record
from consumer.service.batch import Batch, DeadLetter
from consumer.store.memory import LayoutMismatch

__all__ = ["GuardResult", "decide_guarded", "encoded_or_none", "fingerprint", "fingerprint_key", "id_conflicts",
           "set_aside", "set_aside_id_conflicts"]

log = logging.getLogger("dedup.guard")


@dataclass
class GuardResult:
    """Decisions of the accepted records (input order) and the failing ones with their error type."""

    decisions: list[Decision]
    #: (index into the input records, exception class name): the caller dead-letters these.
    failed: list[tuple[int, str]] = field(default_factory=list)
    #: How many times the state was rebuilt because a failed attempt had already changed it.
    rollbacks: int = 0
    #: The sub-batches that were decided, in order (`process` calls: rarity statistics are updated per
    #: call, so a rollback must replay exactly these calls to reproduce the same state).
    chunks: list[list[Record]] = field(default_factory=list)


def encoded_or_none(future: Any) -> Encoded | None:
    """The ahead-of-time encoding, or None when the encode worker raised (then `process` re-encodes, and a
    record that makes encoding fail is found by the bisection like any other)."""
    if future is None:
        return None
    try:
        result: Encoded = future.result()
    except Exception:  # noqa: BLE001 - re-raised by the guarded decide if it is not poison
        log.warning("ahead-of-time encoding failed; encoding again while deciding")
        return None
    return result


def decide_guarded(get_pipe: Callable[[], Pipeline], records: Sequence[Record], encoded: Encoded | None,
                   rollback: Callable[[list[list[Record]]], None]) -> GuardResult:
    """`process(records)`; on an exception, bisect to the failing records and decide the others.

    `get_pipe` returns the current pipeline (a rollback may replace it). `rollback(accepted)` must restore
    the state from before this batch and then re-decide each sub-batch of `accepted` in order, one
    `process` call each (see the module docstring)."""
    records = list(records)
    pipe = get_pipe()
    size = len(pipe.store)
    try:
        return GuardResult(pipe.process(records, encoded))
    except IndexUnavailable:  # the index's server is away: undo the attempt, the caller retries the batch
        if len(pipe.store) != size:
            rollback([])
        raise
    except LayoutMismatch:  # the held state is another version's: no record's fault, stop with its message
        raise
    except Exception as exc:  # noqa: BLE001 - anything the core raises is handled the same way
        first = exc
    result = GuardResult([])
    log.error("deciding a batch failed; looking for the failing record(s)",
              extra={"records": len(records), "error": type(first).__name__})

    def restore_if_changed(before: int) -> None:
        if len(get_pipe().store) != before:
            result.rollbacks += 1
            rollback([list(c) for c in result.chunks])

    restore_if_changed(size)
    # Work list of (start, end) ranges in input order; the first range is the whole batch, already failed.
    mid = len(records) // 2
    todo = [(0, mid), (mid, len(records))] if len(records) > 1 else []
    if len(records) == 1:
        result.failed.append((0, type(first).__name__))
    while todo:
        start, end = todo.pop(0)
        if start >= end:
            continue
        pipe = get_pipe()
        before = len(pipe.store)
        try:
            decisions = pipe.process(records[start:end], encoded)
        except IndexUnavailable:  # mid-search: back to before the batch (accepted chunks too), then retry it
            if len(get_pipe().store) != size:
                rollback([])
            raise
        except Exception as exc:  # noqa: BLE001
            restore_if_changed(before)
            if end - start == 1:
                result.failed.append((start, type(exc).__name__))
            else:
                half = (start + end) // 2
                todo[:0] = [(start, half), (half, end)]
            continue
        result.chunks.append(records[start:end])
        result.decisions.extend(decisions)
    if len(records) > 1 and len(result.failed) == len(records):
        raise first
    log.error("records failed in the core and are set aside",
              extra={"failed": len(result.failed), "decided": len(result.decisions),
                     "rollbacks": result.rollbacks})
    return result


# -- the same id again with other content ------------------------------------------------------------------
def fingerprint_key(hash_key: str) -> bytes:
    """The key of content fingerprints, derived from the deployment's hash key (its own domain)."""
    return hashlib.blake2b(("content-fingerprint:" + hash_key).encode(), digest_size=32).digest()


def fingerprint(rec: Record, key: bytes) -> str:
    """Keyed hash of a record's content as the core sees it (after parsing: JSON formatting, key order or
    timestamp spelling do not count). Keyed, so the stored value says nothing about the content."""
    parts = [rec.name, rec.city, "\x1f".join(rec.keys), rec.browser, rec.os,
             "\x1f".join(t.isoformat() for t in rec.login_times)]
    return hashlib.blake2b("\x1e".join(parts).encode("utf-8", "surrogatepass"), key=key,
                           digest_size=16).hexdigest()


def id_conflicts(good: Sequence[tuple[Any, Record]], fps: Sequence[str], decisions: Sequence[Decision],
                 stored: dict[str, str]) -> list[int]:
    """Indexes of replays whose content differs from the record first stored under the same id.

    A replay (an id already decided) is normally the same record read again (at-least-once delivery) and
    re-sends its stored events. With other content it is another record reusing an id: treating it as a
    replay would drop it silently. The reference is the id's first occurrence in this batch when that one
    was decided now, else the fingerprint stored in Redis (absent for records stored before fingerprints:
    then nothing can be said and the replay stands)."""
    first: dict[str, str] = {}
    out: list[int] = []
    for i, ((_msg, rec), fp, d) in enumerate(zip(good, fps, decisions)):
        rid = rec.record_id
        if d.outcome != "replay":
            first.setdefault(rid, fp)
            continue
        ref = first.get(rid) or stored.get(rid)
        if ref and ref != fp:
            out.append(i)
    return out


def set_aside(batch: Batch, guarded: GuardResult) -> None:
    """Apply a guarded decide to the batch: failing records become `internal_error` dead letters (stage
    `decide`, detail = the exception's class, never its message: it may quote a value)."""
    bad = dict(guarded.failed)
    if bad:
        batch.dead += [DeadLetter(msg, "internal_error", "decide", bad[i]) for i, (msg, _r) in enumerate(batch.good)
                       if i in bad]
        batch.good = [g for i, g in enumerate(batch.good) if i not in bad]
    batch.decisions = guarded.decisions


def set_aside_id_conflicts(batch: Batch, key: bytes, read_stored: Callable[[list[str]], dict[str, str]]) -> int:
    """Fingerprint the batch's records; dead-letter replays with other content (`id_conflict`, original bytes
    kept) instead of answering them with the first record's events. Returns how many."""
    batch.fps = [fingerprint(r, key) for _, r in batch.good]
    replayed = [r.record_id for (_, r), d in zip(batch.good, batch.decisions) if d.outcome == "replay"]
    if not replayed:
        return 0
    bad = set(id_conflicts(batch.good, batch.fps, batch.decisions, read_stored(replayed)))
    if not bad:
        return 0
    log.warning("same record id with other content: dead-lettered as id_conflict",
                extra={"records": len(bad), "record_ids": sorted({batch.good[i][1].record_id for i in bad})})
    batch.dead += [DeadLetter(batch.good[i][0], "id_conflict", "decide", "record id already stored with other "
                              "content") for i in sorted(bad)]
    keep = [i for i in range(len(batch.good)) if i not in bad]
    batch.good = [batch.good[i] for i in keep]
    batch.fps = [batch.fps[i] for i in keep]
    batch.decisions = [batch.decisions[i] for i in keep]
    return len(bad)
