"""Shared fixtures: one real broker and one real Redis per session, plus per-test owned servers.

The logic lives in tests/harness; this file only wires lifetimes. Integration tests that use these
fixtures start real servers (tansu unless $KAFKA_BOOTSTRAP; Redis per harness.redis.redis_url()).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from harness import kafka as hk
from harness import milvus as hm
from harness import redis as hr
from harness import redis_cluster as hrc


@pytest.fixture(autouse=True)
def _no_leaked_dedup_env() -> Iterator[None]:
    """A test that sets a DEDUP_* variable in this process changes every later test's settings (a leaked
    hash key once failed two unrelated tests far away): fail the test that leaked it, not its victims."""
    before = {k: v for k, v in os.environ.items() if k.startswith("DEDUP_")}
    yield
    after = {k: v for k, v in os.environ.items() if k.startswith("DEDUP_")}
    if after != before:
        changed = sorted(k for k in set(after) | set(before) if after.get(k) != before.get(k))
        for k in set(after) - set(before):
            del os.environ[k]
        os.environ.update(before)
        pytest.fail(f"this test left DEDUP_* environment variables changed: {changed}"
                    " (use monkeypatch.setenv or pass env= to load_settings)")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """bootstrap.servers of $KAFKA_BOOTSTRAP or of a tansu broker started once for the session."""
    with hk.kafka_bootstrap(log_dir=tmp_path_factory.mktemp("tansu")) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of the shared Redis ($REDIS_URL, local :6379, or one started for the session)."""
    yield hr.redis_url()
    hr.stop_fallback_redis()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix unique to this test; its keys are deleted afterwards (never FLUSHDB a shared Redis)."""
    prefix = f"dedup-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        hr.delete_prefix(client, prefix)
    finally:
        client.close()


@pytest.fixture(scope="module")
def milvus_uri() -> Iterator[str]:
    """URI of $MILVUS_URI or of a Milvus standalone server started for the module that asks (the `milvus`
    wheel), stopped when its tests end: an idle standalone server keeps taking a share of the two cores, and
    the service tests that run after it wait on timings (two of them timed out in a full run with it left
    running, and passed alone). Skips with the reason when it cannot start, unless $REQUIRE_MILVUS is set
    (`make test`, so CI fails instead of quietly skipping the Milvus tests)."""
    try:
        uri = hm.milvus_uri()
    except RuntimeError as exc:
        if os.environ.get("REQUIRE_MILVUS"):
            pytest.fail(f"Milvus is required here ($REQUIRE_MILVUS) but did not start: {exc}")
        pytest.skip(f"no Milvus server for the Milvus index tests: {exc}")
    yield uri
    hm.stop_fallback_milvus()


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[hrc.OwnedRedisCluster | None]:
    """A Redis Cluster of three masters started for the module that asks, stopped when its tests end, like
    `milvus_uri` (None when $REDIS_CLUSTER_NODES names one instead). Skips, saying why, when no
    redis-server can be started."""
    if os.environ.get(hrc.ENV_CLUSTER_NODES, "").strip():
        yield None
        return
    try:
        cluster = hrc.OwnedRedisCluster(3).start()
    except (FileNotFoundError, RuntimeError) as exc:
        pytest.skip(f"no Redis Cluster for the cluster store tests: {exc}")
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def redis_cluster_url(redis_cluster: hrc.OwnedRedisCluster | None) -> str:
    """`redis+cluster://` URL of $REDIS_CLUSTER_NODES or of the module's own three-master cluster."""
    if redis_cluster is None:
        return hrc.cluster_url_of(os.environ[hrc.ENV_CLUSTER_NODES])
    return redis_cluster.url


@pytest.fixture
def owned_redis() -> Iterator[Callable[..., hr.OwnedRedis]]:
    """Factory: `owned_redis()` starts a private AOF Redis a test may kill/restart; all closed afterwards."""
    servers: list[hr.OwnedRedis] = []

    def start(**kwargs: Any) -> hr.OwnedRedis:
        server = hr.OwnedRedis(**kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def tansu_proxy(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., hk.TansuProxy]]:
    """Factory: `tansu_proxy()` starts a proxy in front of the session broker; all stopped afterwards."""
    proxies: list[hk.TansuProxy] = []

    def start(origin: str | None = None, **kwargs: Any) -> hk.TansuProxy:
        kwargs.setdefault("log_dir", tmp_path)
        proxy = hk.TansuProxy(origin or kafka_bootstrap, **kwargs)
        proxies.append(proxy)
        return proxy.start()

    yield start
    for proxy in proxies:
        proxy.stop()
