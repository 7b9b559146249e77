"""Shared plumbing of the load scripts: a broker and a Redis (the test harness's, or given), the service as a
real `dedup run` process, and CRM rows as the input topic carries them.

Not a test: these scripts print figures. They reuse tests/harness so a benchmark and the integration tests
start servers the same way (tansu unless $KAFKA_BOOTSTRAP; Redis per $REDIS_URL, local :6379, or a
throw-away one).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from harness import kafka as hk  # noqa: E402
from harness import redis as hr  # noqa: E402

__all__ = ["ROOT", "servers", "crm_file", "read_rows", "ServiceRun", "committed", "hk", "hr", "producer",
           "Produced", "paced_produce", "reading_events", "scrape"]


@contextlib.contextmanager
def servers(workdir: Path) -> Iterator[tuple[str, str]]:
    """(bootstrap, redis url) for the run; anything started here is stopped afterwards."""
    with hk.kafka_bootstrap(log_dir=workdir) as bootstrap:
        try:
            yield bootstrap, hr.redis_url()
        finally:
            hr.stop_fallback_redis()


def proc_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds, user and system, RSS in MB) of a live process, from /proc; (0, 0) when it is gone. Why:
    members add throughput only if the group's CPU per record does not grow with them (issue 39), and a
    figure measured beside a broker on the same cores is only read right with the broker's share beside it."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))
        return cpu, rss / 1024.0
    except (OSError, StopIteration, IndexError, ValueError):
        return 0.0, 0.0


def own_children(name: str) -> list[int]:
    """PIDs of this process's children whose command line holds `name` (the broker the harness started)."""
    me, out = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == me and name in cmd:
            out.append(int(entry.name))
    return out


def crm_file(n: int, seed: int, workdir: Path) -> tuple[Path, Path]:
    """Generated CRM CSV + truth (cached by size and seed)."""
    from consumer.generate import write_crm

    path, truth = workdir / f"crm-{n}-{seed}.csv", workdir / f"crm-{n}-{seed}.truth.csv"
    if not path.exists():
        write_crm(path, truth, n, seed)
    return path, truth


def listing_file(n: int, seed: int, workdir: Path) -> tuple[Path, Path, list[dict[str, str]]]:
    """Generated listings with photos, their truth, and the rows as a producer sends them: each photo inline
    as base64 (a message carries its record; the members read no file of the producer's)."""
    from consumer.generate.listings import write_listings

    path, truth = workdir / f"listings-{n}-{seed}.csv", workdir / f"listings-{n}-{seed}.truth.csv"
    if not path.exists():
        write_listings(path, truth, n, seed)
    rows = read_rows(path)
    for row in rows:
        if row["image"]:
            row["image"] = base64.b64encode((path.parent / row["image"]).read_bytes()).decode()
    return path, truth, rows


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
                     "--http-port", str(self.port), "--insecure-default-key", *extra]
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


def producer(bootstrap: str, linger_ms: int = 2) -> Any:
    """The load generator's producer: idempotent, acks=all, a short linger (what a real upstream would use).
    A longer `linger_ms` stores fewer, larger batches in the broker's log, which tansu's in-memory store scans
    on every fetch (docs/benchmarks.md); the wait is inside each record's latency (its timestamp is taken at
    hand-over)."""
    from confluent_kafka import Producer

    return Producer(hk.client_config(bootstrap, {"enable.idempotence": True, "acks": "all", "linger.ms": linger_ms}))


@dataclass
class Produced:
    """What `paced_produce` handed to the producer: wall-clock send times (epoch s, in row order), the
    indices whose delivery failed, and how long the whole call took (monotonic s)."""

    sent_at: list[float] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    seconds: float = 0.0


def paced_produce(prod: Any, topic: str, rows: Sequence[dict[str, Any]], offsets: Sequence[float], *,
                  key: str = "customer_id", stop: Callable[[], bool] | None = None) -> Produced:
    """Produce rows[i] at `offsets[i]` seconds after the start (one producer, one thread), then flush.

    Records are stamped by the producer when handed over (Kafka CreateTime), the `record_time` of their
    events. Stops early, without producing the rest, once `stop()` is true (checked before each record)."""
    out = Produced()

    def delivered(index: int) -> Callable[[Any, Any], None]:
        def cb(err: Any, _msg: Any) -> None:
            if err is not None:
                out.failed.append(index)
        return cb

    t0 = time.monotonic()
    for i, row in enumerate(rows[: len(offsets)]):
        ahead = t0 + offsets[i] - time.monotonic()
        if ahead > 0.002:
            time.sleep(ahead)
        if stop is not None and stop():
            break
        out.sent_at.append(time.time())
        prod.produce(topic, orjson.dumps(row), str(row[key]).encode(), on_delivery=delivered(i))
        prod.poll(0)
    prod.flush(30)
    out.seconds = time.monotonic() - t0
    return out


@contextlib.contextmanager
def reading_events(bootstrap: str, topic: str, wanted: Collection[str]) -> Iterator[dict[str, tuple[float, float]]]:
    """While open, record id -> (record_time, seen at) of each wanted record's first `record.clustered`
    event (epoch seconds), filled by a reader thread that starts at the topic's current end."""
    seen: dict[str, tuple[float, float]] = {}
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=_read_events, args=(bootstrap, topic, wanted, seen, stop, ready), daemon=True)
    thread.start()
    ready.wait(30)
    try:
        yield seen
    finally:
        stop.set()
        thread.join(10)


def _read_events(bootstrap: str, topic: str, wanted: Collection[str], out: dict[str, tuple[float, float]],
                 stop: threading.Event, ready: threading.Event) -> None:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(hk.client_config(bootstrap, {"group.id": f"loadtest-reader-{time.time_ns()}",
                                                     "enable.auto.commit": False, "fetch.wait.max.ms": 10}))
    try:
        # Explicit start offsets: OFFSET_END would be resolved only at the first fetch, which can come after
        # the first events of the run and skip them. (On tansu the "latest" offset can be a little early;
        # older events are filtered out by id.)
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                                                 timeout=10)[1]) for p in parts])
        while not stop.is_set():
            # One poll that returns as soon as an event arrives, then what is already queued. Not
            # `consume(500, timeout)`: it waits for 500 messages or the whole timeout, which added up to 50 ms
            # (25 ms at the median) to every latency this reader measured.
            first = consumer.poll(0.05)
            for msg in [] if first is None else [first, *consumer.consume(500, 0)]:
                ready.set()
                if msg.error() is not None:
                    continue
                now = time.time()
                e = orjson.loads(msg.value())
                rid = e.get("record_id")
                if e.get("event_type") != "record.clustered" or rid not in wanted or rid in out:
                    continue
                out[rid] = (datetime.fromisoformat(e["record_time"].replace("Z", "+00:00")).timestamp(), now)
            ready.set()
    finally:
        ready.set()
        consumer.close()


def scrape(url: str, timeout: float = 5.0) -> list[tuple[str, dict[str, str], float]]:
    """(sample name, labels, value) of every sample `url`/metrics exposes (Prometheus text format).

    Raises OSError (urllib's URLError is one) when nothing answers."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    return [(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text) for s in family.samples]
