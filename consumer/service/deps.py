"""The service's dependencies, apart from the batch state machine in `consumer.service.runner`: connecting to
Kafka, retrying while Redis or the broker is unreachable (readiness false with the reason, liveness still
beating, the group session kept alive), and the probes and lag updates made while idle.

A mixin of `Service` (it uses the service's health, metrics, store and group member), kept in its own
module so `consumer.service.runner` reads as the ordering rules of a batch. `Abandoned` and `DependencyRefused`
are raised here and re-exported by `consumer.service.runner`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException

from consumer.api.health import HealthState
from consumer.config import ServiceSettings
from consumer.io.group import TP, GroupMember
from consumer.io.kafka import DeadLetterSink, DeliveryError, TrackedProducer, make_producer
from consumer.io.milvus_shared import milvus_errors
from consumer.service.batch import Batch
from consumer.store.redis import AUTH_ERRORS as REDIS_AUTH_ERRORS
from consumer.store.redis import RETRYABLE as REDIS_ERRORS
from consumer.store.redis import RedisStateStore
from consumer.telemetry.metrics import Metrics

__all__ = ["Abandoned", "DependencyRefused", "DependencyWaits", "DEFAULT_KAFKA_PROPERTIES"]

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


class Abandoned(Exception):
    """The in-flight batch must be dropped uncommitted (partitions revoked/lost, or shutdown grace over)."""


class DependencyRefused(Exception):
    """A dependency answered but refused us (a wrong Redis password or user): retrying cannot help."""


class DependencyWaits:
    """Mixed into `Service`; the attributes below are the service's."""

    svc: ServiceSettings
    health: HealthState
    metrics: Metrics
    store: RedisStateStore
    kafka_properties: Mapping[str, Any]
    member: GroupMember | None
    producer: TrackedProducer | None
    dlq: DeadLetterSink | None
    _stop: bool
    _stop_deadline: float
    _next_idle_check: float
    _next_lag: float
    _last_warn: dict[str, float]
    _kafka_ok: bool
    _on_assigned: Callable[[set[TP]], None]
    _on_gone: Callable[[set[TP], bool], None]
    _sync: Callable[..., None]
    stop: Callable[[], None]

    # -- kafka ------------------------------------------------------------------------------------------
    def _connect_kafka(self) -> None:
        props = self.kafka_properties
        producer_props = {k: v for k, v in props.items() if not k.startswith(_CONSUMER_ONLY)}
        self.producer = TrackedProducer(make_producer(self.svc.kafka, error_cb=self._on_error,
                                                      extra=producer_props, environ={}))
        self.dlq = DeadLetterSink(self.producer, self.svc.dlq_topic)
        topics = [*self.svc.input_topics, *([self.svc.erasure_topic] if self.svc.erasure_topic else [])]
        self.member = GroupMember(self.svc.kafka, self.svc.group, topics, properties=props,
                                  on_assigned=self._on_assigned, on_gone=self._on_gone,
                                  error_cb=self._on_error, warn=self._warn)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            log.error("fatal kafka error, stopping", extra={"error": err.str()})
            self.stop()
        if err.code() in _KAFKA_DOWN:
            self._set_dep("kafka", False, err.name())
            self._warn("kafka", "kafka unreachable", error=err.name())
    # -- waiting ------------------------------------------------------------------------------------------
    def _retry(self, dep: str, what: str, fn: Callable[[], T], batch: Batch | None = None) -> T:
        """Call `fn` until it succeeds: dependency down -> readiness false; keep beating and polling."""
        delay, failing_since = 0.1, 0.0
        errors = ((*REDIS_ERRORS,) if dep == "redis" else milvus_errors() if dep == "milvus"
                  else (DeliveryError, KafkaException, BufferError))
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
