"""Health/readiness/metrics endpoints over real HTTP on a free port.

Why: Kubernetes restarts a pod on /healthz failures and routes traffic by /readyz; a probe that is green
while the poll loop is wedged (or red while merely waiting for Redis) causes outages or restart loops.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from consumer.api.health import HealthServer, HealthState
from consumer.telemetry.metrics import STAGES, Metrics


class FakeClock:
    """A controllable monotonic clock, so the stall test does not sleep."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def get_json(url: str) -> tuple[int, Any]:
    status, ctype, body = get(url)
    assert ctype == "application/json"
    return status, json.loads(body)


Served = tuple[HealthServer, HealthState, Metrics, FakeClock]


@pytest.fixture
def served() -> Iterator[Served]:
    clock = FakeClock()
    metrics = Metrics()
    state = HealthState(stall_seconds=30, required_dependencies=["redis"], ready_gauge=metrics.ready,
                        clock=clock)
    with HealthServer(state, metrics.registry, port=0) as server:
        yield server, state, metrics, clock


def test_healthz_turns_503_after_a_stall(served: Served) -> None:
    server, state, _metrics, clock = served
    assert server.port > 0
    assert get_json(server.url + "/healthz")[0] == 200  # start-up counts as progress
    clock.now += 29
    state.beat()
    clock.now += 29
    assert get_json(server.url + "/healthz")[0] == 200
    clock.now += 2
    status, body = get_json(server.url + "/healthz")
    assert status == 503 and body["status"] == "stalled" and "no progress" in body["reason"]
    state.beat()
    assert get_json(server.url + "/healthz")[0] == 200


def test_readyz_lists_every_unmet_condition(served: Served) -> None:
    server, state, metrics, clock = served
    status, body = get_json(server.url + "/readyz")
    assert status == 503
    assert body["reasons"] == ["no partitions assigned", "index not loaded", "redis: not checked yet"]
    state.set_assigned(True)
    state.set_index_loaded(True)
    state.set_dependency("redis", True)
    state.set_dependency("kafka", False, "_ALL_BROKERS_DOWN")
    clock.now += 12
    status, body = get_json(server.url + "/readyz")
    assert status == 503 and body["reasons"] == ["kafka: unreachable for 12.0s (_ALL_BROKERS_DOWN)"]
    assert metrics.registry.get_sample_value("dedup_ready") == 0
    state.set_dependency("kafka", True)
    status, body = get_json(server.url + "/readyz")
    assert status == 200 and body["reasons"] == [] and body["status"] == "ready"
    assert metrics.registry.get_sample_value("dedup_ready") == 1
    state.set_assigned(False)  # rebalance / more replicas than partitions: alive but not ready
    assert get_json(server.url + "/readyz")[0] == 503
    assert get_json(server.url + "/healthz")[0] == 200


def test_metrics_exposes_every_instrument(served: Served) -> None:
    server, _state, metrics, _clock = served
    metrics.records.inc(3)
    metrics.events.labels(type="clusters.merged").inc()
    metrics.dead_letters.labels(reason="invalid_json").inc()
    metrics.index_size.set(42)
    metrics.batch_size.set(7)
    metrics.set_lag({("signups", 0): 5, ("signups", 1): -1})
    metrics.observe_end_to_end(record_timestamp_ms=1_000_000, now=1_000.25)
    with metrics.time_stage("encode"):
        pass
    status, ctype, text = get(server.url + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    for name in ["dedup_end_to_end_latency_seconds_bucket", "dedup_stage_seconds_bucket",
                 "dedup_records_total", "dedup_events_total", "dedup_dead_letters_total", "dedup_index_size",
                 "dedup_batch_size", "dedup_consumer_lag", "dedup_ready"]:
        assert f"\n{name}" in text, name
    for stage in STAGES:
        assert f'dedup_stage_seconds_count{{stage="{stage}"}}' in text
    assert 'dedup_events_total{type="record.clustered"} 0.0' in text  # pre-created series
    assert 'dedup_consumer_lag{partition="0",topic="signups"} 5.0' in text
    assert 'partition="1"' not in text  # unknown lag is not published
    assert 'dedup_end_to_end_latency_seconds_bucket{le="0.25"} 1.0' in text
    assert 'dedup_end_to_end_latency_seconds_bucket{le="0.1"} 0.0' in text
    assert get_json(server.url + "/nope")[0] == 404


def test_registries_are_independent_and_port_is_released() -> None:
    a, b = Metrics(), Metrics()  # a second registry must not clash with the first
    a.records.inc()
    assert a.registry.get_sample_value("dedup_records_total") == 1
    assert b.registry.get_sample_value("dedup_records_total") == 0
    server = HealthServer(HealthState(), b.registry).start()
    port = server.port
    server.stop()
    with HealthServer(HealthState(), b.registry, port=port) as again:
        assert again.port == port
