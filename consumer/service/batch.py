"""One micro-batch of the service: Kafka messages -> records or dead letters -> decisions -> events + state.

Kept apart from the poll loop (`consumer.service.runner`) because this part has no retries, no rebalances and no
clocks other than the `now` it is given: what a batch *means* is decided here, how it is *delivered* there.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Message

from consumer.config import Settings
from consumer.engine.clustering import cluster_id_for
from consumer.engine.pipeline import Decision, Encoded, Pipeline
from consumer.engine.records import Record, RejectError, parse_record
from consumer.engine.state import record_states
from consumer.io.events import Source, build_events
from consumer.io.listing import IMAGE_ROLE, attach_image
from consumer.store.redis import BatchWrite

log = logging.getLogger("dedup.service")

__all__ = ["PROFILE_HEADER", "DeadLetter", "Output", "Batch", "decode_message", "source_of", "assemble", "outputs_of"]

#: Optional header naming the input profile of a message; a name other than the service's -> dead letter.
PROFILE_HEADER = "dedup.profile"


@dataclass(frozen=True)
class DeadLetter:
    message: Message
    reason: str  # short stable code (`malformed_json`, `missing_id`, ...), never a field value
    stage: str  # decode | validate | decide (internal_error: the core raised, see service_guard)
    detail: str = ""


@dataclass(frozen=True)
class Output:
    """One event to produce: key = cluster id, plus type/id headers so subscribers can filter cheaply."""

    key: bytes
    value: bytes
    event_type: str
    event_id: str

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> Output:
        """A freshly built event: serialised once, key and headers taken from the dict."""
        return cls(str(event["cluster_id"]).encode(), orjson.dumps(event), event["event_type"], event["event_id"])

    @classmethod
    def from_bytes(cls, value: bytes) -> Output:
        """A stored event (a replay re-sends its first emission's exact bytes)."""
        e = orjson.loads(value)
        return cls(str(e["cluster_id"]).encode(), value, e["event_type"], e["event_id"])


def outputs_of(stored: dict[str, list[bytes]]) -> dict[str, list[Output]]:
    """Stored events (record id -> bytes) as outputs."""
    return {rid: [Output.from_bytes(v) for v in values] for rid, values in stored.items()}


@dataclass
class Batch:
    """A micro-batch in flight; `stored`/`acked` mark how far its effects got (see Service)."""

    messages: list[Message]
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    good: list[tuple[Message, Record]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    write: BatchWrite | None = None
    #: record id -> its events (new records: built now; replays: from their bytes stored in Redis)
    events: dict[str, list[Output]] = field(default_factory=dict)
    replay_ids: list[str] = field(default_factory=list)
    #: record id -> its events without `clusters.merged`, sent instead when Redis says every merge its
    #: decision makes was already done by another member (`BatchWrite.demoted`).
    alt_events: dict[str, list[Output]] = field(default_factory=dict)
    stored: bool = False
    acked: bool = False
    abandoned: bool = False
    decoded: bool = False
    #: Keyed content fingerprint of each good record (aligned with `good`; service_guard.fingerprint).
    fps: list[str] = field(default_factory=list)
    #: `Pipeline.encode_ahead` of the good records, running on the service's encode thread.
    encoded: Future[Encoded] | None = None
    #: Registered in flight across the group (`consumer.store.inflight`) and not yet written.
    registered: bool = False
    #: Tokens of the group's batches in flight when this one was registered: decided after them.
    earlier: list[str] = field(default_factory=list)

    def reads(self, partitions: set[tuple[str, int]]) -> bool:
        """Whether any message of the batch comes from one of these (topic, partition)s."""
        return any((m.topic(), m.partition()) in partitions for m in self.messages)

    def decode(self, settings: Settings) -> None:
        """Split the messages into good records and dead letters (once; a retried batch keeps them)."""
        if self.decoded:
            return
        for msg in self.messages:
            item = decode_message(msg, settings)
            if isinstance(item, Record):
                self.good.append((msg, item))
            else:
                self.dead.append(item)
        self.decoded = True

    def join(self, later: Batch) -> None:
        """Take in a decoded batch polled after this one (its messages follow these: same order, later
        offsets), before this one is decided."""
        self.messages.extend(later.messages)
        self.good.extend(later.good)
        self.dead.extend(later.dead)

    def fingerprints(self) -> dict[str, str]:
        """Content fingerprint of each record id's first occurrence in the batch (set by the service)."""
        out: dict[str, str] = {}
        for (_msg, rec), fp in zip(self.good, self.fps):
            out.setdefault(rec.record_id, fp)
        return out

    def outputs(self) -> list[Output]:
        """Events in input order, each record's events once per batch."""
        out: list[Output] = []
        seen: set[str] = set()
        for _msg, rec in self.good:
            if rec.record_id in seen:
                continue
            seen.add(rec.record_id)
            out.extend(self.events.get(rec.record_id, []))
        return out


def source_of(msg: Message) -> Source:
    ts_type, ts = msg.timestamp()
    return Source(msg.topic() or "", msg.partition() or 0, msg.offset() or 0,
                  ts if ts_type != 0 and ts > 0 else None)


def decode_message(msg: Message, settings: Settings) -> Record | DeadLetter:
    """Bytes -> Record, or a DeadLetter with the reason. Never raises for bad input."""
    value = msg.value()
    if value is None:
        return DeadLetter(msg, "empty_value", "decode", "tombstone (no value)")
    if len(value) > settings.limits.max_record_bytes:
        return DeadLetter(msg, "oversized_record", "decode",
                          f"{len(value)} bytes (limit {settings.limits.max_record_bytes})")
    for key, hv in msg.headers() or []:
        if key == PROFILE_HEADER and (hv or b"").decode("utf-8", "replace") != settings.profile.name:
            return DeadLetter(msg, "unknown_profile", "decode",
                              f"this consumer handles profile {settings.profile.name!r} only")
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return DeadLetter(msg, "bad_encoding", "decode", "value is not valid UTF-8")
    try:
        row: Any = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return DeadLetter(msg, "malformed_json", "decode", f"not valid JSON ({exc.msg})")
    try:
        rec = parse_record(row, settings.profile, settings.limits)
    except RejectError as exc:
        return DeadLetter(msg, exc.reason, "validate", exc.detail)
    if IMAGE_ROLE in settings.profile.roles:
        # An unusable image leaves the modality absent (consumer/io/listing.py says why); logged by code only.
        rec, warning = attach_image(rec, None, settings.limits.max_image_bytes)
        if warning:
            log.warning("listing image not used", extra={"reason": warning, "record_id": rec.record_id})
    return rec


def assemble(batch: Batch, pipe: Pipeline, now: float, generations: Mapping[str, int] | None = None) -> None:
    """Build events for the batch's new decisions and the Redis write that persists them.

    Replays (ids the pipeline already holds from an earlier batch) are listed in `replay_ids`: their stored
    events must be fetched from Redis by the caller. A record seen twice in one batch reuses the events built
    for its first occurrence. `generations`: record id -> times it was erased before (see `build_events`).
    """
    gens = generations or {}
    write = BatchWrite(batch.token)
    fresh: list[tuple[Message, Decision]] = []
    for (msg, _rec), d in zip(batch.good, batch.decisions):
        if d.outcome != "replay":
            fresh.append((msg, d))
        elif d.record_id not in batch.events and d.record_id not in batch.replay_ids:
            batch.replay_ids.append(d.record_id)
    states = record_states(pipe, [d.row for _, d in fresh])
    ids = pipe.store.record_ids
    fps = batch.fingerprints()
    for (msg, d), st in zip(fresh, states):
        events = [Output.from_event(e) for e in build_events(
            d, source_of(msg), model_version=pipe.model_version, config_version=pipe.config_version, now=now,
            schema_version=pipe.settings.service.event_schema, generation=gens.get(d.record_id, 0))]
        batch.events[d.record_id] = events
        alt = None
        if d.merged_cluster_ids:
            joined = dataclasses.replace(d, outcome="joined", merged_cluster_ids=[])
            alt = [Output.from_event(e) for e in build_events(
                joined, source_of(msg), model_version=pipe.model_version, config_version=pipe.config_version,
                now=now, schema_version=pipe.settings.service.event_schema, generation=gens.get(d.record_id, 0))]
            batch.alt_events[d.record_id] = alt
        write.add_record(st, st.cluster_id, [e.value for e in events], fps.get(d.record_id, ""),
                         None if alt is None else [e.value for e in alt])
        if d.merged_cluster_ids:
            write.add_merge(d.cluster_id, d.merged_cluster_ids, of_last_record=True)
        if d.splits and d.split_cluster_id is not None:
            write.add_split(d.split_cluster_id, [(p.cluster_id, p.founder_id, p.record_ids) for p in d.splits])
            # Keepers as of the end of the batch (a later decision may have changed a piece again).
            for founder_id in [d.split_founder_id or "", *(p.founder_id for p in d.splits)]:
                row = pipe.store.row_of.get(founder_id)
                if row is not None:
                    c = pipe.clusters.cluster_of[row]
                    write.set_canonical(cluster_id_for(ids[c]), ids[pipe.canonical[c]])
        founder_row = pipe.store.row_of[st.founder_id]
        write.set_canonical(cluster_id_for(st.founder_id), ids[pipe.canonical[founder_row]])
    # In-batch repeats of a record decided in this batch are not replays from Redis.
    batch.replay_ids = [r for r in batch.replay_ids if r not in batch.events]
    for msg in batch.messages:
        write.set_offset(msg.topic() or "", msg.partition() or 0, (msg.offset() or 0) + 1)
    batch.write = write
