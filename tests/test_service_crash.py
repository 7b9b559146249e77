"""`dedup run` as a real process: kill -9 mid-stream and restart, SIGTERM mid-stream, then the full stream.

Why: at-least-once with idempotent effects is only proven by dying at an arbitrary point. After a SIGKILL
the restarted consumer re-reads from the last commit; records already in Redis come back as replays and
re-send their stored events. Afterwards every record has exactly one cluster, none is missing, no cluster is
merged twice, and every repeated event repeats its id with the same bytes. SIGTERM must finish the batch and
commit exactly what was processed.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import orjson
import pytest
from harness.kafka import consume_all, create_topics, produce_json, unique_topic
from harness.service import (
    ServiceProcess,
    check_events,
    committed_offset,
    crm_rows,
    http_get,
    rewind_group,
    wait_for,
)

from consumer.config import load_settings
from consumer.evaluation.evaluate import cluster_scores
from consumer.io.batch import run_batch
from consumer.store.redis import RedisStateStore

pytestmark = pytest.mark.integration
N = 3000


def test_kill9_sigterm_and_restart_lose_and_duplicate_nothing(kafka_bootstrap: str, redis_url: str,
                                                                redis_prefix: str, tmp_path: Path) -> None:
    path, truth, rows = crm_rows(N, 33, tmp_path)
    topic, events, group = unique_topic("crm"), unique_topic("events"), unique_topic("g")
    create_topics(kafka_bootstrap, [topic, events])
    produce_json(kafka_bootstrap, topic, rows, key="customer_id")
    store = RedisStateStore(redis_url, redis_prefix)
    args = ["--kafka", kafka_bootstrap, "--redis", redis_url, "--input-topic", topic,
            "--events-topic", events, "--group", group, "--redis-prefix", redis_prefix, "--max-batch", "100"]

    def service(name: str) -> ServiceProcess:
        return ServiceProcess(args, tmp_path / f"{name}.log").start()

    first = service("first")
    try:
        wait_for(lambda: store.record_count() >= 300, 90, "first consumer under way")
        first.signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.stop()
    killed_at = store.record_count()
    assert killed_at < N, "stream finished before the kill: make it longer"
    # The kill may land between the Redis write and the commit of a batch, or not; make sure it did: move
    # the commit back so the next consumer re-reads records it already stored (the replay path).
    rewind_group(kafka_bootstrap, group, topic, killed_at // 2)
    assert committed_offset(kafka_bootstrap, group, topic) == killed_at // 2
    # Which re-read records had their events delivered before the kill: those must be re-sent on replay. (A
    # record stored in Redis whose events were not yet produced when the kill landed sends them first time.)
    replay_ids = {r["customer_id"] for r in rows[killed_at // 2:killed_at]}
    delivered = {orjson.loads(m.value)["record_id"] for m in consume_all(kafka_bootstrap, events, timeout=10)}
    must_resend = replay_ids & delivered
    assert must_resend, "no re-read record had its events delivered: the replay path would go untested"

    second = service("second")
    try:
        wait_for(lambda: store.record_count() >= killed_at + 300, 90, "second consumer under way")
        assert http_get(second.url + "/healthz")[0] == 200
        second.signal(signal.SIGTERM)
        assert second.wait(60) == 0, second.log_tail()
    finally:
        second.stop()
    # SIGTERM finished the batch and committed exactly the processed records (single partition, no rejects).
    stopped_at = store.record_count()
    assert stopped_at < N, "stream finished before SIGTERM: make it longer"
    assert committed_offset(kafka_bootstrap, group, topic) == stopped_at

    third = service("third")
    try:
        wait_for(lambda: committed_offset(kafka_bootstrap, group, topic) == N, 120, "whole stream committed",
                 interval=0.5)
        assert http_get(third.url + "/readyz")[0] == 200
    finally:
        third.stop()

    exported = dict(store.export_clusters())
    assert sorted(exported) == sorted(r["customer_id"] for r in rows)  # one cluster each, none missing
    assert store.verify() == [] and store.record_count() == N
    values = [m.value for m in consume_all(kafka_bootstrap, events, timeout=30, min_messages=N)]
    distinct = check_events(values)  # repeated ids carry identical bytes; no cluster merged twice
    assert sum(e["event_type"] == "record.clustered" for e in distinct.values()) == N
    replayed = len(values) - len(distinct)
    print(f"kill -9 after {killed_at} records, SIGTERM after {stopped_at}; {replayed} events re-sent")
    clustered = Counter(orjson.loads(v)["record_id"] for v in values
                        if orjson.loads(v)["event_type"] == "record.clustered")
    not_resent = sorted(r for r in must_resend if clustered[r] < 2)
    assert not not_resent, f"{len(not_resent)} replayed records did not re-send their stored events"
    # Restored state decides like an uninterrupted run: same quality as `dedup batch` on the same order.
    _summary, pipe = run_batch(path, tmp_path / "batch.jsonl", load_settings(env={}), progress=False)
    assert abs(cluster_scores(exported, truth).f1 - cluster_scores(pipe.assignments(), truth).f1) <= 0.005
