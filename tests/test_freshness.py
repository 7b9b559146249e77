"""Waiting for the group's earlier batches before deciding (consumer/service/freshness.py), on a real Redis.

Why: a member that decides a batch while another member's earlier batch is still unwritten decides without
that batch's records, and twins split across the two are joined only later by a late link. The wait must
end as soon as the earlier batches are written, must be bounded when one never is (a member died mid-batch),
and must not be paid twice for the same dead batch.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from consumer.config import ServiceSettings
from consumer.service.batch import Batch
from consumer.service.freshness import FreshnessDuties
from consumer.store.redis import RedisStateStore
from consumer.telemetry.metrics import Metrics

pytestmark = pytest.mark.integration


class Member(FreshnessDuties):
    """The freshness duties with a real store and real metrics (what `Service` gives them)."""

    def __init__(self, url: str, prefix: str, wait_ms: int) -> None:
        self.svc = ServiceSettings(freshness_wait_ms=wait_ms)
        self.store = RedisStateStore(url, prefix)
        self.metrics = Metrics()
        self._given_up, self._mine = {}, set()
        self.warnings: list[str] = []

    def _warn(self, kind: str, msg: str, **extra: Any) -> None:
        self.warnings.append(msg)

    def count(self, result: str) -> float:
        return self.metrics.freshness_waits.labels(result=result)._value.get()


def polled(member: Member) -> Batch:
    batch = Batch(messages=[])
    batch.good = [(None, None)]  # type: ignore[list-item]  # one record to decide: registered
    member._register_in_flight(batch)
    return batch


def test_a_batch_waits_for_the_earlier_batch_of_another_member_until_it_is_written(redis_url: str,
                                                                                   redis_prefix: str) -> None:
    a, b = Member(redis_url, redis_prefix, 5000), Member(redis_url, redis_prefix, 5000)
    first, second = polled(a), polled(b)
    assert second.earlier == [first.token] and first.earlier == []
    a._await_earlier(first)  # registered first: nothing to wait for
    assert a.count("none") == 1
    threading.Timer(0.15, a._written, args=(first,)).start()
    t0 = time.monotonic()
    b._await_earlier(second)
    waited = time.monotonic() - t0
    assert 0.1 <= waited < 2.0, waited  # until the write, not the bound
    assert b.count("clear") == 1 and b.count("timeout") == 0
    b._written(second)
    assert b.store.still_in_flight([first.token, second.token]) == []


def test_a_batch_never_written_is_waited_for_once_then_given_up(redis_url: str, redis_prefix: str) -> None:
    dead, live = Member(redis_url, redis_prefix, 100), Member(redis_url, redis_prefix, 100)
    orphan = polled(dead)  # its member dies: never written, never deregistered
    t0 = time.monotonic()
    one = polled(live)
    live._await_earlier(one)
    assert 0.09 <= time.monotonic() - t0 < 1.0
    assert live.count("timeout") == 1
    live._written(one)
    two = polled(live)
    assert orphan.token in two.earlier
    t1 = time.monotonic()
    live._await_earlier(two)  # the same orphan again: not waited for
    assert time.monotonic() - t1 < 0.05 and live.count("none") == 1
    live._written(two)


def test_a_member_never_waits_for_its_own_earlier_batch(redis_url: str, redis_prefix: str) -> None:
    """A member handles its batches in order: the one polled while another is in flight is decided after
    that one's write, so it needs no Redis round trip to check."""
    m = Member(redis_url, redis_prefix, 200)
    first, second = polled(m), polled(m)
    assert second.earlier == []
    m._await_earlier(first)
    m._written(first)
    m._await_earlier(second)
    assert m.count("none") == 2 and m.count("clear") == 0


def test_waiting_off_registers_nothing(redis_url: str, redis_prefix: str) -> None:
    m = Member(redis_url, redis_prefix, 0)
    batch = polled(m)
    assert not batch.registered
    m._await_earlier(batch)
    assert polled(Member(redis_url, redis_prefix, 200)).earlier == []
