"""The Redis harness: the shared-server chooser and a test-owned AOF server that survives kill + restart.

Why: cluster state lives in Redis; the service's restart story assumes an AOF Redis keeps every
acknowledged write across a crash, and later tests rely on OwnedRedis to simulate exactly that.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
import redis
from harness import redis as hr


def test_chooser_prefers_env_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(hr.ENV_REDIS_URL, "redis://example.invalid:6390/3")
    assert hr.redis_url() == "redis://example.invalid:6390/3"


@pytest.mark.integration
def test_chooser_returns_a_live_redis(redis_url: str, redis_prefix: str) -> None:
    assert hr.ping(redis_url)
    client = redis.Redis.from_url(redis_url)
    other = f"dedup-test:other-{uuid.uuid4().hex}"  # another test's key: must survive our cleanup
    try:
        client.set(f"{redis_prefix}a", "1")
        client.hset(f"{redis_prefix}h", mapping={"x": "1"})
        client.set(other, "keep", ex=60)
        assert hr.delete_prefix(client, redis_prefix) == 2
        assert client.get(other) == b"keep"
    finally:
        client.delete(other)
        client.close()


@pytest.mark.integration
def test_chooser_starts_a_server_when_none_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(hr.ENV_REDIS_URL, raising=False)
    monkeypatch.setattr(hr, "LOCAL_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    monkeypatch.setattr(hr, "_fallback", None)
    url = hr.redis_url()
    try:
        assert url != "redis://127.0.0.1:1/0" and hr.ping(url)
        assert hr.redis_url() == url  # started once, reused
    finally:
        hr.stop_fallback_redis()
    assert not hr.ping(url)


@pytest.mark.integration
@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_owned_redis_aof_survives_restart(owned_redis: Callable[..., hr.OwnedRedis], kill: bool) -> None:
    server = owned_redis()
    port, data_dir = server.port, server.data_dir
    client = server.client()
    client.set("cluster:1", "r1,r2")
    client.hset("record:r2", mapping={"cluster": "1"})
    with client.pipeline(transaction=True) as pipe:
        for i in range(200):
            pipe.rpush("log", i)
        pipe.execute()
    client.close()
    server.wait_for_aof_fsync()
    first_pid = server.pid

    server.restart(kill=kill)
    assert server.port == port and server.data_dir == data_dir and server.pid != first_pid
    client = server.client()
    try:
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.get("cluster:1") == b"r1,r2"
        assert client.hgetall("record:r2") == {b"cluster": b"1"}
        assert client.llen("log") == 200
    finally:
        client.close()


@pytest.mark.integration
def test_owned_redis_is_unreachable_while_stopped(owned_redis: Callable[..., hr.OwnedRedis]) -> None:
    server = owned_redis()
    server.stop(kill=True)
    assert not server.running and not hr.ping(server.url, timeout=0.3)
    server.start()
    assert hr.ping(server.url)
