"""Bad input on the stream: every kind goes to `<input>.dlq` byte for byte with its reason, and the good
records around it are all processed.

Why: one malformed message must neither stop the consumer nor be dropped silently; the dead letter keeps
the original bytes (re-processing after a fix is a plain re-produce) and says why in headers.
"""

from __future__ import annotations

import orjson
import pytest
from harness.kafka import consume_all, create_topics, produce_json, unique_topic
from harness.service import (
    check_events,
    committed_offset,
    http_get,
    running_service,
    service_settings,
    wait_for,
)

from consumer.io.kafka import HEADER_DETAIL, HEADER_REASON, HEADER_SOURCE_OFFSET, HEADER_STAGE
from consumer.service.batch import PROFILE_HEADER
from consumer.store.redis import RedisStateStore

pytestmark = pytest.mark.integration


def good(i: int) -> dict[str, str]:
    return {"customer_id": f"good-{i}", "name": f"Person Number{i}", "city": "Lisbon", "browser": "Firefox",
            "os": "Linux", "login_times": '["2024-03-01 08:00:00", "2024-03-02 08:30:00"]'}


BAD: dict[str, bytes] = {
    "malformed_json": b'{"customer_id": "b1", "name": "Trunc',
    "bad_encoding": b'{"customer_id": "b2", "name": "\xff\xfe"}',
    "not_an_object": b'["customer_id", "b3"]',
    "missing_id": orjson.dumps({**good(0), "customer_id": ""}),
    "wrong_type": orjson.dumps({**good(0), "customer_id": "b5", "city": ["Lisbon"]}),
    "oversized_field": orjson.dumps({**good(0), "customer_id": "b6", "name": "N" * 5000}),
    "oversized_record": orjson.dumps({**good(0), "customer_id": "b7", "notes": "x" * 100_000}),
    "bad_timestamps": orjson.dumps({**good(0), "customer_id": "b8", "login_times": '["not a time"]'}),
    "no_usable_fields": orjson.dumps({"customer_id": "b9"}),
}


def test_every_bad_kind_is_dead_lettered_and_neighbours_processed(kafka_bootstrap: str, redis_url: str,
                                                                    redis_prefix: str) -> None:
    topic, events, group = unique_topic("in"), unique_topic("events"), unique_topic("g")
    dlq = f"{topic}.dlq"
    create_topics(kafka_bootstrap, [topic, events, dlq])
    stream: list[dict[str, str] | bytes] = []
    for i, value in enumerate(BAD.values()):
        stream += [good(2 * i + 1), value, good(2 * i + 2)]
    produce_json(kafka_bootstrap, topic, stream)
    # unknown profile: a well-formed record declaring an input profile this consumer does not handle
    produce_json(kafka_bootstrap, topic, [good(99)], headers=[(PROFILE_HEADER, b"hr-employees")])
    produce_json(kafka_bootstrap, topic, [good(100)])
    n_good, n_bad = 2 * len(BAD) + 1, len(BAD) + 1
    settings = service_settings(kafka_bootstrap, redis_url, [topic], events, group, redis_prefix)
    store = RedisStateStore(redis_url, redis_prefix)
    with running_service(settings) as svc:
        wait_for(lambda: committed_offset(kafka_bootstrap, group, topic) == len(stream) + 2, 60,
                 "every message committed")
        metrics = http_get(svc.url + "/metrics")[1]
    assert sorted(rid for rid, _ in store.export_clusters()) == sorted(
        [f"good-{i}" for i in range(1, 2 * len(BAD) + 1)] + ["good-100"])
    assert store.record_count() == n_good

    dead = consume_all(kafka_bootstrap, dlq, timeout=20, min_messages=n_bad)
    by_reason = {m.header(HEADER_REASON).decode(): m for m in dead}
    assert sorted(by_reason) == sorted([*BAD, "unknown_profile"])
    for reason, value in BAD.items():
        m = by_reason[reason]
        assert m.value == value  # the original bytes
        assert m.header(HEADER_STAGE) in (b"decode", b"validate") and m.header(HEADER_DETAIL)
        assert int(m.header(HEADER_SOURCE_OFFSET)) == stream.index(value)
    assert by_reason["unknown_profile"].header(PROFILE_HEADER) == b"hr-employees"
    for reason in [*BAD, "unknown_profile"]:
        assert f'dedup_dead_letters_total{{reason="{reason}"}} 1.0' in metrics
    assert f"dedup_records_total {float(len(stream) + 2)}" in metrics

    distinct = check_events([m.value for m in consume_all(kafka_bootstrap, events, timeout=20,
                                                          min_messages=n_good)])
    assert {e["record_id"] for e in distinct.values()} == {rid for rid, _ in store.export_clusters()}


def test_dead_letter_over_the_producer_limit_is_sent_without_its_value(kafka_bootstrap: str, redis_url: str,
                                                                       redis_prefix: str) -> None:
    """A bad message larger than the producer's message.max.bytes used to make the DLQ produce() raise:
    that dead letter and every later one of the batch were dropped, yet the offsets were committed and the
    metric counted them. Now it goes out without its value (a header says so, the reason is kept), the
    later dead letters still go out, and offsets are committed only after all were acknowledged."""
    from harness.service import FAST_CLIENT

    from consumer.io.kafka import HEADER_TRUNCATED

    topic, events, group = unique_topic("in"), unique_topic("events"), unique_topic("g")
    dlq = f"{topic}.dlq"
    create_topics(kafka_bootstrap, [topic, events, dlq])
    huge = b'{"customer_id": "big", "name": "' + b"A" * 40_000  # malformed, 40 kB > the 20 kB limit below
    small = BAD["malformed_json"]
    stream: list[dict[str, str] | bytes] = [good(1), huge, good(2), small, good(3)]
    produce_json(kafka_bootstrap, topic, stream)
    settings = service_settings(kafka_bootstrap, redis_url, [topic], events, group, redis_prefix)
    with running_service(settings, kafka_properties={**FAST_CLIENT, "message.max.bytes": "20000"}) as svc:
        wait_for(lambda: committed_offset(kafka_bootstrap, group, topic) == len(stream), 60,
                 "every message committed")
        metrics = http_get(svc.url + "/metrics")[1]
    dead = sorted(consume_all(kafka_bootstrap, dlq, timeout=20, min_messages=2),
                  key=lambda m: int(m.header(HEADER_SOURCE_OFFSET)))
    assert [int(m.header(HEADER_SOURCE_OFFSET)) for m in dead] == [1, 3]
    assert [m.header(HEADER_REASON) for m in dead] == [b"malformed_json", b"malformed_json"]
    assert dead[0].value in (None, b"") and dead[0].header(HEADER_TRUNCATED) == b"value:40032"
    assert dead[1].value == small and dead[1].header(HEADER_TRUNCATED) is None
    assert 'dedup_dead_letters_total{reason="malformed_json"} 2.0' in metrics
    assert RedisStateStore(redis_url, redis_prefix).record_count() == 3
