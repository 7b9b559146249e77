"""Duplicate events (schema `consumer/schemas/duplicate-event.v1.json`) built from decisions: pure functions.

Why pure and deterministic: at-least-once delivery means a record can be processed again after a crash or a
rebalance. The event id is a hash of *what the event is about* (record id, event type, and the merged
clusters or the candidate), never of where the input came from (topic/offset) or when it was processed, so
the same record re-sent or re-read yields the same ids and subscribers can de-duplicate on `event_id`. The
service also stores the exact bytes of every record's events in Redis and re-sends those bytes on a
replay, so even `event_time` repeats.

Events carry identifiers, scores and provenance only: never a field value of the input record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from consumer.fusion import MODALITIES
from consumer.pipeline import Decision, Match

__all__ = ["SCHEMA_VERSION", "EVENT_TYPES", "Source", "event_id", "build_events", "utc_iso", "event_key"]

SCHEMA_VERSION = "1"
CLUSTERED = "record.clustered"
MERGED = "clusters.merged"
POSSIBLE = "duplicate.possible"
EVENT_TYPES = (CLUSTERED, MERGED, POSSIBLE)
_SCORE_KEYS = ("fused", *MODALITIES)


@dataclass(frozen=True)
class Source:
    """Where the input record was read: provenance for subscribers, not part of the event id."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None  # Kafka record timestamp; None when the broker had none

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": max(self.partition, 0), "offset": max(self.offset, 0)}


def event_id(record_id: str, event_type: str, discriminator: str = "") -> str:
    """sha256 over (schema version, record id, event type, discriminator): stable across replays."""
    raw = "\x1f".join(("dedup-event", SCHEMA_VERSION, record_id, event_type, discriminator))
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def utc_iso(epoch_seconds: float) -> str:
    """2025-01-02T03:04:05.123Z (the schema accepts only UTC)."""
    dt = datetime.fromtimestamp(epoch_seconds, tz=timezone.utc)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _score(value: float | None) -> float | None:
    # Similarities are in [0, 1] by construction; clamp float noise (e.g. cosine 1.0000001) for the schema.
    return None if value is None else min(max(float(value), 0.0), 1.0)


def _scores(match: Match | None) -> dict[str, float | None]:
    if match is None:
        return dict.fromkeys(_SCORE_KEYS)
    out: dict[str, float | None] = {"fused": _score(match.fused)}
    out.update({m: _score(match.scores.get(m)) for m in MODALITIES})
    return out


def _match(m: Match) -> dict[str, Any]:
    return {"record_id": m.record_id, "cluster_id": m.cluster_id, "fused": _score(m.fused),
            "scores": {k: _score(m.scores.get(k)) for k in MODALITIES}, "decision": m.decision}


def build_events(decision: Decision, source: Source, *, model_version: str, config_version: str,
                 now: float) -> list[dict[str, Any]]:
    """The events one (non-replay) decision produces, in a fixed order.

    - `record.clustered` for every new record (outcome new, or joined; a bridging record is "joined");
    - `clusters.merged` when the record bridged clusters (surviving id = its cluster);
    - `duplicate.possible` for every candidate in the review band.
    """
    if decision.outcome == "replay":
        raise ValueError("replays re-send their stored events; build_events is for new decisions")
    matches = [_match(m) for m in decision.matches]
    best = decision.matches[0] if decision.matches else None  # the pipeline sorts matches by fused score
    common = {
        "schema_version": SCHEMA_VERSION,
        "record_id": decision.record_id,
        "cluster_id": decision.cluster_id,
        "canonical_id": decision.canonical_id,
        "matches": matches,
        "model_version": model_version,
        "config_version": config_version,
        "source": source.as_dict(),
        "event_time": utc_iso(now),
        "record_time": utc_iso(source.timestamp_ms / 1000) if source.timestamp_ms else None,
    }
    rid = decision.record_id
    events = [{"event_id": event_id(rid, CLUSTERED), "event_type": CLUSTERED, **common,
               "scores": _scores(best), "outcome": "new" if decision.outcome == "new" else "joined"}]
    if decision.merged_cluster_ids:
        merged = sorted(set(decision.merged_cluster_ids))
        events.append({"event_id": event_id(rid, MERGED, ",".join(merged)), "event_type": MERGED, **common,
                       "scores": _scores(best), "surviving_cluster_id": decision.cluster_id,
                       "merged_cluster_ids": merged})
    for m in decision.matches:
        if m.decision != "possible":
            continue
        events.append({"event_id": event_id(rid, POSSIBLE, m.record_id), "event_type": POSSIBLE, **common,
                       "scores": _scores(m), "candidate_record_id": m.record_id,
                       "candidate_cluster_id": m.cluster_id})
    return events


def encode_events(events: list[dict[str, Any]]) -> list[bytes]:
    """The exact bytes produced (and stored for replays)."""
    return [orjson.dumps(e) for e in events]


def event_key(event_bytes: bytes) -> bytes:
    """Kafka key of a stored event: its cluster id (the surviving one for merges)."""
    return str(orjson.loads(event_bytes)["cluster_id"]).encode()
