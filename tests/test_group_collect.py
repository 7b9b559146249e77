"""How the service's group member collects a micro-batch, against a real broker: records that were
already waiting are taken at once; only a member that was idle waits `max_wait_ms` for a batch to fill."""

from __future__ import annotations

import threading
import time

from harness import kafka as hk

from consumer.io.group import GroupMember
from consumer.service.deps import DEFAULT_KAFKA_PROPERTIES


def _member(bootstrap: str, topic: str) -> GroupMember:
    props = {**DEFAULT_KAFKA_PROPERTIES, "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
             "heartbeat.interval.ms": 500}
    return GroupMember(bootstrap, hk.unique_topic("g"), [topic], properties=props, on_assigned=lambda _p: None,
                       on_gone=lambda _p, _lost: None, error_cb=lambda _e: None, warn=lambda *_a, **_k: None)


def _drain(member: GroupMember, want: int, seconds: float = 30.0) -> int:
    got, deadline = 0, time.monotonic() + seconds
    while got < want and time.monotonic() < deadline:
        got += len(member.collect(100, 0, 0.2))
    return got


def test_waiting_records_are_taken_without_the_fill_wait(kafka_bootstrap: str) -> None:
    topic = hk.unique_topic("collect")
    hk.create_topics(kafka_bootstrap, [topic])
    member = _member(kafka_bootstrap, topic)
    try:
        hk.produce_json(kafka_bootstrap, topic, [{"i": i} for i in range(3)])
        assert _drain(member, 3) == 3  # joined the group, read the first records

        # Records that arrived while the member was busy (a batch being decided) are queued already:
        # collected at once, not after a 3 s fill wait.
        hk.produce_json(kafka_bootstrap, topic, [{"i": i} for i in range(3, 8)])
        time.sleep(1.0)  # fetched into the client's queue meanwhile
        t0 = time.monotonic()
        batch = member.collect(100, 3000, 0.5)
        assert len(batch) == 5 and time.monotonic() - t0 < 1.5

        # An idle member waits for the first record, then up to max_wait_ms for the batch to fill.
        def later() -> None:
            time.sleep(0.3)
            hk.produce_json(kafka_bootstrap, topic, [{"i": 8}])
            time.sleep(0.3)
            hk.produce_json(kafka_bootstrap, topic, [{"i": 9}])

        sender = threading.Thread(target=later)
        sender.start()
        batch = member.collect(100, 3000, 10.0)
        sender.join()
        assert sorted(m.offset() for m in batch) == [8, 9]
    finally:
        member.close()
