"""`dedup run`: the Kafka consumer loop around `Pipeline.process`, with at-least-once, idempotent effects.

Per micro-batch, in this order, and nothing of a later step before the earlier one succeeded:

1. poll up to `max_batch` records (waiting at most `max_wait_ms` for a batch to fill);
2. decode + validate; bad input -> dead-letter topic with the reason in headers;
3. `Pipeline.process` (same core as `dedup batch`); build events; replays get their *stored* events; with
   a shared Milvus index, the new records' vectors are written there (`service.shared_index`);
4. one atomic Redis script writes the new records' state, the merges and every record's event bytes;
5. produce events (key = cluster id) and dead letters, wait until the broker acknowledged all of them;
6. only then commit the batch's next offsets.

While batch i goes through steps 2-6, batch i+1 is already polled, decoded and *encoded* on a worker
thread (`Pipeline.encode_ahead`: the transformer, the largest cost, overlaps the rest). Its offsets are not
committed before its own step 6, so a crash or revoke just drops it and it is read again. Records polled
while batch i+1 waits join it when both fit in `max_batch` (below full load, so they are not held back a
whole batch; `_joins`).

A crash anywhere re-reads the batch from the last commit: records already in Redis come back as replays and
re-send their stored events byte for byte (same event ids), records not in Redis are decided again from the
same restored state, hence identically. So Redis never sees a merge twice and subscribers see repeated events
only with repeated ids. While Redis or the broker is unreachable the batch is kept and retried (partitions
paused, the group session kept alive, liveness beating, readiness false with the reason); a revoked or lost
partition drops the unfinished batch without committing, and state not yet in Redis is reloaded from it.

Commits are asynchronous after each acknowledged batch (a synchronous commit blocks for up to the session
timeout when the broker is unreachable, which would starve the liveness beat); they are synchronous on
partition revoke and at shutdown. A failed asynchronous commit only means a later replay.

The ordering rules above and the rebalance callbacks that may interrupt them are one state machine, kept
here to be checked in one place. Around it, as mixins of `Service`: retrying and waiting on Redis/Kafka
while they are away, and connecting to Kafka (`service_deps`), loading and reloading the state
(`service_state`), the changelog tail and snapshots (`service_replica`). What a batch means lives in
`service_batch`, the poison-pill guard in `service_guard`, the clients in `io/`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from consumer.api.app import service_routes
from consumer.api.health import HealthState, listeners
from consumer.config import DEFAULT_HASH_KEY, ConfigError, Settings
from consumer.engine.pipeline import Pipeline
from consumer.engine.records import Record
from consumer.io.artifacts import Artifacts
from consumer.io.events import utc_iso
from consumer.io.group import TP, GroupMember
from consumer.io.kafka import (
    DeadLetterSink,
    DeliveryError,
    TrackedProducer,
    normalize_properties,
    properties_from_env,
)
from consumer.service.batch import Batch, outputs_of
from consumer.service.changelog import Replica
from consumer.service.deps import DEFAULT_KAFKA_PROPERTIES, Abandoned, DependencyRefused, DependencyWaits
from consumer.service.erasure import ErasureDuties
from consumer.service.freshness import FreshnessDuties
from consumer.service.guard import decide_guarded, encoded_or_none, fingerprint_key, set_aside, set_aside_id_conflicts
from consumer.service.replica import ReplicaDuties
from consumer.service.shared_index import SharedIndexDuties
from consumer.service.state import StateLoading, freeze_survivors
from consumer.service.sync import RENAME_ATTEMPTS
from consumer.store.redis import MergesMoved, RedisStateStore
from consumer.telemetry.logs import kafka_logger
from consumer.telemetry.metrics import Metrics

__all__ = ["Service", "Abandoned", "DependencyRefused", "DEFAULT_KAFKA_PROPERTIES"]

log = logging.getLogger("dedup.service")


class _NeedsReload(Exception):
    """The in-memory state knows a record that Redis does not: rebuild it from Redis and decide again."""


class Service(StateLoading, ReplicaDuties, ErasureDuties, SharedIndexDuties, FreshnessDuties, DependencyWaits):
    """One consumer-group member. `run()` blocks until `stop()` (SIGTERM/SIGINT in the CLI)."""

    def __init__(self, settings: Settings, *, kafka_properties: Mapping[str, Any] | None = None,
                 text_encoder: Any = None, shutdown_grace: float = 30.0) -> None:
        self.settings = settings
        self.svc = settings.service
        if settings.encoders.hash_key == DEFAULT_HASH_KEY and not self.svc.insecure_default_key:
            raise ConfigError("encoders.hash_key is the public default: set a secret key (DEDUP_ENCODERS__HASH_KEY"
                              " or [encoders] hash_key) or pass --insecure-default-key (docs/security.md)")
        # defaults <- DEDUP_KAFKA_* environment <- explicit properties (e.g. --kafka-property); the clients
        # are then built with an empty environment so the explicit ones really win.
        self.kafka_properties = {**DEFAULT_KAFKA_PROPERTIES, "logger": kafka_logger(), **properties_from_env(),
                                 **normalize_properties(kafka_properties)}
        self.shutdown_grace = shutdown_grace
        self.metrics = Metrics()
        self.health = HealthState(self.svc.stall_seconds, required_dependencies=("redis", "kafka"),
                                  ready_gauge=self.metrics.ready)
        self.store = RedisStateStore(self.svc.redis, self.svc.redis_prefix,
                                     events_ttl=self.svc.replay_events_ttl_seconds)
        api = [service_routes(settings, lambda: self.pipe, self.store, self.metrics)] if self.svc.api else []
        self.http, self.management = listeners(self.health, self.metrics.registry, settings, routes=api)
        self._text_encoder = text_encoder
        self._artifacts: Artifacts | None = None
        self._fp_key = fingerprint_key(settings.encoders.hash_key)
        self.pipe: Pipeline | None = None
        #: Where this member is in the changelog of the whole group's writes (consumer/service/changelog.py).
        self.replica = Replica()
        self.member: GroupMember | None = None
        self.producer: TrackedProducer | None = None
        self.dlq: DeadLetterSink | None = None
        self._stop = False
        self._stop_deadline = float("inf")
        self._inflight: Batch | None = None
        #: Polled, decoded and being encoded while `_inflight` finishes.
        self._pending: Batch | None = None
        self._reload_needed = False
        self._check_count = False
        self._next_idle_check = 0.0
        self._next_lag = 0.0
        self._next_snapshot = float("inf")
        self.state_source = ""
        self._last_warn: dict[str, float] = {}
        self._kafka_ok = False
        #: Set once the HTTP endpoints are up (tests and embedders wait on it before reading `url`).
        self.started = threading.Event()
        self._erasure_init()
        self._given_up, self._mine = {}, set()  # consumer/service/freshness.py

    # -- lifecycle ------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Finish the current batch, commit, close (signal-safe: only sets flags)."""
        self._stop = True
        self._stop_deadline = time.monotonic() + self.shutdown_grace

    @property
    def url(self) -> str:
        """Base URL of /healthz, /readyz, /metrics."""
        return self.http.url

    def run(self) -> int:
        self.http.start()
        if self.management is not None:
            self.management.start()
        self.started.set()
        log.info("starting", extra={"topics": self.svc.input_topics, "group": self.svc.group,
                                    "events_topic": self.svc.events_topic, "http_port": self.http.port})
        try:
            try:
                self._load_state()
            except Abandoned:
                return 1  # stopped before Redis ever answered
            self._connect_kafka()
            self._loop()
        except DependencyRefused as exc:
            log.error("dependency refused the credentials, stopping", extra={"reason": str(exc)})
            return 3
        finally:
            self._shutdown()
        return 0

    def _loop(self) -> None:
        """Poll batch i+1 and start encoding it, then finish batch i (see the module docstring)."""
        assert self.pipe is not None
        with self.pipe.decide_thread_limits():
            while not self._stop:
                self.health.beat()
                if self._reload_needed or self._check_count:
                    try:
                        self._maybe_reload()
                    except Abandoned:
                        break  # stopped while Redis was unreachable: nothing decided, nothing to commit
                # With a batch waiting, deciding is the bottleneck: take only what has already arrived
                # (waiting max_wait_ms here would delay the waiting batch; records that arrive meanwhile
                # simply join the next batch). Otherwise wait for a record, then up to max_wait_ms to fill.
                busy = self._pending is not None
                msgs = (self.member.collect(self.svc.max_batch, 0 if busy else self.svc.max_wait_ms,
                                            0.0 if busy else 0.5)
                        if self.member else [])
                erasures = [m for m in msgs if m.topic() == self.svc.erasure_topic] if self.svc.erasure_topic else []
                if erasures:  # the erasure door: erased in Redis now, replicas follow via the changelog
                    msgs = [m for m in msgs if m.topic() != self.svc.erasure_topic]
                    self._erase_messages(erasures)
                if msgs and busy and self._joins(msgs):
                    nxt = None  # joined the waiting batch: decided with it now, not one batch later
                else:
                    nxt = self._prefetch(Batch(msgs)) if msgs else None
                current, self._pending = self._pending, nxt
                if current is not None and not current.abandoned:
                    self._handle(current)
                elif nxt is None and not erasures:
                    self._idle_checks()
                self._written(current)  # a dropped batch: nobody waits for it any longer
            last, self._pending = self._pending, None
            if last is not None and not last.abandoned and time.monotonic() < self._stop_deadline:
                self._handle(last)  # polled before the stop: finish it rather than re-read it
            self._written(last)

    def _shutdown(self) -> None:
        # In-flight API requests finish first (they use the pipeline and Redis closed below); the
        # management listener keeps answering probes until the end.
        self.http.stop(grace=5.0)
        if self._stop and self._inflight is None and self._pending is None:
            self._maybe_snapshot(force=True)  # a clean stop: the next start needs only the tail
        self._withdraw()
        if self.member is not None:
            self.member.close()
        if self.producer is not None:
            self.producer.producer.flush(5)
        self.store.close()
        if self.pipe is not None:
            self.pipe.close()
        self.health.set_assigned(False)
        if self.management is not None:
            self.management.stop(grace=1.0)
        log.info("stopped")

    # -- rebalance --------------------------------------------------------------------------------------
    def _on_assigned(self, assigned: set[TP]) -> None:
        self.health.set_assigned(bool(assigned))
        self._set_dep("kafka", True)
        self._check_count = True  # another member may have written records meanwhile

    def _on_gone(self, gone: set[TP], lost: bool) -> None:
        """Partitions revoked or lost: an unfinished batch reading them is dropped, never committed."""
        pending = self._pending
        if pending is not None and pending.reads(gone):
            pending.abandoned = True  # not decided yet: nothing to undo
        batch = self._inflight
        if batch is not None and not batch.acked and batch.reads(gone):
            batch.abandoned = True
            self._reload_needed |= not batch.stored  # its records are in memory but not in Redis
        self.metrics.forget_partitions(sorted(gone))
        remaining = self.member.assigned - gone if self.member is not None else set()
        self.health.set_assigned(bool(remaining))

    # -- one batch ---------------------------------------------------------------------------------------
    def _handle(self, batch: Batch) -> None:
        msgs = batch.messages
        self._inflight = batch
        t0 = time.perf_counter()
        try:
            self._await_earlier(batch)  # the group's batches polled before this one: written first
            self._sync(batch)  # decide with everything the other members wrote so far
            self._decide(batch)
            self._publish(batch, self.pipe)  # a shared Milvus index: vectors before the Redis write
            self._store(batch)
            self._deliver(batch)
            assert self.member is not None
            self.member.mark_done(msgs)
            self.member.commit_done(sync=False)
            freeze_survivors()
            self._maybe_snapshot()
            self._update_lag()
            log.debug("batch done", extra={"messages": len(msgs), "dead": len(batch.dead), "replays":
                                           len(batch.replay_ids), "first_offset": msgs[0].offset(),
                                           "ms": round((time.perf_counter() - t0) * 1000, 1)})
        except Abandoned as exc:
            log.warning("batch dropped uncommitted", extra={"messages": len(msgs), "why": str(exc),
                                                            "stored": batch.stored})
        finally:
            self._written(batch)
            self._inflight = None
            if self.member is not None:
                self.member.resume()

    def _decide(self, batch: Batch) -> None:
        if not batch.decoded:
            with self.metrics.time_stage("decode"):
                batch.decode(self.settings)
        for attempt in range(3):
            try:
                self._decide_once(batch) if self.shared_index is None else self._retry(  # retried while Milvus is away
                    "milvus", "search the index", lambda: self._decide_once(batch), batch)
                return
            except _NeedsReload:
                log.warning("state behind redis, reloading", extra={"attempt": attempt})
                self._load_state()
        log.error("replayed records without stored events; sending none for them")

    def _decide_once(self, batch: Batch) -> None:
        assert self.pipe is not None
        batch.events.clear()
        batch.alt_events.clear()
        batch.replay_ids.clear()
        before = self.pipe.timer.totals()
        # The batch's ahead-of-time encoding stays valid across a state reload (encoders are deterministic);
        # `process` re-encodes whatever it does not cover.
        encoded = encoded_or_none(batch.encoded)
        guarded = decide_guarded(lambda: self.pipe, [r for _, r in batch.good], encoded, self._rollback)
        set_aside(batch, guarded)  # poison -> dead letters (internal_error), the rest decided
        set_aside_id_conflicts(batch, self._fp_key, lambda ids: self._retry(
            "redis", "read fingerprints", lambda: self.store.stored_fingerprints(ids), batch))
        pipe = self.pipe
        self.metrics.observe_stages(pipe.timer.since(before, pipe.batch_stages))
        self._name_and_assemble(batch)
        if batch.replay_ids:
            stored = self._retry("redis", "read stored events",
                                 lambda: self.store.stored_events(batch.replay_ids), batch)
            missing = [r for r in batch.replay_ids if r not in stored]
            if missing:  # stored but past service.replay_events_ttl_seconds: sent long ago, none re-sent
                expired = self._retry("redis", "read records", lambda: self.store.existing(missing), batch)
                missing = [r for r in missing if r not in expired]
                if expired:
                    log.info("replayed records past the stored-events retention re-send nothing",
                             extra={"records": len(expired)})
            batch.events.update(outputs_of(stored))
            log.info("replayed records re-send their stored events",
                     extra={"records": len(stored), "missing": len(missing)})
            if missing:
                self._reload_needed = True
                raise _NeedsReload(f"{len(missing)} replayed records not in redis")

    def _rollback(self, accepted: list[list[Record]]) -> None:
        """Undo a failed decide attempt: the state from Redis (nothing of this batch is there yet), then
        the sub-batches already accepted, decided again in the same calls (deterministic: same state)."""
        self._load_state()
        for chunk in accepted:
            assert self.pipe is not None
            self.pipe.process(chunk)

    def _store(self, batch: Batch) -> None:
        assert batch.write is not None and self.pipe is not None
        with self.metrics.time_stage("redis"):
            for attempt in range(RENAME_ATTEMPTS):
                write = batch.write
                write.seen = self.replica.position  # erasures past it raced this batch (the store cleans up)
                write.check_merges = attempt < RENAME_ATTEMPTS - 1  # the last attempt writes as it is
                try:
                    _n, conflicts = self._retry("redis", "write batch",
                                                lambda w=write: self.store.write_batch(w, utc_iso(time.time())), batch)
                    break
                except MergesMoved:  # nothing written: name the clusters again and rebuild the events
                    log.info("merges done meanwhile by another member, events rebuilt", extra={"attempt": attempt})
                    self._name_and_assemble(batch)
            if conflicts:  # another member (or a dropped batch) got there first: its outcome stands
                log.warning("records already stored by another batch", extra={"records": len(conflicts)})
                batch.events.update(outputs_of(self._retry("redis", "read stored events",
                                                           lambda: self.store.stored_events(conflicts), batch)))
                self._reload_needed = True
            for rid in write.demoted:  # its merges were done by another member a moment before
                batch.events[rid] = batch.alt_events[rid]
            self._reload_needed |= write.dropped_pieces > 0  # a split founded by a record erased meanwhile
        batch.stored = True
        self._written(batch, by_write=True)  # the batch script took it out of the in-flight hash
        self.replica.note_own(d.row for d in batch.decisions if d.outcome != "replay")
        self.replica.note_own_splits(p.founder_id for d in batch.decisions for p in d.splits)
        self.metrics.index_size.set(len(self.pipe.store))

    def _deliver(self, batch: Batch) -> None:
        assert self.producer is not None and self.dlq is not None
        producer, dlq, topic = self.producer, self.dlq, self.svc.events_topic
        outputs = batch.outputs()
        # How many of outputs + dead letters were enqueued: a produce() that raises (queue full, a broker
        # error) resumes from there, so no later message is skipped and offsets wait for all of them.
        sent = [0]

        def send() -> int:
            while sent[0] < len(outputs) + len(batch.dead):
                i = sent[0]
                if i < len(outputs):
                    out = outputs[i]
                    producer.produce(topic, out.value, out.key, [("dedup.event.type", out.event_type),
                                                                 ("dedup.event.id", out.event_id)])
                else:
                    dead = batch.dead[i - len(outputs)]
                    dlq.send(dead.message, dead.reason, dead.stage, dead.detail)
                sent[0] = i + 1
            try:
                return producer.flush_and_check(timeout=2.0)
            except DeliveryError as exc:
                if exc.failures:
                    sent[0] = 0  # failed ones are gone: send everything again (same ids)
                raise

        with self.metrics.time_stage("produce"):
            self._retry("kafka", "produce events", send, batch)
        batch.acked = True
        now = time.time()
        for msg, _rec in batch.good:
            ts_type, ts = msg.timestamp()
            if ts_type != 0:
                self.metrics.observe_end_to_end(ts, now)
        self.metrics.records.inc(len(batch.messages))
        for out in outputs:
            self.metrics.events.labels(type=out.event_type).inc()
        for dead in batch.dead:
            self.metrics.dead_letters.labels(reason=dead.reason).inc()
        self.metrics.batch_size.set(len(batch.messages))
