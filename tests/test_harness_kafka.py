"""The Kafka harness and `consumer.io.kafka` against a real Kafka-protocol broker (tansu or $KAFKA_BOOTSTRAP).

Why these tests: the service's at-least-once guarantee rests on commits, delivery reports and DLQ bytes
behaving as on a real broker, and on the harness being able to cut the broker off and bring it back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from harness.kafka import (
    FAST_GROUP_CONFIG,
    TansuProxy,
    client_config,
    consume_all,
    create_topics,
    produce_json,
    unique_topic,
)

from consumer.io.kafka import (
    HEADER_REASON,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TIMESTAMP,
    HEADER_SOURCE_TOPIC,
    HEADER_STAGE,
    DeadLetterSink,
    DeliveryError,
    TrackedProducer,
    consumer_config,
    consumer_lag,
    dead_letter_headers,
    kafka_config,
    make_consumer,
    make_producer,
    offsets_to_commit,
    producer_config,
    redacted,
)

# Reconnect within ~1 s after an outage instead of librdkafka's default backoff of up to 10 s; client logs go
# to `logging` (shown by pytest on failure) instead of raw stderr.
FAST_RECONNECT = {"reconnect.backoff.ms": "100", "reconnect.backoff.max.ms": "1000",
                  "logger": logging.getLogger("test.rdkafka")}


# ------------------------------------------------------------------------------------ pure (no broker)
def test_kafka_config_merges_settings_then_env() -> None:
    env = {"DEDUP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "DEDUP_KAFKA_SASL_PASSWORD": "s3cret",
           "DEDUP_KAFKA_SSL_CA_LOCATION": "/etc/ca.pem", "OTHER": "x"}
    settings = {"sasl_mechanism": "SCRAM-SHA-512", "sasl.username": "svc", "security.protocol": "SSL",
                "ssl.key.location": None}
    config = kafka_config("b:9092", "g", settings, environ=env)
    assert config == {
        "bootstrap.servers": "b:9092", "group.id": "g", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc", "security.protocol": "SASL_SSL", "sasl.password": "s3cret",
        "ssl.ca.location": "/etc/ca.pem",
    }
    assert redacted(config)["sasl.password"] == "***"
    # Real librdkafka names with underscores and Python callbacks survive the `_` -> `.` mapping.
    odd = kafka_config("b", extra={"log_level": 2, "error_cb": print}, environ={"DEDUP_KAFKA_LOG_LEVEL": "3"})
    assert odd["log_level"] == "3" and odd["error_cb"] is print and "log.level" not in odd


def test_safety_settings_cannot_be_overridden() -> None:
    evil = {"enable.auto.commit": "true", "enable_auto_offset_store": True, "acks": "1",
            "enable.idempotence": False, "auto.offset.reset": "latest"}
    c = consumer_config("b:9092", "g", extra=evil, environ={})
    assert c["enable.auto.commit"] == "false" and c["enable.auto.offset.store"] == "false"
    assert c["isolation.level"] == "read_committed" and c["auto.offset.reset"] == "latest"
    assert c["partition.assignment.strategy"] == "cooperative-sticky"  # incremental rebalances (issue 12)
    assert consumer_config("b", "g", extra={"partition.assignment.strategy": "range"},
                           environ={})["partition.assignment.strategy"] == "range"
    p = producer_config("b:9092", extra=evil, environ={"DEDUP_KAFKA_ACKS": "0"})
    assert p["acks"] == "all" and p["enable.idempotence"] == "true" and p["linger.ms"] == "5"


def test_offsets_and_headers_are_pure() -> None:
    msgs = [Message(topic="a", partition=p, offset=o) for p, o in [(0, 5), (1, 2), (0, 7), (0, 6)]]
    committed = [(tp.topic, tp.partition, tp.offset) for tp in offsets_to_commit(msgs)]
    assert committed == [("a", 0, 8), ("a", 1, 3)]
    headers = dict(dead_letter_headers("in", 2, 41, None, "x" * 1000, "decode"))
    assert headers[HEADER_SOURCE_OFFSET] == b"41" and headers[HEADER_SOURCE_TIMESTAMP] == b""
    assert len(headers[HEADER_REASON]) == 200


# --------------------------------------------------------------------------------------- with a broker
@pytest.mark.integration
def test_produce_consume_round_trip(kafka_bootstrap: str) -> None:
    topic = unique_topic("roundtrip")
    create_topics(kafka_bootstrap, [topic], partitions=3)
    records = [{"id": f"r{i}", "n": i} for i in range(30)]
    acks = produce_json(kafka_bootstrap, topic, records, key="id", headers=[("origin", b"test")])
    assert len(acks) == 30
    got = consume_all(kafka_bootstrap, topic, timeout=15)
    assert sorted(m.json()["n"] for m in got) == list(range(30))
    assert {m.partition for m in got} == {0, 1, 2}  # keys spread over partitions
    for m in got:
        assert m.key == m.json()["id"].encode() and m.header("origin") == b"test"
        assert m.timestamp_ms is not None and abs(m.timestamp_ms / 1000 - time.time()) < 120
    by_key = {m.key: m.partition for m in got}
    again = produce_json(kafka_bootstrap, topic, records[:5], key="id")
    assert [p for p, _ in again] == [by_key[r["id"].encode()] for r in records[:5]]  # same key -> partition


@pytest.mark.integration
def test_group_commit_then_reread_from_committed(kafka_bootstrap: str) -> None:
    topic, group = unique_topic("group"), unique_topic("g")
    create_topics(kafka_bootstrap, [topic], partitions=2)
    produce_json(kafka_bootstrap, topic, [{"n": i} for i in range(6)], key=lambda r: str(r["n"]))
    assigned: list[list[int]] = []
    consumer = make_consumer(kafka_bootstrap, group, [topic],
                             on_assign=lambda _c, ps: assigned.append([p.partition for p in ps]),
                             extra={**FAST_GROUP_CONFIG, **FAST_RECONNECT})
    seen: list[Message] = []
    deadline = time.monotonic() + 20
    try:
        while len(seen) < 6 and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                seen.append(msg)
        assert len(seen) == 6, f"read {len(seen)} of 6 (assignments: {assigned})"
        assert sorted(assigned[0]) == [0, 1]
        assert consumer_lag(consumer) == {(topic, 0): 0, (topic, 1): 0}  # fetch watermarks, not ListOffsets
        consumer.commit(offsets=offsets_to_commit(seen), asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
        assert sum(tp.offset for tp in committed) == 6
    finally:
        consumer.close()
    produce_json(kafka_bootstrap, topic, [{"n": i} for i in range(6, 9)], key=lambda r: str(r["n"]))
    # Same group: starts at the committed offsets, so only the 3 new records come back.
    rest = consume_all(kafka_bootstrap, topic, timeout=20, group=group, min_messages=3)
    assert sorted(m.json()["n"] for m in rest) == [6, 7, 8]


def _read_one(bootstrap: str, topic: str, timeout: float = 10.0) -> Message:
    """First message of partition 0 as a real confluent_kafka.Message (what the service hands the sink)."""
    consumer = Consumer(client_config(bootstrap, {"group.id": unique_topic("raw")}))
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                return msg
        raise AssertionError(f"nothing on {topic} within {timeout}s")
    finally:
        consumer.close()


@pytest.mark.integration
def test_dead_letter_sink_keeps_original_bytes_and_adds_headers(kafka_bootstrap: str) -> None:
    topic = unique_topic("signups")
    create_topics(kafka_bootstrap, [topic, f"{topic}.dlq"], partitions=1)
    raw = b'{"id": "r1", "name": "Ada L\xc3\xb6vel'  # truncated JSON with non-ASCII bytes
    produce_json(kafka_bootstrap, topic, [raw], key=lambda _r: b"r1", headers=[("trace", b"abc")])
    original = _read_one(kafka_bootstrap, topic)

    sink = DeadLetterSink(TrackedProducer(make_producer(kafka_bootstrap, extra=FAST_RECONNECT)))
    assert sink.topic_for(topic) == f"{topic}.dlq"
    sink.send(original, reason="invalid_json", stage="decode")
    assert sink.flush_and_check(timeout=15) == 1

    (dead,) = consume_all(kafka_bootstrap, f"{topic}.dlq", timeout=15, min_messages=1)
    assert dead.value == raw and dead.key == b"r1"
    assert dead.header("trace") == b"abc"
    assert dead.header(HEADER_REASON) == b"invalid_json" and dead.header(HEADER_STAGE) == b"decode"
    assert dead.header(HEADER_SOURCE_TOPIC) == topic.encode()
    assert dead.header(HEADER_SOURCE_PARTITION) == b"0"
    assert dead.header(HEADER_SOURCE_OFFSET) == str(original.offset()).encode()
    assert dead.header(HEADER_SOURCE_TIMESTAMP) == str(original.timestamp()[1]).encode()


@pytest.mark.integration
def test_producer_waits_through_proxy_outage_then_succeeds(
    kafka_bootstrap: str, tansu_proxy: Callable[..., TansuProxy]
) -> None:
    topic = unique_topic("outage")
    create_topics(kafka_bootstrap, [topic], partitions=1)
    proxy = tansu_proxy()
    tracked = TrackedProducer(make_producer(proxy.bootstrap, extra={**FAST_RECONNECT}))
    tracked.produce(topic, orjson.dumps({"n": 0}), b"k")
    assert tracked.flush_and_check(timeout=15) == 1

    proxy.stop()
    tracked.produce(topic, orjson.dumps({"n": 1}), b"k")
    with pytest.raises(DeliveryError) as info:  # broker unreachable: not acknowledged -> must not commit
        tracked.flush_and_check(timeout=2)
    assert info.value.pending == 1 and not info.value.failures
    proxy.start()
    assert tracked.flush_and_check(timeout=30) == 1  # the same message, delivered after the outage

    got = consume_all(kafka_bootstrap, topic, timeout=15, min_messages=2)
    assert [m.json()["n"] for m in got] == [0, 1]  # exactly once: idempotent retries


@pytest.mark.integration
def test_failed_delivery_is_reported(kafka_bootstrap: str, tansu_proxy: Callable[..., TansuProxy]) -> None:
    proxy = tansu_proxy()
    tracked = TrackedProducer(make_producer(
        proxy.bootstrap, extra={"message.timeout.ms": "1500", **FAST_RECONNECT}))
    proxy.stop()  # the producer never reaches the broker
    tracked.produce(unique_topic("never"), b"x")
    with pytest.raises(DeliveryError) as info:
        tracked.flush_and_check(timeout=10)
    assert info.value.pending == 0 and len(info.value.failures) == 1
    assert info.value.failures[0].code < 0  # a local librdkafka error (message timed out)
