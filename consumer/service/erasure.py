"""The service's erasure duties (GDPR Art. 17) and changelog housekeeping, beside the batch state machine.

- **The topic door** (`_erase_messages`): messages of `service.erasure_topic` (one record id each) are
  erased in Redis (`RedisStateStore.erase`), malformed ones go to the dead-letter topic; then their offsets
  are committed. Unknown ids are counted, not errors.
- **Every member** forgets an erased record when it reads its `e` entry in the changelog
  (`Replica.apply` -> `Pipeline.erase`); the member that claims the entry in Redis (exactly one) re-checks
  the cluster the record left (`Pipeline.recheck`), writes any split and the new keeper like a batch does,
  deletes stored events that still name the id, and emits `record.erased` (+ `cluster.split`).
- **Snapshots within the bound**: after applying an erasure a member writes a new snapshot within half of
  `service.erasure_bound_seconds` and deletes the snapshots written before the erasure.
- **A bounded changelog**: each member publishes the position it has applied (about every second), each
  snapshot the position it holds, and a member trims the log to the oldest of them (every few seconds).

A mixin of `Service`; the attributes below are the service's.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Message

from consumer.config import ServiceSettings, Settings
from consumer.engine.erasure import Erased
from consumer.engine.pipeline import Pipeline
from consumer.io.events import Source, erasure_events, utc_iso
from consumer.io.group import GroupMember
from consumer.io.kafka import DeadLetterSink, TrackedProducer
from consumer.service.batch import Batch, Output
from consumer.service.changelog import Replica
from consumer.store.erasure import id_hash
from consumer.store.redis import BatchWrite, RedisStateStore
from consumer.telemetry.metrics import Metrics

__all__ = ["ErasureDuties", "ERASURE_SOURCE", "parse_erasure"]

log = logging.getLogger("dedup.service")

#: The `source.topic` of erasure events (offset = the erasure's changelog position).
ERASURE_SOURCE = "dedup.erasure"


def parse_erasure(value: bytes | None, max_chars: int) -> str | None:
    """The record id of an erasure message ({"record_id": "..."} or a JSON string), None when malformed."""
    if not value:
        return None
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    rid = obj.get("record_id") if isinstance(obj, dict) else obj
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        return None
    rid = str(rid)
    return rid if 0 < len(rid) <= max_chars else None


class ErasureDuties:
    """Mixed into `Service`."""

    settings: Settings
    svc: ServiceSettings
    pipe: Pipeline | None
    store: RedisStateStore
    metrics: Metrics
    producer: TrackedProducer | None
    dlq: DeadLetterSink | None
    member: GroupMember | None
    replica: Replica
    _reload_needed: bool
    _retry: Callable[..., Any]
    _send_now: Callable[[list[Any], Batch | None], None]
    _maybe_snapshot: Callable[..., Any]

    def _erasure_init(self) -> None:
        #: This member's name in the published positions (unique per process).
        self.member_name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._next_publish = 0.0
        self._next_trim = 0.0
        #: When a snapshot must be written because an erasure made the older ones stale (inf: none due).
        self._erasure_snapshot_due = float("inf")
        #: The highest changelog position of an erasure this member applied (older snapshots hold it).
        self._erased_upto = -1
        #: Erasures applied before the producer existed (the state loads before Kafka connects): their
        #: re-check and events wait for the first sync after it.
        self._deferred_erasures: list[tuple[int, Erased]] = []
        #: Erased ids whose mentions in other records' stored events are still to be deleted, and when.
        self._scrub_pending: list[str] = []
        self._next_scrub = 0.0

    def _hold_log(self) -> None:
        """Before a (possibly long) state load: hold the changelog from its current base for a lease, or
        the others would trim past the position this member is about to start from, and it would reload for
        ever. Its regular publishing replaces the lease once it runs."""
        lease = min(600.0, self.svc.erasure_bound_seconds / 4)
        self.store.publish_position("members", self.member_name, self.store.log_base(),
                                    int((time.time() + lease) * 1000))

    # -- the topic door -----------------------------------------------------------------------------------
    def _erase_messages(self, msgs: list[Message]) -> None:
        """Erase the ids of a poll's erasure-topic messages; malformed ones are dead-lettered."""
        assert self.dlq is not None and self.producer is not None and self.member is not None
        limit = self.settings.limits.max_field_chars
        ids: list[str] = []
        dead: list[Message] = []
        for m in msgs:
            rid = parse_erasure(m.value(), limit)
            if rid is None:
                dead.append(m)
            else:
                ids.append(rid)
        key = self.settings.encoders.hash_key
        done = self._retry("redis", "erase records", lambda: self.store.erase(
            ids, door="topic", hash_key=key, now_iso=utc_iso(time.time()), scrub=False)) if ids else {}
        dlq, producer = self.dlq, self.producer

        def send() -> int:
            for m in dead:
                dlq.send(m, "bad_erasure", "erase", "expected {\"record_id\": \"...\"} or a JSON string")
            return producer.flush_and_check(timeout=2.0)

        if dead:
            self._retry("kafka", "produce dead letters", send)
            for _ in dead:
                self.metrics.dead_letters.labels(reason="bad_erasure").inc()
        self.member.mark_done(msgs)
        self.member.commit_done(sync=False)
        erased = sum(done.values())
        for result, count in (("erased", erased), ("not_found", len(done) - erased), ("malformed", len(dead))):
            if count:
                self.metrics.erasures.labels(result=result).inc(count)
        log.info("erasure requests", extra={"door": "topic", "erased": erased, "not_found": len(done) - erased,
                                            "malformed": len(dead)})

    # -- applying the changelog's erasures ---------------------------------------------------------------
    def _after_erasures(self, erased: list[tuple[int, Erased]], batch: Batch | None) -> None:
        """Claim and re-check the clusters the erased records left; audit this member's removals."""
        pipe = self.pipe
        found = [(pos, e) for pos, e in erased if e.found]
        if self.producer is None:  # still loading: no events can go out yet
            self._deferred_erasures.extend(found)
            return
        if self._deferred_erasures:
            found, self._deferred_erasures = [*self._deferred_erasures, *found], []
        if pipe is None or not found:
            return
        now = time.time()
        self.metrics.erasures.labels(result="applied").inc(len(found))
        bound = self.svc.erasure_bound_seconds
        self._erasure_snapshot_due = min(self._erasure_snapshot_due, time.monotonic() + bound / 2)
        self._erased_upto = max(self._erased_upto, max(pos for pos, _ in found))
        key = self.settings.encoders.hash_key
        self._retry("redis", "audit erasures", lambda: self.store.audit(
            [{"h": id_hash(key, e.record_id), "t": utc_iso(now), "removed": ["replica", "index", "frequencies"],
              "member": self.member_name} for _, e in found]), batch)
        won = set(self._retry("redis", "claim erasures", lambda: self.store.claim(
            [pos for pos, _ in found], self.member_name, int(bound)), batch))
        outputs: list[Output] = []
        write = BatchWrite("erase-" + uuid.uuid4().hex)
        write.seen = self.replica.position
        founders: list[str] = []
        for pos, e in found:
            if pos not in won:
                continue
            done = pipe.recheck(e)
            if done.cluster_id is not None and done.canonical_id is not None:
                write.set_canonical(done.cluster_id, done.canonical_id)
            if done.pieces:
                write.add_split(done.cluster_id or "", [(p.cluster_id, p.founder_id, p.record_ids)
                                                        for p in done.pieces])
                for p in done.pieces:
                    write.set_canonical(p.cluster_id, p.canonical_id)
                    if p.cluster_id != done.cluster_id:
                        founders.append(p.founder_id)
            events = erasure_events(done, e.cluster_id or "", Source(ERASURE_SOURCE, 0, pos, None),
                                    model_version=pipe.model_version, config_version=pipe.config_version, now=now)
            outputs.extend(Output.from_event(ev) for ev in events)
        if won:
            self._retry("redis", "write erasure re-checks",
                        lambda: self.store.write_batch(write, utc_iso(time.time())), batch)
            self._reload_needed |= write.dropped_pieces > 0  # a piece founded by a record erased meanwhile
            self.replica.note_own_splits(founders)
            # Other records' stored events may name the id (a candidate, a split piece; the doors of a
            # running member leave this to the re-checking member): dropped by `_housekeeping`, batched.
            self._scrub_pending.extend(e.record_id for pos, e in found if pos in won)
            self._send_now(outputs, batch)
        log.info("erasures applied", extra={"erased": len(found), "rechecked": len(won),
                                            "events": len(outputs)})

    # -- bounds: snapshots and the changelog -------------------------------------------------------------
    def _housekeeping(self) -> None:
        """Publish this member's position, trim the changelog, and honour the erasure bound (snapshots)."""
        now = time.monotonic()
        if now >= self._next_publish:
            self._next_publish = now + 1.0
            self.store.publish_position("members", self.member_name, self.replica.position, int(time.time() * 1000))
        if now >= self._next_trim:
            self._next_trim = now + 5.0
            # A member silent for longer (killed, hung) or a snapshot older than this no longer holds the
            # log: both are bounded by the erasure bound, or an erased id could outlive it in the log.
            bound = self.svc.erasure_bound_seconds
            live_ms = int(1000 * max(2.0, min(60.0, 2 * self.svc.stall_seconds, bound / 4)))
            fresh_ms = int(1000 * max(4.0, min(2 * self.svc.snapshot_interval_seconds + 60, bound / 2)))
            before, after, head = self.store.trim_log(int(time.time() * 1000), live_ms, fresh_ms)
            if after > before:
                log.debug("changelog trimmed", extra={"from": before, "to": after, "head": head})
        if self._scrub_pending and now >= self._next_scrub:  # one pass over ev:* for many erasures
            self._next_scrub = now + 2.0
            ids, self._scrub_pending = self._scrub_pending, []
            dropped = self.store.scrub_events(ids)
            log.info("stored events naming erased records deleted", extra={"erased": len(ids), "deleted": dropped})
        if self.svc.snapshot_dir and now >= self._erasure_snapshot_due:
            self._maybe_snapshot(force=True)

    def _snapshot_written(self, name: str, position: int) -> None:
        """Publish a new snapshot's position; after an erasure, delete every snapshot written before it."""
        root = Path(self.svc.snapshot_dir)
        handle = f"{root.resolve()}/{name}"
        self.store.publish_position("snapshots", handle, position, int(time.time() * 1000))
        prefix = f"{root.resolve()}/"
        for raw in self.store.client.hkeys(self.store.key("snapshots")):  # folders pruned since
            other = raw.decode()
            if other.startswith(prefix) and not Path(other).is_dir():
                self.store.withdraw_position("snapshots", other)
        if self._erasure_snapshot_due == float("inf"):
            return
        self._erasure_snapshot_due = float("inf")
        removed = []
        for path in root.glob("snap-*"):
            if path.name == name or not path.is_dir():
                continue
            try:
                pos = int(json.loads((path / "meta.json").read_text())["position"])
            except (OSError, ValueError, KeyError):
                pos = -1
            if pos <= self._erased_upto:
                shutil.rmtree(path, ignore_errors=True)
                self.store.withdraw_position("snapshots", f"{root.resolve()}/{path.name}")
                removed.append(path.name)
        self.store.audit([{"t": utc_iso(time.time()), "removed": ["snapshots"], "member": self.member_name,
                           "snapshots_deleted": len(removed), "position": position}])
        log.info("snapshots before an erasure deleted", extra={"deleted": len(removed), "position": position})

    def _withdraw(self) -> None:
        """A clean stop: this member no longer holds the changelog back."""
        try:
            self.store.withdraw_position("members", self.member_name)
        except Exception:  # noqa: BLE001 - best effort at shutdown; a stale entry expires anyway
            pass
