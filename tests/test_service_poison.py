"""A record that passes validation but makes the core raise (a poison pill) is dead-lettered with reason
`internal_error`; the records around it are decided and committed; the service never crash-loops.

Why against the real broker and Redis: the failure this guards against was a restart loop (exit, restart,
re-read the uncommitted batch, die on the same record), which only the real commit path shows. The poison
is `login_times` at year 1, whose `.timestamp()` overflowed in the core; once validation rejects it the
dead letter's reason is `bad_timestamps` instead, and the test accepts either (tests/test_service_guard.py
keeps the guard itself tested with injected failures).
"""

from __future__ import annotations

import orjson
import pytest
from harness.kafka import consume_all, create_topics, produce_json, unique_topic
from harness.service import FAST_CLIENT, committed_offset, http_get, running_service, service_settings, wait_for

from consumer.io.kafka import HEADER_REASON, HEADER_SOURCE_OFFSET, HEADER_STAGE
from consumer.store.redis import RedisStateStore

pytestmark = pytest.mark.integration

N_GOOD = 1000


def good(i: int) -> dict[str, str]:
    return {"customer_id": f"good-{i}", "name": f"Person Number{i} Family{i % 37}", "city": "Lisbon",
            "browser": "Firefox", "os": "Linux", "login_times": '["2024-03-01 08:00:00", "2024-03-02 08:30:00"]'}


POISON = orjson.dumps({**good(0), "customer_id": "poison-1", "login_times": '["0001-01-01T00:00:00"]'})


def test_poison_record_is_dead_lettered_and_the_rest_clustered(kafka_bootstrap: str, redis_url: str,
                                                               redis_prefix: str) -> None:
    topic, events, group = unique_topic("in"), unique_topic("events"), unique_topic("g")
    dlq = f"{topic}.dlq"
    create_topics(kafka_bootstrap, [topic, events, dlq])
    stream: list[dict[str, str] | bytes] = [good(i) for i in range(N_GOOD // 2)]
    stream += [POISON] + [good(i) for i in range(N_GOOD // 2, N_GOOD)]
    produce_json(kafka_bootstrap, topic, stream, headers=[("trace", b"t-1")])
    settings = service_settings(kafka_bootstrap, redis_url, [topic], events, group, redis_prefix)
    store = RedisStateStore(redis_url, redis_prefix)
    # A generous poll interval: bisecting on a loaded test machine must not cost the partition (a rebalance
    # would legitimately re-deliver the batch, and with it a second copy of the dead letter).
    props = {**FAST_CLIENT, "max.poll.interval.ms": "120000"}
    with running_service(settings, kafka_properties=props) as svc:
        wait_for(lambda: committed_offset(kafka_bootstrap, group, topic) == len(stream), 180,
                 "every message committed")
        status, metrics = http_get(svc.url + "/metrics")
        thread_errors = svc.pipe is None
    assert status == 200 and not thread_errors  # running_service re-raises any crash of the service thread
    assert store.record_count() == N_GOOD
    assert sorted(rid for rid, _ in store.export_clusters()) == sorted(f"good-{i}" for i in range(N_GOOD))

    dead = consume_all(kafka_bootstrap, dlq, timeout=20, min_messages=1)
    assert len(dead) == 1
    reason = dead[0].header(HEADER_REASON).decode()
    assert reason in ("internal_error", "bad_timestamps")
    assert dead[0].value == POISON  # the original bytes and headers, as every dead letter
    assert dead[0].header("trace") == b"t-1"
    assert int(dead[0].header(HEADER_SOURCE_OFFSET)) == N_GOOD // 2
    if reason == "internal_error":
        assert dead[0].header(HEADER_STAGE) == b"decide"
    assert f'dedup_dead_letters_total{{reason="{reason}"}} 1.0' in metrics
    assert f"dedup_records_total {float(len(stream))}" in metrics
