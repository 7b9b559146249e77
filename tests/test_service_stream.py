"""`dedup run` end to end on a generated CRM stream: same quality as `dedup batch`, clean events, no PII.

Why: the service must be the batch engine behind Kafka, not a different algorithm. The same records in the
same order through the broker, Redis and `export-clusters` must score the same pairwise F1 as `dedup batch`
(within 0.005; HNSW is approximate, so micro-batch boundaries may move a rare borderline pair). Along the
way: every event validates against the schema file, and no name/city/device value is readable from Redis
or from any event. The 10k-record version of this check is `loadtest/stream_vs_batch.py`.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import redis
from harness.kafka import consume_all, create_topics, produce_json, unique_topic
from harness.service import (
    check_events,
    committed_offset,
    crm_rows,
    http_get,
    leaked,
    privacy_needles,
    redis_dump,
    running_service,
    service_settings,
    wait_for,
)

from consumer.cli import main as cli_main
from consumer.config import load_settings
from consumer.evaluation.evaluate import cluster_scores
from consumer.io.batch import run_batch
from consumer.store.redis import RedisStateStore

pytestmark = pytest.mark.integration
N = 3000


def test_stream_matches_batch_and_leaks_nothing(kafka_bootstrap: str, redis_url: str, redis_prefix: str,
                                               tmp_path: Path) -> None:
    path, truth, rows = crm_rows(N, 21, tmp_path)
    _summary, pipe = run_batch(path, tmp_path / "batch.jsonl", load_settings(env={}), progress=False)
    batch_f1 = cluster_scores(pipe.assignments(), truth).f1

    topic, events, group = unique_topic("crm"), unique_topic("events"), unique_topic("g")
    create_topics(kafka_bootstrap, [topic, events])
    produce_json(kafka_bootstrap, topic, rows, key="customer_id")
    settings = service_settings(kafka_bootstrap, redis_url, [topic], events, group, redis_prefix)
    store = RedisStateStore(redis_url, redis_prefix)
    with running_service(settings) as svc:
        wait_for(lambda: store.record_count() >= N, 180, f"{N} records in redis")
        wait_for(lambda: committed_offset(kafka_bootstrap, group, topic) == N, 30, "offsets committed")
        status, body = http_get(svc.url + "/readyz")
        assert status == 200, body
        assert http_get(svc.url + "/healthz")[0] == 200
        metrics = http_get(svc.url + "/metrics")[1]
    for line in ("dedup_records_total 3000.0", "dedup_index_size 3000.0",
                 "dedup_end_to_end_latency_seconds_count 3000.0"):
        assert line in metrics, line
    assert 'dedup_stage_seconds_count{stage="encode_text"}' in metrics  # the pipeline's stage names
    assert 'dedup_stage_seconds_count{stage="compare"}' in metrics

    out = tmp_path / "clusters.jsonl"
    assert cli_main(["export-clusters", "--redis", redis_url, "--redis-prefix", redis_prefix,
                     "--out", str(out)]) == 0
    exported = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    stream = {e["record_id"]: e["cluster_id"] for e in exported}
    assert len(exported) == len(stream) == N and store.verify() == []
    stream_f1 = cluster_scores(stream, truth).f1
    print(f"pairwise F1 batch {batch_f1:.4f} stream {stream_f1:.4f} ({N} records)")
    assert abs(stream_f1 - batch_f1) <= 0.005

    values = [m.value for m in consume_all(kafka_bootstrap, events, timeout=30, min_messages=N)]
    distinct = check_events(values)
    clustered = [e for e in distinct.values() if e["event_type"] == "record.clustered"]
    assert len(clustered) == N and {e["record_id"] for e in clustered} == set(stream)
    assert all(e["cluster_id"] for e in clustered)

    needles = privacy_needles(rows)
    assert len(needles) > 1000
    client = redis.Redis.from_url(redis_url)
    assert leaked(redis_dump(client, redis_prefix), needles) == []
    assert leaked(values, needles) == []
