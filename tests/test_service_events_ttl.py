"""`dedup run` with a short stored-events retention (service.replay_events_ttl_seconds).

Why: stored events are kept only as long as a replay can still need them (issue 12, leaner state). A record
processed again after they expired (here: the whole input re-read from offset 0) must neither crash, nor
loop reloading the state, nor change an outcome: it re-sends nothing, and within the window a replay still
re-sends identical bytes (tests/test_service_crash.py covers that path at length).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from harness.kafka import consume_all, create_topics, produce_json, unique_topic
from harness.service import ServiceProcess, committed_offset, crm_rows, rewind_group, wait_for

from consumer.store.redis import RedisStateStore

pytestmark = pytest.mark.integration
N = 120


def test_replay_after_events_expired_resends_nothing(kafka_bootstrap: str, redis_url: str, redis_prefix: str,
                                                      tmp_path: Path) -> None:
    _path, _truth, rows = crm_rows(N, 5, tmp_path)
    topic, events, group = unique_topic("crm"), unique_topic("events"), unique_topic("g")
    create_topics(kafka_bootstrap, [topic, events])
    produce_json(kafka_bootstrap, topic, rows, key="customer_id")
    store = RedisStateStore(redis_url, redis_prefix)
    args = ["--kafka", kafka_bootstrap, "--redis", redis_url, "--input-topic", topic,
            "--events-topic", events, "--group", group, "--redis-prefix", redis_prefix, "--max-batch", "50"]
    env = {"DEDUP_SERVICE__REPLAY_EVENTS_TTL_SECONDS": "2"}

    first = ServiceProcess(args, tmp_path / "first.log", env).start()
    try:
        wait_for(lambda: committed_offset(kafka_bootstrap, group, topic) == N, 120, "stream committed")
    finally:
        first.stop()
    sent = [m.value for m in consume_all(kafka_bootstrap, events, timeout=20, min_messages=N)]
    ttl = store.client.ttl(f"{store.prefix}ev:{rows[0]['customer_id']}")
    # Expiring within 2 s: Redis rounds TTL to the nearest second (0: under half a second left), -2: already
    # expired; never -1 (no expiry).
    assert 0 <= ttl <= 2 or ttl == -2
    time.sleep(2.5)
    assert store.stored_events(r["customer_id"] for r in rows) == {}
    before = dict(store.export_clusters())

    rewind_group(kafka_bootstrap, group, topic, 0)
    second = ServiceProcess(args, tmp_path / "second.log", env).start()
    try:
        wait_for(lambda: committed_offset(kafka_bootstrap, group, topic) == N, 120, "replays committed")
        log = (tmp_path / "second.log").read_text()
    finally:
        second.stop()
    assert "re-send nothing" in log and "state behind redis" not in log, log[-3000:]
    assert dict(store.export_clusters()) == before and store.verify() == [] and store.record_count() == N
    after = [m.value for m in consume_all(kafka_bootstrap, events, timeout=10, min_messages=len(sent))]
    assert len(after) == len(sent)  # nothing re-sent
