"""Dependencies going away mid-stream: Redis restarted (AOF on), the broker unreachable for ~20 s.

Why: the consumer must wait instead of crashing or skipping work, say so on /readyz (while /healthz stays
green: a restart would not bring Redis or the broker back), and recover with nothing lost: offsets are never
committed past work that is not in Redis and acknowledged on the events topic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from harness.kafka import TansuProxy, client_config, consume_all, create_topics, unique_topic
from harness.redis import OwnedRedis
from harness.service import (
    check_events,
    committed_offset,
    crm_rows,
    http_get,
    running_service,
    service_settings,
    wait_for,
)

from consumer.store.redis import RedisStateStore

pytestmark = pytest.mark.integration


@contextmanager
def paced_producer(bootstrap: str, topic: str, rows: list[dict[str, Any]], per_second: float
                   ) -> Iterator[threading.Thread]:
    """Produce `rows` in order at about `per_second`, in a thread, straight to the broker (one producer:
    a producer per chunk would spend most of its time on idempotence handshakes)."""
    errors: list[BaseException] = []

    def run() -> None:
        producer = Producer(client_config(bootstrap, {"enable.idempotence": True, "acks": "all",
                                                      "linger.ms": 5}))
        failed: list[str] = []
        try:
            t0 = time.monotonic()
            for i, row in enumerate(rows):
                producer.produce(topic, orjson.dumps(row), row["customer_id"].encode(),
                                 on_delivery=lambda err, _m: err is not None and failed.append(err.str()))
                producer.poll(0)
                time.sleep(max(t0 + (i + 1) / per_second - time.monotonic(), 0))
            assert producer.flush(30) == 0 and not failed, failed[:3]
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="paced-producer", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        thread.join(120)
        assert not errors, errors[0]


def readiness_reasons(url: str) -> str:
    status, body = http_get(url + "/readyz")
    return "" if status == 200 else body


def assert_complete(kafka: str, store: RedisStateStore, events: str, rows: list[dict[str, Any]]) -> None:
    exported = dict(store.export_clusters())
    assert sorted(exported) == sorted(r["customer_id"] for r in rows)
    assert store.verify() == [] and store.record_count() == len(rows)
    distinct = check_events([m.value for m in consume_all(kafka, events, timeout=30, min_messages=len(rows))])
    assert sum(e["event_type"] == "record.clustered" for e in distinct.values()) == len(rows)


def test_redis_restart_mid_stream(kafka_bootstrap: str, owned_redis: Callable[..., OwnedRedis],
                                  tmp_path: Path) -> None:
    server = owned_redis()
    _path, _truth, rows = crm_rows(2000, 41, tmp_path)
    topic, events, group = unique_topic("crm"), unique_topic("events"), unique_topic("g")
    create_topics(kafka_bootstrap, [topic, events])
    settings = service_settings(kafka_bootstrap, server.url, [topic], events, group, "dedup")
    store = RedisStateStore(server.url, "dedup")
    with running_service(settings) as svc, paced_producer(kafka_bootstrap, topic, rows, 250):
        wait_for(lambda: store.record_count() >= 300, 60, "stream under way")
        server.stop(kill=True)  # crash: the AOF holds every acknowledged write
        wait_for(lambda: "redis" in readiness_reasons(svc.url), 15, "/readyz reports redis")
        for _ in range(3):
            assert http_get(svc.url + "/healthz")[0] == 200  # waiting is not being stuck
            time.sleep(1)
        server.start()
        wait_for(lambda: committed_offset(kafka_bootstrap, group, topic) == len(rows), 90,
                 "whole stream committed", interval=0.5)
        wait_for(lambda: http_get(svc.url + "/readyz")[0] == 200, 15, "ready again")
    assert_complete(kafka_bootstrap, store, events, rows)


def test_broker_unreachable_for_20s_mid_stream(kafka_bootstrap: str, redis_url: str, redis_prefix: str,
                                               tansu_proxy: Callable[..., TansuProxy], tmp_path: Path) -> None:
    proxy = tansu_proxy()
    _path, _truth, rows = crm_rows(3000, 43, tmp_path)
    topic, events, group = unique_topic("crm"), unique_topic("events"), unique_topic("g")
    create_topics(kafka_bootstrap, [topic, events])
    settings = service_settings(proxy.bootstrap, redis_url, [topic], events, group, redis_prefix)
    store = RedisStateStore(redis_url, redis_prefix)
    with running_service(settings) as svc, paced_producer(kafka_bootstrap, topic, rows, 100):
        wait_for(lambda: store.record_count() >= 300, 60, "stream under way")
        proxy.stop()  # the consumer and its producer lose the broker; input keeps arriving behind the proxy
        down_at = time.monotonic()
        wait_for(lambda: readiness_reasons(svc.url), 15, "/readyz reports the outage")
        while time.monotonic() - down_at < 20:
            assert http_get(svc.url + "/healthz")[0] == 200
            time.sleep(1)
        during = store.record_count()
        proxy.start()
        wait_for(lambda: committed_offset(kafka_bootstrap, group, topic) == len(rows), 120,
                 "whole stream committed", interval=0.5)
        wait_for(lambda: http_get(svc.url + "/readyz")[0] == 200, 15, "ready again")
    assert during < len(rows), "the stream should still be arriving during the outage"
    assert_complete(kafka_bootstrap, store, events, rows)


def test_stuck_consumer_fails_liveness(kafka_bootstrap: str, redis_url: str, redis_prefix: str,
                                       tmp_path: Path) -> None:
    """A poll loop wedged inside a batch (here: a decision that takes 4 s) fails /healthz after
    `stall_seconds`, and passes again once the loop moves."""
    _path, _truth, rows = crm_rows(20, 45, tmp_path)
    topic, events, group = unique_topic("crm"), unique_topic("events"), unique_topic("g")
    create_topics(kafka_bootstrap, [topic, events])
    settings = service_settings(kafka_bootstrap, redis_url, [topic], events, group, redis_prefix,
                                stall_seconds=1.5)
    with running_service(settings) as svc:
        wait_for(lambda: http_get(svc.url + "/readyz")[0] == 200, 30, "ready")
        original = svc.pipe.process

        def wedged(records: Any, *args: Any) -> Any:
            time.sleep(4)
            return original(records, *args)

        svc.pipe.process = wedged
        with paced_producer(kafka_bootstrap, topic, rows[:1], 10):
            pass
        status, body = wait_for(lambda: (r := http_get(svc.url + "/healthz"))[0] == 503 and r, 10,
                                "/healthz failing while stuck")
        assert "no progress" in body
        wait_for(lambda: http_get(svc.url + "/healthz")[0] == 200, 10, "/healthz back after the batch")
