"""Duplicate events (schema `consumer/schemas/duplicate-event.v2.json`) built from decisions: pure functions.

Version 2 carries the per-modality scores as an open map (the profile's encoders decide which modalities
exist) and the fused score as a top-level `fused`; version 1 (fixed text/name/city/behaviour/device keys)
can still be emitted for one release (`service.event_schema = "1"`), and `upgrade_event` reads either.

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

from consumer.engine.erasure import Rechecked
from consumer.engine.pipeline import Decision, Match

__all__ = ["SCHEMA_VERSION", "EVENT_TYPES", "EVENTS_FOR_OUTCOME", "Source", "event_id", "build_events", "utc_iso",
           "upgrade_event", "erasure_events"]

SCHEMA_VERSION = "2"
#: Event ids hash this, not the schema version: ids stay the same across the v1 -> v2 upgrade, so
#: subscribers de-duplicating on event_id see a replayed v1 event and its v2 re-emission as one.
_ID_VERSION = "1"
CLUSTERED = "record.clustered"
MERGED = "clusters.merged"
POSSIBLE = "duplicate.possible"
SPLIT = "cluster.split"
ERASED = "record.erased"
EVENT_TYPES = (CLUSTERED, MERGED, POSSIBLE, SPLIT, ERASED)
#: One outcome vocabulary: the decision's (`Decision.outcome`, also each `dedup batch` line's `outcome`).
#: The events each outcome produces besides `duplicate.possible` (one per review-band candidate). From
#: schema v2 on, `record.clustered.outcome` *is* the decision's outcome, so `merged` means the same in a
#: batch line and in an event: the record bridged clusters (and `clusters.merged` follows). v1 events
#: keep v1's words (`merged` -> `joined`, see `_V1_OUTCOME`). A replay produces no new events: the stored
#: ones are re-sent.
EVENTS_FOR_OUTCOME: dict[str, tuple[str, ...]] = {
    "new": (CLUSTERED,), "joined": (CLUSTERED,), "merged": (CLUSTERED, MERGED), "replay": (),
}
_V1_OUTCOME = {"new": "new", "joined": "joined", "merged": "joined"}
#: The v1 schema's fixed score keys.
V1_MODALITIES = ("text", "name", "city", "behaviour", "device")
_SCORE_KEYS = ("fused", *V1_MODALITIES)


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
    raw = "\x1f".join(("dedup-event", _ID_VERSION, record_id, event_type, discriminator))
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def utc_iso(epoch_seconds: float) -> str:
    """2025-01-02T03:04:05.123Z (the schema accepts only UTC)."""
    dt = datetime.fromtimestamp(epoch_seconds, tz=timezone.utc)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _score(value: float | None) -> float | None:
    # Similarities are in [0, 1] by construction; clamp float noise (e.g. cosine 1.0000001) for the schema.
    return None if value is None else min(max(float(value), 0.0), 1.0)


def _scores_v1(match: Match | None) -> dict[str, float | None]:
    if match is None:
        return dict.fromkeys(_SCORE_KEYS)
    out: dict[str, float | None] = {"fused": _score(match.fused)}
    out.update({m: _score(match.scores.get(m)) for m in V1_MODALITIES})
    return out


def _mod_scores(match: Match, v1: bool) -> dict[str, float | None]:
    if v1:
        return {k: _score(match.scores.get(k)) for k in V1_MODALITIES}
    return {k: _score(v) for k, v in match.scores.items()}


def _match(m: Match, v1: bool) -> dict[str, Any]:
    return {"record_id": m.record_id, "cluster_id": m.cluster_id, "fused": _score(m.fused),
            "scores": _mod_scores(m, v1), "decision": m.decision}


def _best(match: Match | None, v1: bool) -> dict[str, Any]:
    """The scores of the event's subject pair: v1 one object with "fused", v2 `fused` + the map."""
    if v1:
        return {"scores": _scores_v1(match)}
    if match is None:
        return {"fused": None, "scores": {}}
    return {"fused": _score(match.fused), "scores": _mod_scores(match, False)}


def upgrade_event(event: dict[str, Any]) -> dict[str, Any]:
    """A v1 or v2 event in the v2 shape (for subscribers during the migration release)."""
    if event.get("schema_version") != "1":
        return event
    out = dict(event)
    scores = dict(event["scores"])
    out["fused"] = scores.pop("fused", None)
    out["scores"] = {} if out["fused"] is None and all(v is None for v in scores.values()) else scores
    out["schema_version"] = "2"
    return out


def build_events(decision: Decision, source: Source, *, model_version: str, config_version: str,
                 now: float, schema_version: str = SCHEMA_VERSION, generation: int = 0) -> list[dict[str, Any]]:
    """The events one (non-replay) decision produces, in a fixed order.

    - `record.clustered` for every new record, `outcome` = the decision's (new | joined | merged; v1: a
      bridging record is "joined");
    - `clusters.merged` when the record bridged clusters (outcome merged; surviving id = its cluster);
    - `duplicate.possible` for every candidate in the review band;
    - `cluster.split` when, after the record joined, its cluster was split (v2 only: later evidence showed
      it held different people; `pieces` lists every new cluster with all its record ids).

    `generation`: how often the record id was erased before (an id sent again after its erasure is a new
    record: its event ids must differ from the erased record's, or subscribers would drop them as repeats).
    """
    if decision.outcome == "replay":
        raise ValueError("replays re-send their stored events; build_events is for new decisions")
    if schema_version not in ("1", "2"):
        raise ValueError(f"unknown event schema version {schema_version!r}")
    v1 = schema_version == "1"
    matches = [_match(m, v1) for m in decision.matches]
    best = decision.matches[0] if decision.matches else None  # the pipeline sorts matches by fused score
    common = {
        "schema_version": schema_version,
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
    rid = decision.record_id + (f"\x1egeneration {generation}" if generation else "")
    events = [{"event_id": event_id(rid, CLUSTERED), "event_type": CLUSTERED, **common,
               **_best(best, v1), "outcome": _V1_OUTCOME[decision.outcome] if v1 else decision.outcome}]
    if MERGED in EVENTS_FOR_OUTCOME[decision.outcome]:
        merged = sorted(set(decision.merged_cluster_ids))
        events.append({"event_id": event_id(rid, MERGED, ",".join(merged)), "event_type": MERGED, **common,
                       **_best(best, v1), "surviving_cluster_id": decision.cluster_id,
                       "merged_cluster_ids": merged})
    for m in decision.matches:
        if m.decision != "possible":
            continue
        events.append({"event_id": event_id(rid, POSSIBLE, m.record_id), "event_type": POSSIBLE, **common,
                       **_best(m, v1), "candidate_record_id": m.record_id,
                       "candidate_cluster_id": m.cluster_id})
    if decision.splits and not v1:  # v1 has no split event: its subscribers keep the pre-split view
        pieces = [p.to_dict() for p in decision.splits]
        events.append({"event_id": event_id(rid, SPLIT, ",".join(p["cluster_id"] for p in pieces)),
                       "event_type": SPLIT, **common, **_best(best, v1),
                       "split_cluster_id": decision.split_cluster_id, "pieces": pieces})
    return events




def erasure_events(done: Rechecked, cluster_id: str, source: Source, *, model_version: str, config_version: str,
                   now: float) -> list[dict[str, Any]]:
    """The events of one erasure (v2 only): `record.erased` (the cluster it was in, the cluster's keeper
    now and, when the erased record was the keeper, `previous_canonical_id`), then `cluster.split` when
    records changed cluster (the erased record founded it, or held it together). Ids only: an erased
    record's values were never in an event, and its signature is gone. The event id hashes the record id
    and the erasure's changelog position, so an id erased, sent again and erased again gets new ids."""
    rid = done.record_id
    canonical = done.canonical_id or rid  # nothing left: the cluster ended with the erased record
    common = {"schema_version": SCHEMA_VERSION, "record_id": rid, "canonical_id": canonical, "fused": None,
              "scores": {}, "matches": [], "model_version": model_version, "config_version": config_version,
              "source": source.as_dict(), "event_time": utc_iso(now), "record_time": None}
    erased: dict[str, Any] = {"event_id": event_id(rid, ERASED, str(source.offset)), "event_type": ERASED,
                              **common, "cluster_id": cluster_id}
    if done.previous_canonical_id and done.previous_canonical_id != canonical:
        erased["previous_canonical_id"] = done.previous_canonical_id
    events = [erased]
    if done.split_cluster_id and done.pieces:
        pieces = [p.to_dict() for p in done.pieces]
        events.append({"event_id": event_id(rid, SPLIT, str(source.offset) + ":" + ",".join(
            p["cluster_id"] for p in pieces)), "event_type": SPLIT, **common,
            "cluster_id": done.cluster_id or cluster_id, "split_cluster_id": done.split_cluster_id,
            "pieces": pieces})
    return events
