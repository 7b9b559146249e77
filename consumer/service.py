"""`dedup run`: the Kafka consumer loop around `Pipeline.process`, with at-least-once, idempotent effects.

Per micro-batch, in this order, and nothing of a later step before the earlier one succeeded:

1. poll up to `max_batch` records (waiting at most `max_wait_ms` for a batch to fill);
2. decode + validate; bad input -> dead-letter topic with the reason in headers;
3. `Pipeline.process` (same core as `dedup batch`); build events; replays get their *stored* events;
4. one atomic Redis script writes the new records' state, the merges and every record's event bytes;
5. produce events (key = cluster id) and dead letters, wait until the broker acknowledged all of them;
6. only then commit the batch's next offsets.

While batch i goes through steps 2-6, batch i+1 is already polled, decoded and *encoded* on a worker
thread (`Pipeline.encode_ahead`: the transformer, the largest cost, overlaps the rest). Its offsets are not
committed before its own step 6, so a crash or revoke just drops it and it is read again.

A crash anywhere re-reads the batch from the last commit: records already in Redis come back as replays and
re-send their stored events byte for byte (same event ids), records not in Redis are decided again from the
same restored state, hence identically. So Redis never sees a merge twice and subscribers see repeated events
only with repeated ids. While Redis or the broker is unreachable the batch is kept and retried (partitions
paused, the group session kept alive, liveness beating, readiness false with the reason); a revoked or lost
partition drops the unfinished batch without committing, and state not yet in Redis is reloaded from it.

Commits are asynchronous after each acknowledged batch (a synchronous commit blocks for up to the session
timeout when the broker is unreachable, which would starve the liveness beat); they are synchronous on
partition revoke and at shutdown. A failed asynchronous commit only means a later replay.

This module is longer than most (~450 lines) on purpose: the ordering rules above, the retry/abandon rules
and the rebalance callbacks that may interrupt them are one state machine, easier to check in one place.
What a batch means (decode, events, Redis write set) lives in `service_batch`, the clients in `io/`.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException

from consumer.artifacts import Artifacts, load_artifacts
from consumer.config import DEFAULT_HASH_KEY, ConfigError, Settings, key_id
from consumer.health import HealthServer, HealthState
from consumer.io.events import utc_iso
from consumer.io.group import TP, GroupMember
from consumer.io.kafka import (
    DeadLetterSink,
    DeliveryError,
    TrackedProducer,
    make_producer,
    normalize_properties,
    properties_from_env,
)
from consumer.logs import kafka_logger
from consumer.metrics import Metrics
from consumer.pipeline import Pipeline
from consumer.records import Record
from consumer.replica import Replica
from consumer.service_batch import Batch, assemble, outputs_of
from consumer.service_guard import (
    decide_guarded,
    encoded_or_none,
    fingerprint_key,
    set_aside,
    set_aside_id_conflicts,
)
from consumer.service_replica import ReplicaDuties
from consumer.service_sync import clusters_to_resolve, freshen
from consumer.snapshot import rss_bytes
from consumer.state import restore
from consumer.store.redis import AUTH_ERRORS as REDIS_AUTH_ERRORS
from consumer.store.redis import RETRYABLE as REDIS_ERRORS
from consumer.store.redis import RedisStateStore

__all__ = ["Service", "Abandoned", "DependencyRefused", "DEFAULT_KAFKA_PROPERTIES"]

log = logging.getLogger("dedup.service")
T = TypeVar("T")

#: Client defaults the service prefers (all overridable): reconnect within ~2 s after an outage instead of
#: librdkafka's backoff of up to 10 s; short fetch waits, because with the default 500 ms records reached
#: the consumer in ~250 ms chunks on tansu (end-to-end p50 at 500 records/s: 335 ms -> 130-165 ms with 10 ms,
#: loadtest/bench_service.py). The cost is more fetch requests while idle.
DEFAULT_KAFKA_PROPERTIES = {"reconnect.backoff.ms": "100", "reconnect.backoff.max.ms": "2000",
                            "fetch.wait.max.ms": "10"}
_KAFKA_DOWN = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT}
#: Consumer-only properties, kept away from the producer (which would warn about each on every start).
_CONSUMER_ONLY = ("session.timeout.ms", "heartbeat.interval.ms", "max.poll.interval.ms", "auto.offset.reset",
                  "isolation.level", "partition.assignment.strategy", "group.", "fetch.", "enable.auto.",
                  "auto.commit.", "queued.", "check.crcs", "enable.partition.eof")
def _freeze_survivors(thaw: bool = False) -> None:
    """Collect this batch's cyclic garbage, then move what survived (the growing cluster state) out of
    the collector's reach. Why: CPython's full collections rescan every tracked object; with ~35k records
    of state one took 140-150 ms, a whole batch's latency budget, several times a minute. After a freeze
    a full collection sees only objects newer than the last batch (measured 0.02-3 ms). `thaw` first
    (after a state reload) so the replaced state can still be collected."""
    if thaw:
        gc.unfreeze()
    gc.collect()
    gc.freeze()


class Abandoned(Exception):
    """The in-flight batch must be dropped uncommitted (partitions revoked/lost, or shutdown grace over)."""


class DependencyRefused(Exception):
    """A dependency answered but refused us (a wrong Redis password or user): retrying cannot help."""


class _NeedsReload(Exception):
    """The in-memory state knows a record that Redis does not: rebuild it from Redis and decide again."""


class Service(ReplicaDuties):
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
        self.http = HealthServer(self.health, self.metrics.registry, self.svc.http_host, self.svc.http_port,
                                 routes=[self._api_routes()] if self.svc.api else [])
        self._text_encoder = text_encoder
        self._artifacts: Artifacts | None = None
        self._fp_key = fingerprint_key(settings.encoders.hash_key)
        self.pipe: Pipeline | None = None
        #: Where this member is in the changelog of the whole group's writes (consumer/replica.py).
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

    def _api_routes(self) -> Any:
        """The /v1 API on the health port: pairs are scored with this service's current pipeline and its
        term frequencies (the population it has seen), clusters read from its Redis (docs/api.md)."""
        from consumer.api import ApiContext, api_routes
        from consumer.metrics import ApiMetrics

        return api_routes(ApiContext(self.settings, lambda: self.pipe,
                                     lambda: self.pipe.frequencies if self.pipe is not None else None,
                                     known=lambda: self.pipe.store.row_of if self.pipe is not None else (),
                                     store=self.store, metrics=ApiMetrics(self.metrics.registry)))

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
                nxt = self._prefetch(Batch(msgs)) if msgs else None
                current, self._pending = self._pending, nxt
                if current is not None and not current.abandoned:
                    self._handle(current)
                elif nxt is None:
                    self._idle_checks()
            last, self._pending = self._pending, None
            if last is not None and not last.abandoned and time.monotonic() < self._stop_deadline:
                self._handle(last)  # polled before the stop: finish it rather than re-read it

    def _prefetch(self, batch: Batch) -> Batch:
        """Decode a polled batch and start encoding its good records on the worker thread."""
        with self.metrics.time_stage("decode"):
            batch.decode(self.settings)
        if batch.good and self.pipe is not None:
            batch.encoded = self.pipe.encode_in_worker([r for _, r in batch.good])
        return batch

    def _shutdown(self) -> None:
        if self._stop and self._inflight is None and self._pending is None:
            self._maybe_snapshot(force=True)  # a clean stop: the next start needs only the tail
        if self.member is not None:
            self.member.close()
        if self.producer is not None:
            self.producer.producer.flush(5)
        self.store.close()
        if self.pipe is not None:
            self.pipe.close()
        self.health.set_assigned(False)
        self.http.stop()
        log.info("stopped")

    # -- state ------------------------------------------------------------------------------------------
    def _new_pipeline(self) -> Pipeline:
        """A fresh pipeline around the artifacts loaded once (the first time), so a state reload never
        reloads the transformer or unpickles the model again."""
        if self._artifacts is None:
            self._artifacts = load_artifacts(self.settings, text_encoder=self._text_encoder,
                                             encode_in_background=True)
        a = self._artifacts
        return Pipeline(self.settings, a.text_encoder, a.model, encode_in_background=True,
                        image_encoder=a.image_encoder)

    def _load_state(self) -> None:
        """Restore the pipeline from Redis (retrying until Redis answers); readiness waits for it."""
        self.health.set_index_loaded(False)
        pipe = self._new_pipeline()
        t0 = time.perf_counter()
        # The log position first: whatever is written during the scan is in the scan and/or the tail,
        # and the tail skips records already held.
        position = self._retry("redis", "read log position", self.store.log_length)
        snap = self._load_snapshot(pipe, position)
        if snap is None and len(pipe.store):  # a snapshot half loaded, then refused: start clean
            pipe.close(wait=False)
            pipe = self._new_pipeline()
        if snap is not None:
            source, position = "snapshot", snap.position
        else:
            source = "redis"
            restore(pipe, self._retry("redis", "load state", self.store.load_states))
        self.replica = Replica(position)
        #: Where the last state load came from: "snapshot" (+ changelog tail) or "redis" (a full rebuild).
        self.state_source = source
        self.metrics.declare_stages(pipe.batch_stages)
        old, self.pipe = self.pipe, pipe
        if old is not None:
            old.close(wait=False)  # its threads end after any in-flight work instead of idling forever
        meta = self._retry("redis", "read meta", self.store.get_meta)
        if meta.get("config_version") not in (None, pipe.config_version):
            log.warning("stored state was written with another config",
                        extra={"stored": meta.get("config_version"), "current": pipe.config_version})
        kid = key_id(self.settings.encoders.hash_key)
        if meta.get("key_id") not in (None, kid):  # new hashes would never match the stored ones
            log.error("stored state was written with another hash_key: re-encode it (docs/security.md)",
                      extra={"stored": meta.get("key_id"), "current": kid})
        self._retry("redis", "write meta", lambda: self.store.set_meta(
            {"model_version": pipe.model_version, "config_version": pipe.config_version, "key_id": kid}))
        self._reload_needed = self._check_count = False
        self._sync()  # the changelog tail since the snapshot (or the scan): ready only once it is applied
        pipe.blocker.settle()  # and the index holds all of it (inserts run on a background thread)
        self.metrics.index_size.set(len(pipe.store))
        _freeze_survivors(thaw=True)  # the replaced pipeline, if any, is garbage now: collect it first
        took = time.perf_counter() - t0
        self.metrics.startup_seconds.set(took)
        self._next_snapshot = time.monotonic() + self.svc.snapshot_interval_seconds
        self.health.set_index_loaded(True)
        log.info("state loaded", extra={"records": len(pipe.store), "clusters": len(pipe.clusters.members),
                                        "source": source, "seconds": round(took, 3),
                                        "rss_mb": round(rss_bytes() / 2**20)})

    def _maybe_reload(self) -> None:
        """Reload when this member's state diverged from Redis (a dropped batch, another member's writes)."""
        try:
            if not self._reload_needed:
                self._check_count = False
                self._sync()  # another member may have written records meanwhile: the log has them
                return
            self._load_state()
        finally:
            if self.member is not None:
                self.member.resume()  # a retry above paused the partitions while Redis was away

    # -- kafka ------------------------------------------------------------------------------------------
    def _connect_kafka(self) -> None:
        props = self.kafka_properties
        producer_props = {k: v for k, v in props.items() if not k.startswith(_CONSUMER_ONLY)}
        self.producer = TrackedProducer(make_producer(self.svc.kafka, error_cb=self._on_error,
                                                      extra=producer_props, environ={}))
        self.dlq = DeadLetterSink(self.producer, self.svc.dlq_topic)
        self.member = GroupMember(self.svc.kafka, self.svc.group, list(self.svc.input_topics), properties=props,
                                  on_assigned=self._on_assigned, on_gone=self._on_gone,
                                  error_cb=self._on_error, warn=self._warn)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            log.error("fatal kafka error, stopping", extra={"error": err.str()})
            self.stop()
        if err.code() in _KAFKA_DOWN:
            self._set_dep("kafka", False, err.name())
            self._warn("kafka", "kafka unreachable", error=err.name())

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
            self._sync(batch)  # decide with everything the other members wrote so far
            self._decide(batch)
            self._store(batch)
            self._deliver(batch)
            assert self.member is not None
            self.member.mark_done(msgs)
            self.member.commit_done(sync=False)
            _freeze_survivors()
            self._maybe_snapshot()
            self._update_lag()
            log.debug("batch done", extra={"messages": len(msgs), "dead": len(batch.dead), "replays":
                                           len(batch.replay_ids), "first_offset": msgs[0].offset(),
                                           "ms": round((time.perf_counter() - t0) * 1000, 1)})
        except Abandoned as exc:
            log.warning("batch dropped uncommitted", extra={"messages": len(msgs), "why": str(exc),
                                                            "stored": batch.stored})
        finally:
            self._inflight = None
            if self.member is not None:
                self.member.resume()

    def _decide(self, batch: Batch) -> None:
        if not batch.decoded:
            with self.metrics.time_stage("decode"):
                batch.decode(self.settings)
        for attempt in range(3):
            try:
                self._decide_once(batch)
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
        fresh = [d for d in batch.decisions if d.outcome != "replay"]
        ids = clusters_to_resolve(fresh)
        if ids:  # name clusters as Redis knows them now (another member may have merged them meanwhile)
            where = self._retry("redis", "resolve clusters", lambda: self.store.resolve_clusters(ids), batch)
            if freshen(fresh, where):
                log.debug("decisions renamed to current clusters")
        assemble(batch, pipe, time.time())
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
        write = batch.write
        with self.metrics.time_stage("redis"):
            _n, conflicts = self._retry("redis", "write batch",
                                        lambda: self.store.write_batch(write, utc_iso(time.time())), batch)
            if conflicts:  # another member (or a dropped batch) got there first: its outcome stands
                log.warning("records already stored by another batch", extra={"records": len(conflicts)})
                batch.events.update(outputs_of(self._retry("redis", "read stored events",
                                                           lambda: self.store.stored_events(conflicts), batch)))
                self._reload_needed = True
            for rid in write.demoted:  # its merges were done by another member a moment before
                batch.events[rid] = batch.alt_events[rid]
        batch.stored = True
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

    # -- waiting ------------------------------------------------------------------------------------------
    def _retry(self, dep: str, what: str, fn: Callable[[], T], batch: Batch | None = None) -> T:
        """Call `fn` until it succeeds: dependency down -> readiness false; keep beating and polling."""
        delay, failing_since = 0.1, 0.0
        errors = (*REDIS_ERRORS,) if dep == "redis" else (DeliveryError, KafkaException, BufferError)
        while True:
            try:
                result = fn()
            except errors as exc:
                if isinstance(exc, REDIS_AUTH_ERRORS):  # a wrong password stays wrong: say so, do not retry
                    self._set_dep(dep, False, "authentication failed")
                    raise DependencyRefused(f"redis: {type(exc).__name__} (check the password/user in the "
                                            "redis URL or ACL)") from None
                failing_since = failing_since or time.monotonic()
                self._set_dep(dep, False, type(exc).__name__)
                self._warn(f"{dep}:{what}", f"{what} failed, retrying", error=type(exc).__name__)
            else:
                self._set_dep(dep, True)
                if failing_since:
                    took = round(time.monotonic() - failing_since, 1)
                    log.info(f"{what} recovered", extra={"seconds": took})
                return result
            if batch is not None and batch.abandoned:
                raise Abandoned("partitions revoked or lost")
            if self._stop and (batch is None or time.monotonic() > self._stop_deadline):
                raise Abandoned("stopping" if batch is None else "shutdown grace period over")
            self._wait(delay)
            delay = min(delay * 2, 2.0)

    def _wait(self, seconds: float) -> None:
        if self.member is None:
            self.health.beat()
            time.sleep(seconds)
        else:
            self.member.idle(seconds, self.health.beat)

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now >= self._next_lag and self.member is not None:
            self._next_lag = now + 1.0
            try:
                self.metrics.set_lag(self.member.lag())
            except KafkaException:
                pass

    def _idle_checks(self) -> None:
        self._update_lag()
        try:
            self._sync()  # keep the replica current while idle (the consistency window stays short)
        except Abandoned:
            pass
        finally:
            if self.member is not None:
                self.member.resume()  # a retry above paused the partitions while Redis was away
        now = time.monotonic()
        if now < self._next_idle_check:
            return
        self._next_idle_check = now + 2.0
        try:
            self.store.ping()
            self._set_dep("redis", True)
        except REDIS_ERRORS as exc:
            self._set_dep("redis", False, type(exc).__name__)
        if self.member is not None and not self._kafka_ok and self.member.probe():
            self._set_dep("kafka", True)

    def _set_dep(self, name: str, ok: bool, detail: str = "") -> None:
        if name == "kafka":
            self._kafka_ok = ok
        self.health.set_dependency(name, ok, detail)

    def _warn(self, kind: str, msg: str, **extra: Any) -> None:
        """At most one warning per kind every 5 s (outages report many errors per second)."""
        now = time.monotonic()
        if now - self._last_warn.get(kind, 0.0) >= 5.0:
            self._last_warn[kind] = now
            log.warning(msg, extra=extra)
