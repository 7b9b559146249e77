"""The service's side of batches in flight across the group (`consumer.store.inflight`): twins polled a
moment apart by two members are decided together instead of joined afterwards by a late link.

A mixin of `Service`, apart from the batch state machine in `consumer.service.runner`: a polled batch is
decoded, its encoding started and registered (`_prefetch`, `_register_in_flight`); records polled while it
waits join it (`_joins`); before it is decided it waits for the batches registered before it to be
written (`_await_earlier`, at most `service.freshness_wait_ms`; the changelog sync that follows then holds
their records), and is deregistered once its Redis write returned or it was dropped (`_written`). Redis
errors here never stop a batch: it is decided without waiting, and the late link remains the safety net.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import Message

from consumer.config import ServiceSettings, Settings
from consumer.engine.pipeline import Pipeline
from consumer.service.batch import Batch
from consumer.store.redis import RETRYABLE, RedisStateStore
from consumer.telemetry.metrics import Metrics

__all__ = ["FreshnessDuties"]

log = logging.getLogger("dedup.service")

#: Tokens a member stopped waiting for (a member that died mid-batch): not waited for again. Bounded.
GIVEN_UP_KEEP = 1024


class FreshnessDuties:
    """Mixed into `Service`; the attributes below are the service's."""

    svc: ServiceSettings
    settings: Settings
    pipe: Pipeline | None
    _pending: Batch | None
    store: RedisStateStore
    metrics: Metrics
    _warn: Callable[..., None]
    #: Tokens this member stopped waiting for, and its own batches registered and not yet written (handled
    #: in order, so never waited for: each is written before the next one is decided).
    _given_up: dict[str, None]
    _mine: set[str]

    def _joins(self, msgs: list[Message]) -> bool:
        """Add records polled while a batch waits to that batch, when both fit in `max_batch`: else they
        would wait for it *and* then for their own batch, a third of a record's latency below full load (at
        full load the waiting batch is full: the encoder overlaps the deciding thread as before). They ride
        on the waiting batch's in-flight registration, made earlier: later batches wait for them too."""
        pending = self._pending
        assert pending is not None and self.pipe is not None
        if pending.abandoned or len(pending.messages) + len(msgs) > self.svc.max_batch:
            return False
        more = Batch(msgs)
        with self.metrics.time_stage("decode"):
            more.decode(self.settings)
        pending.join(more)
        if more.good:
            pending.encoded = self.pipe.encode_in_worker([r for _, r in more.good], joining=pending.encoded)
        return True

    def _prefetch(self, batch: Batch) -> Batch:
        """Decode a polled batch and start encoding its good records on the worker thread."""
        with self.metrics.time_stage("decode"):
            batch.decode(self.settings)
        if batch.good and self.pipe is not None:
            batch.encoded = self.pipe.encode_in_worker([r for _, r in batch.good])
        self._register_in_flight(batch)  # from now on, batches polled later by the group wait for this one
        return batch

    def _register_in_flight(self, batch: Batch) -> None:
        """Register a polled batch that has records to decide (once; a retried batch keeps its place)."""
        if self.svc.freshness_wait_ms <= 0 or not batch.good or batch.registered:
            return
        try:
            earlier = self.store.register_batch(batch.token, int(time.time() * 1000))
        except RETRYABLE as exc:
            self._warn("redis", "batch not registered in flight", error=type(exc).__name__)
            return
        batch.earlier = [t for t in earlier if t not in self._mine]
        batch.registered = True
        self._mine.add(batch.token)

    def _await_earlier(self, batch: Batch) -> None:
        """Wait (bounded) until the group's batches registered before this one are written."""
        if not batch.registered:
            return
        waiting = [t for t in batch.earlier if t not in self._given_up]
        batch.earlier = []
        if not waiting:
            self.metrics.freshness_waits.labels(result="none").inc()
            return
        t0 = time.monotonic()
        result = "clear"
        try:
            waiting = self.store.wait_written(waiting, self.svc.freshness_wait_ms / 1000.0)
        except RETRYABLE:
            result = "error"
            waiting = []
        if waiting:
            result = "timeout"
            for token in waiting:
                self._given_up[token] = None
            while len(self._given_up) > GIVEN_UP_KEEP:
                del self._given_up[next(iter(self._given_up))]
            log.info("decided without earlier batches still in flight", extra={"batches": len(waiting)})
        self.metrics.freshness_waits.labels(result=result).inc()
        self.metrics.freshness_wait.observe(time.monotonic() - t0)

    def _written(self, batch: Batch | None, by_write: bool = False) -> None:
        """The batch's Redis write returned, or it was dropped: deregister it (idempotent). `by_write`: the
        batch script deregistered it already, with its state (no round trip of its own)."""
        if batch is None or not batch.registered:
            return
        batch.registered = False
        self._mine.discard(batch.token)
        if by_write:
            return
        try:
            self.store.batch_written(batch.token)
        except RETRYABLE as exc:  # left behind: the others stop waiting for it after freshness_wait_ms
            self._warn("redis", "batch not deregistered", error=type(exc).__name__)
