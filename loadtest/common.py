"""Shared plumbing of the load scripts: a broker and a Redis (the test harness's, or given), the service as a
real `dedup run` process, and CRM rows as the input topic carries them.

Not a test: these scripts print figures. They reuse tests/harness so a benchmark and the integration tests
start servers the same way (tansu unless $KAFKA_BOOTSTRAP; Redis per $REDIS_URL, local :6379, or a
throw-away one).
"""

from __future__ import annotations

import contextlib
import csv
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from harness import kafka as hk  # noqa: E402
from harness import redis as hr  # noqa: E402

__all__ = ["ROOT", "servers", "crm_file", "read_rows", "ServiceRun", "committed", "hk", "hr"]


@contextlib.contextmanager
def servers(workdir: Path) -> Iterator[tuple[str, str]]:
    """(bootstrap, redis url) for the run; anything started here is stopped afterwards."""
    with hk.kafka_bootstrap(log_dir=workdir) as bootstrap:
        try:
            yield bootstrap, hr.redis_url()
        finally:
            hr.stop_fallback_redis()


def crm_file(n: int, seed: int, workdir: Path) -> tuple[Path, Path]:
    """Generated CRM CSV + truth (cached by size and seed)."""
    from consumer.generate import write_crm

    path, truth = workdir / f"crm-{n}-{seed}.csv", workdir / f"crm-{n}-{seed}.truth.csv"
    if not path.exists():
        write_crm(path, truth, n, seed)
    return path, truth


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def committed(bootstrap: str, group: str, topic: str) -> int:
    """The group's committed offset on partition 0 (negative when none yet)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(hk.client_config(bootstrap, {"group.id": group, "enable.auto.commit": False}))
    try:
        (tp,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return int(tp.offset)
    finally:
        consumer.close()


class ServiceRun:
    """`python -m consumer.cli run` for one topic, with unique group/prefix; SIGTERM on exit."""

    def __init__(self, bootstrap: str, redis_url: str, topic: str, workdir: Path, *extra: str) -> None:
        self.bootstrap, self.redis_url, self.topic = bootstrap, redis_url, topic
        tag = uuid.uuid4().hex[:8]
        self.events, self.group, self.prefix = f"{topic}-events", f"bench-{tag}", f"dedup-bench-{tag}:"
        self.port = hk.free_port()
        self.log = workdir / f"service-{tag}.log"
        level = os.environ.get("DEDUP_BENCH_LOG_LEVEL", "INFO")  # DEBUG: one line per batch with timings
        self.argv = [sys.executable, "-m", "consumer.cli", "--log-level", level, "run", "--kafka", bootstrap,
                     "--redis", redis_url, "--input-topic", topic, "--events-topic", self.events,
                     "--group", self.group, "--redis-prefix", self.prefix, "--http-host", "127.0.0.1",
                     "--http-port", str(self.port), *extra]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServiceRun:
        hk.create_topics(self.bootstrap, [self.topic, self.events])
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        import redis

        client = redis.Redis.from_url(self.redis_url)
        hr.delete_prefix(client, self.prefix)
        client.close()

    def wait_committed(self, n: int, timeout: float, interval: float = 0.5) -> float:
        """Block until `n` offsets are committed; returns the monotonic time it was seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode}; see {self.log}")
            if committed(self.bootstrap, self.group, self.topic) >= n:
                return time.monotonic()
            time.sleep(interval)
        raise TimeoutError(f"{n} records not committed within {timeout:.0f}s; see {self.log}")
