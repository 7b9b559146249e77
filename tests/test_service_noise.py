"""Failures a user must be able to read: a wrong Redis password is a clear, final error (not an endless
"unreachable" retry), and a broker outage logs rate-limited JSON lines instead of librdkafka's raw stderr.

Against real servers: a Redis with requirepass (OwnedRedis) and a `dedup run` process with no broker at all.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from harness import redis as hr
from harness.kafka import free_port
from harness.service import ServiceProcess, http_get, service_settings, wait_for

pytestmark = pytest.mark.integration


def test_wrong_redis_password_is_a_clear_error_and_exit_3(owned_redis: Callable[..., hr.OwnedRedis],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    from consumer.service.runner import Service

    server = owned_redis(password="right-password", appendonly=False)
    wrong = server.url.replace("right-password", "wrong-password")
    settings = service_settings("127.0.0.1:1", wrong, ["in"], "events", "g", "dedup-test:auth:")
    service = Service(settings)
    rc: list[int] = []
    t = threading.Thread(target=lambda: rc.append(service.run()), daemon=True)
    t0 = time.monotonic()
    t.start()
    t.join(30)
    assert not t.is_alive(), "a wrong password must not be retried forever"
    service.stop()
    assert rc == [3] and time.monotonic() - t0 < 30
    refused = [r for r in caplog.records if r.getMessage().startswith("dependency refused")]
    assert refused and "AuthenticationError" in refused[0].__dict__["reason"]
    assert "wrong-password" not in caplog.text  # the URL (and its password) never reaches a log line


def test_broker_outage_logs_rate_limited_json(tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens: an outage from the first second
    proc = ServiceProcess(["--kafka", dead, "--redis", redis_url, "--redis-prefix", redis_prefix,
                           "--input-topic", "in"], tmp_path / "svc.log").start()
    try:
        wait_for(lambda: http_get(proc.url + "/healthz")[0] == 200, 60, "service up")
        time.sleep(8)
    finally:
        proc.signal(signal.SIGTERM)
        proc.wait(60)
    lines = [ln for ln in (tmp_path / "svc.log").read_text().splitlines() if ln.strip()]
    bad = [ln for ln in lines if not ln.startswith("{")]
    assert not bad, bad[:5]  # every line is JSON, librdkafka's included
    logs = [orjson.loads(ln) for ln in lines]
    kafka = [e for e in logs if e["logger"] == "dedup.kafka"]
    assert kafka, "librdkafka's lines go through the structured logger"
    # ~22 lines a second before; now at most one per facility and level every 5 s (+ the first).
    per_key = Counter((e["level"], e["msg"].split(" ", 1)[0]) for e in kafka)
    assert max(per_key.values()) <= 4, per_key


def test_same_id_with_other_content_is_an_id_conflict_not_a_silent_replay(kafka_bootstrap: str, redis_url: str,
                                                                          redis_prefix: str) -> None:
    from harness.kafka import consume_all, create_topics, produce_json, unique_topic
    from harness.service import committed_offset, running_service

    from consumer.io.kafka import HEADER_REASON, HEADER_SOURCE_OFFSET
    from consumer.store.redis import RedisStateStore

    def rec(name: str) -> dict[str, str]:
        return {"customer_id": "c-1", "name": name, "city": "Lisbon", "browser": "Firefox", "os": "Linux"}

    topic, events, group = unique_topic("in"), unique_topic("events"), unique_topic("g")
    dlq = f"{topic}.dlq"
    create_topics(kafka_bootstrap, [topic, events, dlq])
    settings = service_settings(kafka_bootstrap, redis_url, [topic], events, group, redis_prefix)
    with running_service(settings) as svc:
        # In one batch: the record, then another record under its id (checked against the batch itself).
        produce_json(kafka_bootstrap, topic, [rec("Ann Lee"), rec("Bruno Costa")])
        wait_for(lambda: committed_offset(kafka_bootstrap, group, topic) == 2, 60, "first batch committed")
        # Later: the same record again (a replay: formatting aside, same content), and a conflict checked
        # against the fingerprint stored in Redis.
        produce_json(kafka_bootstrap, topic, [orjson.dumps(rec("Ann Lee"), option=orjson.OPT_INDENT_2),
                                              rec("Carla Dias")])
        wait_for(lambda: committed_offset(kafka_bootstrap, group, topic) == 4, 60, "second batch committed")
        metrics = http_get(svc.url + "/metrics")[1]
    dead = consume_all(kafka_bootstrap, dlq, timeout=20, min_messages=2)
    assert sorted(int(m.header(HEADER_SOURCE_OFFSET)) for m in dead) == [1, 3]
    assert {m.header(HEADER_REASON) for m in dead} == {b"id_conflict"}
    assert 'dedup_dead_letters_total{reason="id_conflict"} 2.0' in metrics
    assert RedisStateStore(redis_url, redis_prefix).record_count() == 1
    out = consume_all(kafka_bootstrap, events, timeout=20, min_messages=2)
    assert {m.json()["record_id"] for m in out} == {"c-1"}
    assert len({m.json()["event_id"] for m in out}) == 1  # the replay re-sent the stored event, same id
