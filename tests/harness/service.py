"""Service side of the harness: run `dedup run` in a thread or as a real process, wait, read its endpoints.

In-process services share one loaded text encoder (loading the ONNX model once per test session); the
crash and signal tests use a real subprocess (`python -m consumer.cli run ...`), because kill -9 and SIGTERM
only mean something to a process. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from consumer.config import Settings, load_settings

from .kafka import FAST_GROUP_CONFIG, free_port, produce_json

__all__ = ["FAST_CLIENT", "shared_text_encoder", "service_settings", "running_service", "ServiceProcess",
           "wait_for", "http_get", "event_validator", "crm_rows", "batch_f1_in_order", "privacy_needles",
           "redis_dump", "leaked", "check_events", "committed_offset", "rewind_group"]

ROOT = Path(__file__).resolve().parents[2]
#: Fast group join/failure detection and reconnects, so tests wait seconds instead of a minute.
FAST_CLIENT: dict[str, str] = {**FAST_GROUP_CONFIG, "reconnect.backoff.ms": "100",
                               "reconnect.backoff.max.ms": "1000"}


@functools.lru_cache(maxsize=1)
def shared_text_encoder() -> Any:
    """The default text encoder, loaded once (what `build_pipeline(settings)` would load)."""
    from consumer.io.artifacts import load_text_encoder

    return load_text_encoder(load_settings(env={}))


@functools.lru_cache(maxsize=2)
def schema_validator(version: str) -> Draft202012Validator:
    schema = json.loads((ROOT / "consumer" / "schemas" / f"duplicate-event.v{version}.json").read_text("utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


class _ByVersion:
    """Validates each event against the schema file of its own `schema_version` (v1 and v2 coexist for
    a release: replays re-send stored v1 bytes)."""

    def iter_errors(self, event: Any) -> Any:
        version = event.get("schema_version") if isinstance(event, dict) else None
        return schema_validator(version if version in ("1", "2") else "2").iter_errors(event)


def event_validator() -> _ByVersion:
    return _ByVersion()


def service_settings(kafka: str, redis_url: str, topics: Sequence[str], events: str, group: str,
                     prefix: str, **service: Any) -> Settings:
    s = load_settings(env={})
    svc = s.service
    svc.kafka, svc.redis, svc.input_topics, svc.events_topic = kafka, redis_url, list(topics), events
    svc.group, svc.redis_prefix, svc.http_host, svc.http_port = group, prefix, "127.0.0.1", 0
    svc.insecure_default_key = True  # tests use the public default hash key on purpose
    s.api.auth = "off"  # loopback only; tests/test_api_security.py covers the tokens
    for key, value in service.items():
        setattr(svc, key, value)
    return s


@contextlib.contextmanager
def running_service(settings: Settings, **kwargs: Any) -> Iterator[Any]:
    """A Service running `run()` in a thread; stopped (and joined, bounded) on exit."""
    from consumer.service.runner import Service

    kwargs.setdefault("kafka_properties", FAST_CLIENT)
    kwargs.setdefault("text_encoder", shared_text_encoder())
    service = Service(settings, **kwargs)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            service.run()
        except BaseException as exc:  # surfaced by the test, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="dedup-service", daemon=True)
    thread.start()
    wait_for(lambda: service.started.is_set() or errors, 30, "health server up")
    try:
        yield service
    finally:
        service.stop()
        thread.join(60)
        assert not thread.is_alive(), "service did not stop within 60 s"
        if errors:
            raise errors[0]


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll `cond` until truthy (returned) or fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for: {what}")
        time.sleep(interval)


def http_get(url: str, timeout: float = 3.0) -> tuple[int, str]:
    """(status, body); (0, error) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


class ServiceProcess:
    """`python -m consumer.cli run ...` as a child process with its own health port and a log file."""

    def __init__(self, args: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.args = [sys.executable, "-m", "consumer.cli", "--log-level", "INFO", "run", *args,
                     "--http-host", "127.0.0.1", "--http-port", str(self.port), "--insecure-default-key", "--no-auth",
                     *[a for k, v in FAST_CLIENT.items() for a in ("--kafka-property", f"{k}={v}")]]
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env=self.env, start_new_session=True)
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 30 s (cleanup, idempotent)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# ------------------------------------------------------------------------------------------ data and checks
def crm_rows(n: int, seed: int, out_dir: Path) -> tuple[Path, dict[str, str], list[dict[str, str]]]:
    """A generated CRM file, its truth, and its rows exactly as `dedup batch` reads them (file order)."""
    import csv

    from consumer.evaluation.evaluate import load_truth
    from consumer.generate import write_crm

    path, truth_path = out_dir / f"crm-{n}-{seed}.csv", out_dir / f"crm-{n}-{seed}.truth.csv"
    write_crm(path, truth_path, n, seed)
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return path, load_truth(truth_path), rows


def batch_f1_in_order(rows: Sequence[dict[str, str]], order: Sequence[str | None], truth: dict[str, str],
                      out_dir: Path) -> float:
    """Pairwise F1 of `dedup batch` on `rows` taken in `order` (record ids; ids not in `rows`, such as an
    erased record's empty slot, are left out), scored on final clusters.

    Why: the reference for a service run with random keys must be a batch run in the order the service saw
    the records. Cluster growth depends on arrival order: on a 360-record file, `dedup batch` gives F1 0.951-0.974
    over twelve shuffles of the rows against 0.976 in file order, so a bar set from file order fails on order
    alone, and one loose enough for that hides a real loss to concurrency.
    """
    import csv

    from consumer.evaluation.evaluate import cluster_scores
    from consumer.io.batch import run_batch

    by_id = {r["customer_id"]: r for r in rows}
    path = out_dir / "in-order.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(by_id[i] for i in order if i in by_id)
    _summary, pipe = run_batch(path, out_dir / "in-order.jsonl", load_settings(env={}), progress=False)
    try:
        return cluster_scores(pipe.assignments(), truth).f1
    finally:
        pipe.close()


_WORD = re.compile(rb"[A-Za-z\x80-\xff]+")  # letters, or bytes of multi-byte UTF-8 characters


def privacy_needles(rows: Sequence[dict[str, Any]], fields: Sequence[str] = ("name", "city", "browser", "os"),
                    min_len: int = 6) -> set[bytes]:
    """Words of input values that must never be read back (as written and lower-cased, UTF-8).

    Words shorter than `min_len` bytes are left out: a short run of letters occurs by chance inside binary
    vector payloads; every whole value of any length is made of these words, so a leak shows as a word.
    """
    needles: set[bytes] = set()
    for row in rows:
        for f in fields:
            value = str(row.get(f) or "")
            for text in (value, value.lower()):
                needles.update(w for w in _WORD.findall(text.encode()) if len(w) >= min_len)
    return needles


def redis_dump(client: Any, prefix: str) -> list[bytes]:
    """Every key under `prefix` and every value in it (hash fields/values, set members, strings)."""
    out: list[bytes] = []
    for key in client.scan_iter(match=prefix + "*", count=1000):
        out.append(key)
        kind = client.type(key)
        if kind == b"hash":
            for k, v in client.hgetall(key).items():
                out += [k, v]
        elif kind == b"set":
            out += list(client.smembers(key))
        elif kind == b"string":
            out.append(client.get(key))
    return out


def leaked(blobs: Sequence[bytes], needles: set[bytes]) -> list[bytes]:
    """Needles found as words in any blob (empty = nothing leaked); one linear pass over the blobs."""
    found: set[bytes] = set()
    for blob in blobs:
        found.update(w for w in _WORD.findall(blob) if w in needles or w.lower() in needles)
    return sorted(found)


def check_events(values: Sequence[bytes], reborn: Collection[str] = (),
                 late_link_races: bool = False) -> dict[str, Any]:
    """Schema-validate every event and check replay consistency; returns the distinct events by id.

    Asserts: each event id always carries identical bytes (a repeated event is the same event), one id per
    (record, type, merged clusters / candidate) (a replay never mints a new id), and every absorbed cluster
    is merged by exactly one event (no merge applied twice).
    """
    import orjson

    by_id: dict[str, bytes] = {}
    ident: dict[tuple[str, str, str], str] = {}
    absorbed_by: dict[str, set[str]] = {}
    validator = event_validator()
    for value in values:
        e = orjson.loads(value)
        errors = [err.message for err in validator.iter_errors(e)]
        assert not errors, (errors, e)
        eid = e["event_id"]
        assert by_id.setdefault(eid, value) == value, f"event {eid} repeated with another payload"
        disc = ",".join(e.get("merged_cluster_ids", [])) or e.get("candidate_record_id", "")
        if e["source"]["topic"] == "dedup.erasure":  # an erasure's events: one set per erasure
            disc += f"@erasure {e['source']['offset']}"
        # `reborn`: ids erased and sent again (a new record: new event ids, issue 23)
        key = (e["record_id"] + (f"@{eid}" if e["record_id"] in reborn else ""), e["event_type"], disc)
        assert ident.setdefault(key, eid) == eid, f"{key} has two event ids"
        if late_link_races and e["source"]["topic"] == "dedup.changelog":
            continue  # two members late-linking one cluster to two others at once: a known gap (issue 23 report)
        for c in e.get("merged_cluster_ids", []):
            absorbed_by.setdefault(c, set()).add(eid)
    # A cluster id names a cluster again after a split or an erasure re-founded it (ids derive from founding
    # records): only then may a second merge absorb it.
    reborn_ids = {p["cluster_id"] for v in by_id.values() if b'"cluster.split"' in v
                  for p in orjson.loads(v)["pieces"]}
    for c, eids in absorbed_by.items():
        assert len(eids) == 1 or c in reborn_ids, f"cluster {c} merged by two events"
    return {eid: orjson.loads(v) for eid, v in by_id.items()}


def committed_offset(bootstrap: str, group: str, topic: str, partition: int = 0) -> int:
    """The group's committed offset for one partition (-1001 = none yet)."""
    from confluent_kafka import Consumer, TopicPartition

    from .kafka import client_config

    consumer = Consumer(client_config(bootstrap, {"group.id": group, "enable.auto.commit": False}))
    try:
        (tp,) = consumer.committed([TopicPartition(topic, partition)], timeout=10)
        return int(tp.offset)
    finally:
        consumer.close()


def rewind_group(bootstrap: str, group: str, topic: str, offset: int, timeout: float = 40.0) -> None:
    """Commit `offset` for partition 0 as a group member: what a crash between the Redis write and the offset
    commit leaves behind, made larger. Joins once the dead member's session has expired (bounded)."""
    from confluent_kafka import Consumer, TopicPartition

    from consumer.io.kafka import DEFAULT_ASSIGNMENT_STRATEGY

    from .kafka import FAST_GROUP_CONFIG, client_config

    # The service's assignment strategy: a member with another one is refused by the group (see
    # docs/scale-out.md, "Upgrading from range").
    consumer = Consumer(client_config(bootstrap, {"group.id": group, "enable.auto.commit": False,
                                                  "enable.auto.offset.store": False, **FAST_GROUP_CONFIG,
                                                  "partition.assignment.strategy": DEFAULT_ASSIGNMENT_STRATEGY}))
    try:
        consumer.subscribe([topic])
        wait_for(lambda: consumer.poll(0.2) is not None or consumer.assignment(), timeout, "joined the group")
        wait_for(lambda: consumer.assignment(), timeout, "partition assigned")
        consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    finally:
        consumer.close()


def produce_twins(bootstrap: str, topic: str, pairs: Sequence[tuple[dict[str, str], dict[str, str]]],
                  stored: Callable[[], int], seed: int = 7) -> None:
    """Produce each pair's two records at the same instant (a barrier) to partitions 0 and 1 in a random
    order, and wait until both are stored (`stored`: the store's record count) before the next pair. Why:
    twins that reach two members together are the case a shared index must not miss (issues 12 and 39)."""
    import random

    rng = random.Random(seed)
    for i, (first, second) in enumerate(pairs):
        pa, pb = (0, 1) if rng.random() < 0.5 else (1, 0)
        barrier = threading.Barrier(2)

        def send(row: dict[str, str], part: int, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            produce_json(bootstrap, topic, [row], partition=part)

        threads = [threading.Thread(target=send, args=(first, pa)), threading.Thread(target=send, args=(second, pb))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        wait_for(lambda w=2 * (i + 1): stored() >= w, 30, "both twins stored")
