"""Thin confluent-kafka adapters: client configs, consumer/producer factories, delivery tracking, DLQ.

Why this module exists: the at-least-once contract of `dedup run` lives in a handful of client settings
(manual commits, manual offset store, idempotent acks=all producer, read_committed) and in one rule: offsets
are committed only after every message produced for the batch (events and dead letters) has been
acknowledged by the broker. Keeping those settings in one place means a settings file or an environment
variable can add security options but can never switch the safety settings off.

Security and other client properties come from a settings mapping (keys like `security.protocol`, or
`security_protocol` from a TOML table) and from `DEDUP_KAFKA_<PROPERTY_WITH_UNDERSCORES>` environment
variables (`DEDUP_KAFKA_SASL_PASSWORD` -> `sasl.password`); the environment wins over the mapping.

Why this module is long (~430 lines): the safety settings, the factories that apply them and the delivery
tracking that enforces the commit rule must be read together to check the at-least-once contract; split,
a reader would have to reassemble them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

__all__ = [
    "ENV_PREFIX", "DLQ_SUFFIX", "DEFAULT_ASSIGNMENT_STRATEGY", "HEADER_REASON", "HEADER_STAGE",
    "HEADER_DETAIL", "HEADER_SOURCE_TOPIC", "HEADER_SOURCE_PARTITION", "HEADER_SOURCE_OFFSET",
    "HEADER_SOURCE_TIMESTAMP", "HEADER_TRUNCATED",
    "DeliveryError", "DeliveryFailure", "TrackedProducer", "DeadLetterSink", "properties_from_env",
    "normalize_properties", "kafka_config", "consumer_config", "producer_config", "redacted", "make_consumer",
    "make_producer", "dlq_topic", "dead_letter_headers", "offsets_to_commit", "consumer_lag",
]

ENV_PREFIX = "DEDUP_KAFKA_"
DLQ_SUFFIX = ".dlq"
#: Cooperative-sticky (incremental) rebalancing: adding or removing a member moves only the partitions
#: that must move; the others keep being consumed through the rebalance (no stop-the-world). The callbacks
#: receive only the partitions added or taken away (`GroupMember` keeps the union), and a revoked
#: partition's done offsets are committed synchronously before it is given up. Every member holds the whole
#: state (consumer/service/changelog.py), so a moved partition needs no state hand-over. "range" (eager) still works.
DEFAULT_ASSIGNMENT_STRATEGY = "cooperative-sticky"

HEADER_REASON = "dedup.error.reason"
HEADER_STAGE = "dedup.error.stage"
#: Optional human-readable detail (which field, which limit); like the reason, never a field value.
HEADER_DETAIL = "dedup.error.detail"
HEADER_SOURCE_TOPIC = "dedup.source.topic"
HEADER_SOURCE_PARTITION = "dedup.source.partition"
HEADER_SOURCE_OFFSET = "dedup.source.offset"
HEADER_SOURCE_TIMESTAMP = "dedup.source.timestamp"
#: Set on a dead letter sent without the original value (and maybe headers) because the original was over
#: the producer's message.max.bytes: says what was left out and how large the value was.
HEADER_TRUNCATED = "dedup.error.truncated"
_DLQ_HEADERS = frozenset({HEADER_REASON, HEADER_STAGE, HEADER_DETAIL, HEADER_SOURCE_TOPIC,
                          HEADER_SOURCE_PARTITION, HEADER_SOURCE_OFFSET, HEADER_SOURCE_TIMESTAMP,
                          HEADER_TRUNCATED})
_MAX_REASON_CHARS = 200

#: Properties whose values must never reach a log line.
_SECRET_MARKERS = ("password", "secret", "key.pem", "token", "jaas")

#: Consumer settings the at-least-once contract depends on; applied last, so nothing can override them.
_CONSUMER_FORCED = {"enable.auto.commit": "false", "enable.auto.offset.store": "false"}
#: Consumer defaults a settings mapping may change (e.g. auto.offset.reset=latest for a fresh group).
_CONSUMER_DEFAULTS = {"auto.offset.reset": "earliest", "isolation.level": "read_committed"}
#: Producer settings that make retries duplicate-free and acknowledgements durable.
_PRODUCER_FORCED = {"enable.idempotence": "true", "acks": "all"}

_UNDERSCORE_NAMES = frozenset({"log_level", "on_delivery", "on_commit", "logger"})
Callback = Callable[[Consumer, list[TopicPartition]], None]


def normalize_properties(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """Map `security_protocol`-style keys (TOML, env) to librdkafka names; scalar values to strings.

    Keys that already contain a dot are kept; otherwise `_` becomes `.`, except the few real names with
    underscores (log_level, *_cb). Callables/objects (error_cb, logger) pass through; None values are dropped
    so an unset optional field does not become the string "None".
    """
    out: dict[str, Any] = {}
    for key, value in (settings or {}).items():
        if value is None:
            continue
        name = key.strip().lower()
        if "." not in name and name not in _UNDERSCORE_NAMES and not name.endswith("_cb"):
            name = name.replace("_", ".")
        if isinstance(value, bool):
            value = str(value).lower()
        out[name] = str(value) if isinstance(value, str | int | float) else value
    return out


def properties_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Client properties from `DEDUP_KAFKA_*` variables: DEDUP_KAFKA_SSL_CA_LOCATION -> ssl.ca.location."""
    env = os.environ if environ is None else environ
    n = len(ENV_PREFIX)
    return normalize_properties({k[n:]: v for k, v in env.items() if k.startswith(ENV_PREFIX) and len(k) > n})


def kafka_config(
    bootstrap: str,
    group: str | None = None,
    extra: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Base client config: bootstrap (+ group) <- settings mapping <- DEDUP_KAFKA_* environment.

    Pure apart from reading the environment (pass `environ` to make it pure). Role-specific safety
    settings are added by `make_consumer`/`make_producer`, after this merge.
    """
    config: dict[str, Any] = {"bootstrap.servers": bootstrap}
    if group is not None:
        config["group.id"] = group
    config.update(normalize_properties(extra))
    config.update(properties_from_env(environ))
    return config


def redacted(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy safe to log: secret-looking values replaced, callables shown by name."""
    def show(key: str, value: Any) -> Any:
        if any(marker in key for marker in _SECRET_MARKERS):
            return "***"
        return getattr(value, "__name__", type(value).__name__) if callable(value) else value

    return {key: show(key, value) for key, value in config.items()}


def consumer_config(
    bootstrap: str,
    group: str,
    *,
    assignment_strategy: str | None = None,
    extra: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Consumer properties: defaults <- settings/env <- strategy <- forced no-auto-commit settings (pure).

    The strategy comes from the argument, else `partition.assignment.strategy` in the settings, else
    DEFAULT_ASSIGNMENT_STRATEGY.
    """
    config: dict[str, Any] = {**_CONSUMER_DEFAULTS, **kafka_config(bootstrap, group, extra, environ=environ)}
    config["partition.assignment.strategy"] = (
        assignment_strategy or config.get("partition.assignment.strategy") or DEFAULT_ASSIGNMENT_STRATEGY
    )
    config.update(_CONSUMER_FORCED)
    return config


def make_consumer(
    bootstrap: str,
    group: str,
    topics: Sequence[str] | None = None,
    *,
    on_assign: Callback | None = None,
    on_revoke: Callback | None = None,
    on_lost: Callback | None = None,
    assignment_strategy: str | None = None,
    error_cb: Callable[[KafkaError], None] | None = None,
    extra: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Consumer:
    """A consumer that never commits or stores offsets by itself; subscribes when `topics` is given.

    on_lost fires when the session expired (e.g. the broker was unreachable longer than
    session.timeout.ms): the partitions may already belong to another member, so the callback must drop
    in-flight work without committing. error_cb sees every transport error (many per second during an
    outage): use it to flip a readiness flag, not to log each call.
    """
    config = consumer_config(bootstrap, group, assignment_strategy=assignment_strategy, extra=extra,
                             environ=environ)
    if error_cb is not None:
        config["error_cb"] = error_cb
    consumer = Consumer(config)
    if topics:
        callbacks = {"on_assign": on_assign, "on_revoke": on_revoke, "on_lost": on_lost}
        consumer.subscribe(list(topics), **{k: v for k, v in callbacks.items() if v is not None})
    return consumer


def producer_config(
    bootstrap: str,
    *,
    linger_ms: int = 5,
    transactional_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Producer properties: linger <- settings/env <- forced idempotence + acks=all (pure)."""
    config: dict[str, Any] = {"linger.ms": str(linger_ms)}
    config.update(kafka_config(bootstrap, None, extra, environ=environ))
    config.update(_PRODUCER_FORCED)
    if transactional_id is not None:
        config["transactional.id"] = transactional_id
    return config


def make_producer(
    bootstrap: str,
    *,
    linger_ms: int = 5,
    transactional_id: str | None = None,
    error_cb: Callable[[KafkaError], None] | None = None,
    extra: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Producer:
    """An idempotent acks=all producer: broker retries cannot duplicate or reorder events per partition.

    linger.ms stays small because micro-batches are flushed at the end of each batch anyway; a long linger
    would only add latency. message.timeout.ms keeps librdkafka's default (5 min), so a broker outage
    shorter than that delays deliveries instead of failing them.
    """
    config = producer_config(bootstrap, linger_ms=linger_ms, transactional_id=transactional_id, extra=extra,
                             environ=environ)
    if error_cb is not None:
        config["error_cb"] = error_cb
    return Producer(config)


@dataclass(frozen=True)
class DeliveryFailure:
    """One message the broker did not acknowledge; carries no payload so it is safe to log."""

    topic: str
    partition: int | None
    code: int
    reason: str
    retriable: bool
    fatal: bool


class DeliveryError(RuntimeError):
    """Some produced messages were not acknowledged: the caller must not commit the batch's offsets."""

    def __init__(self, failures: Sequence[DeliveryFailure], pending: int) -> None:
        self.failures = list(failures)
        self.pending = pending
        first = self.failures[0].reason if self.failures else "timed out"
        super().__init__(f"{len(self.failures)} delivery failure(s), {pending} unacked, first: {first}")


class TrackedProducer:
    """Wraps a Producer and counts every message until its delivery report arrives.

    Why: `flush()` returning 0 only says the queue is empty, not that every message succeeded; a failed
    delivery shows up only in its report. The service calls `flush_and_check()` before committing offsets,
    so a failure (or a timeout) leaves the offsets uncommitted and the batch is re-read after a restart.
    One instance per producer; delivery callbacks run in whichever thread polls/flushes.
    """

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self._lock = threading.Lock()
        self._pending = 0
        self._acked = 0
        self._failures: list[DeliveryFailure] = []

    @property
    def pending(self) -> int:
        """Messages produced but not yet reported."""
        with self._lock:
            return self._pending

    def _report(self, err: KafkaError | None, msg: Message) -> None:
        with self._lock:
            self._pending -= 1
            if err is None:
                self._acked += 1
            else:
                self._failures.append(DeliveryFailure(
                    topic=msg.topic() or "", partition=msg.partition(), code=err.code(), reason=err.str(),
                    retriable=err.retriable(), fatal=err.fatal(),
                ))

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | str | None = None,
        headers: Sequence[tuple[str, bytes | str | None]] | None = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        queue_timeout: float = 30.0,
    ) -> None:
        """Enqueue one message; when librdkafka's local queue is full, serve reports and retry (bounded)."""
        optional = {"headers": list(headers) if headers else None, "partition": partition,
                    "timestamp": timestamp_ms}
        kwargs = {"value": value, "key": key, "on_delivery": self._report,
                  **{k: v for k, v in optional.items() if v is not None}}
        deadline = time.monotonic() + queue_timeout
        while True:
            try:
                self.producer.produce(topic, **kwargs)
                break
            except BufferError:
                if time.monotonic() >= deadline:
                    raise
                self.producer.poll(0.1)  # serves reports of earlier messages, never of this one
        with self._lock:  # counted after enqueueing: its report can only run in a later poll/flush
            self._pending += 1

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery reports without blocking the poll loop for long."""
        return self.producer.poll(timeout)

    def flush_and_check(self, timeout: float = 30.0) -> int:
        """Wait for every report; return how many were acknowledged since the last check.

        Raises DeliveryError when a delivery failed or reports are still missing at the deadline; the
        failure list is reset either way so the next batch starts clean (the caller re-reads from the last
        committed offset, which re-produces what failed).
        """
        self.producer.flush(timeout)
        with self._lock:
            failures, self._failures = self._failures, []
            acked, self._acked = self._acked, 0
            pending = self._pending
        if failures or pending:
            raise DeliveryError(failures, pending)
        return acked


def dlq_topic(source_topic: str, override: str | None = None, suffix: str = DLQ_SUFFIX) -> str:
    """`<topic>.dlq` unless a single dead-letter topic is configured."""
    return override or f"{source_topic}{suffix}"


def dead_letter_headers(
    topic: str, partition: int, offset: int, timestamp_ms: int | None, reason: str, stage: str
) -> list[tuple[str, bytes]]:
    """The `dedup.*` headers of a dead letter: why it failed and where the original lives.

    `reason` must be a short code (e.g. `invalid_json`, `missing_field:email`), never a field value: it is
    truncated so an accidental message dump cannot grow without bound.
    """
    return [
        (HEADER_REASON, reason[:_MAX_REASON_CHARS].encode("utf-8", "replace")),
        (HEADER_STAGE, stage.encode()),
        (HEADER_SOURCE_TOPIC, topic.encode()),
        (HEADER_SOURCE_PARTITION, str(partition).encode()),
        (HEADER_SOURCE_OFFSET, str(offset).encode()),
        (HEADER_SOURCE_TIMESTAMP, b"" if timestamp_ms is None else str(timestamp_ms).encode()),
    ]


class DeadLetterSink:
    """Sends a bad input message, byte for byte, to its dead-letter topic with the reason in headers.

    The original key, value and headers are kept unchanged (re-processing after a fix is a plain re-produce),
    and the key keeps dead letters of one entity in one partition. Shares the TrackedProducer with the
    event output so one `flush_and_check()` covers both before offsets are committed.
    """

    def __init__(self, producer: TrackedProducer, topic: str | None = None, suffix: str = DLQ_SUFFIX) -> None:
        self.producer = producer
        self.topic = topic
        self.suffix = suffix

    def topic_for(self, source_topic: str) -> str:
        """Where dead letters from `source_topic` go."""
        return dlq_topic(source_topic, self.topic, self.suffix)

    def send(self, message: Message, reason: str, stage: str, detail: str | None = None) -> None:
        """Produce the original bytes of `message` to its DLQ (asynchronous; check with flush_and_check).

        `detail` (optional) says which field or limit, never a value; truncated like the reason."""
        topic = message.topic() or ""
        ts_type, ts = message.timestamp()
        timestamp_ms = ts if ts_type != 0 and ts >= 0 else None  # 0 == TIMESTAMP_NOT_AVAILABLE
        # A replayed dead letter that fails again gets fresh dedup.* headers, not a second set.
        headers: list[tuple[str, bytes | str | None]] = [
            (k, v) for k, v in (message.headers() or []) if k not in _DLQ_HEADERS
        ]
        headers += dead_letter_headers(topic, message.partition() or 0, message.offset() or 0,
                                       timestamp_ms, reason, stage)
        if detail:
            headers.append((HEADER_DETAIL, detail[:_MAX_REASON_CHARS].encode("utf-8", "replace")))
        dlq = self.topic_for(topic)
        try:
            self.producer.produce(dlq, message.value(), message.key(), headers)
            return
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE:
                raise
        # Too large for the producer: a dead letter without the value still says which offset failed and
        # why (the original stays in the source topic for its retention); without the original headers
        # and key too if those alone are over the limit. Never dropped silently.
        size = str(len(message.value() or b"")).encode()
        ours = [h for h in headers if h[0] in _DLQ_HEADERS]
        try:
            self.producer.produce(dlq, None, message.key(), [*headers, (HEADER_TRUNCATED, b"value:" + size)])
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE:
                raise
            self.producer.produce(dlq, None, None, [*ours, (HEADER_TRUNCATED, b"value,key,headers:" + size)])

    def flush_and_check(self, timeout: float = 30.0) -> int:
        """Block until every dead letter (and event sharing the producer) is acknowledged; raise otherwise."""
        return self.producer.flush_and_check(timeout)


def offsets_to_commit(messages: Iterable[Message]) -> list[TopicPartition]:
    """Next offset (last + 1) per partition: what to commit after the batch is fully acknowledged."""
    nxt: dict[tuple[str, int], int] = {}
    for msg in messages:
        key = (msg.topic() or "", msg.partition() or 0)
        offset = (msg.offset() or 0) + 1
        if offset > nxt.get(key, -1):
            nxt[key] = offset
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in sorted(nxt.items())]


def consumer_lag(consumer: Consumer) -> dict[tuple[str, int], int]:
    """Lag per assigned partition from cached watermarks (no broker round trip; -1 = unknown yet).

    Uses the high watermark of the last fetch response. Do not replace it with a ListOffsets query
    (`cached=False`): tansu answers that with the base offset of the last batch + 1, undercounting.
    """
    lag: dict[tuple[str, int], int] = {}
    assignment = consumer.assignment()
    if not assignment:
        return lag
    for tp in consumer.position(assignment):
        _low, high = consumer.get_watermark_offsets(tp, cached=True)
        key = (tp.topic, tp.partition)
        lag[key] = max(high - tp.offset, 0) if high >= 0 and tp.offset >= 0 else -1
    return lag
