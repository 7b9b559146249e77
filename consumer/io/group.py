"""The service's consumer-group membership: micro-batch polling, pausing during retries, offset bookkeeping.

Kept apart from `consumer.service.runner` so the loop there reads as batch semantics only. What lives here is the
Kafka-side state of one member and the rules that keep it safe:

- offsets are recorded as *done* only by the caller, after a batch is in Redis and its output acknowledged;
  done offsets are committed asynchronously after each batch and synchronously on revoke and at close;
- while a batch is being retried the assigned partitions are paused and the consumer keeps polling, so
  the member stays in the group (max.poll.interval.ms) and rebalance callbacks still run;
- a partition's pause flag survives unassign/assign in librdkafka, so a partition is resumed before it is
  given up (otherwise it would come back paused after the rebalance and never be fetched again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from consumer.io.kafka import consumer_lag, make_consumer, offsets_to_commit

__all__ = ["TP", "GroupMember"]

log = logging.getLogger("dedup.service")
TP = tuple[str, int]


class GroupMember:
    """One consumer in the group; `properties` already include any DEDUP_KAFKA_* settings.

    Callbacks: `on_assigned(partitions)`; `on_gone(partitions, lost)`, called before anything is committed for
    them; `warn(kind, message, **extra)`, rate-limited logging."""

    def __init__(self, bootstrap: str, group: str, topics: list[str], *, properties: Mapping[str, Any],
                 on_assigned: Callable[[set[TP]], None], on_gone: Callable[[set[TP], bool], None],
                 error_cb: Callable[[KafkaError], None], warn: Callable[..., None]) -> None:
        self._on_assigned, self._on_gone, self._warn = on_assigned, on_gone, warn
        self.assigned: set[TP] = set()
        self._paused: list[TopicPartition] = []
        self._stash: list[Message] = []
        self._done: dict[TP, int] = {}  # acknowledged, maybe not yet committed: next offset per partition
        self.consumer: Consumer = make_consumer(
            bootstrap, group, topics, on_assign=self._assign, on_revoke=self._revoke, on_lost=self._lost,
            error_cb=error_cb, extra={**properties, "on_commit": self._committed}, environ={})

    # -- rebalance ----------------------------------------------------------------------------------------
    def _assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned |= {(tp.topic, tp.partition) for tp in partitions}
        log.info("partitions assigned", extra={"partitions": sorted(self.assigned)})
        self._on_assigned(self.assigned)

    def _revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("partitions revoked", extra={"partitions": [(p.topic, p.partition) for p in partitions]})
        self._drop(partitions, lost=False)

    def _lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("partitions lost", extra={"partitions": [(p.topic, p.partition) for p in partitions]})
        self._drop(partitions, lost=True)

    def _drop(self, partitions: list[TopicPartition], lost: bool) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._on_gone(gone, lost)
        if not lost:  # a lost partition may already belong to another member: never commit for it
            self.commit_done(sync=True, only=gone)
        for tp in gone:
            self._done.pop(tp, None)
        self._stash = [m for m in self._stash if (m.topic(), m.partition()) not in gone]
        leaving = [tp for tp in self._paused if (tp.topic, tp.partition) in gone]
        if leaving:
            try:
                self.consumer.resume(leaving)
            except KafkaException as exc:
                log.warning("resume on revoke failed", extra={"error": str(exc.args[0])})
        self._paused = [tp for tp in self._paused if (tp.topic, tp.partition) not in gone]
        self.assigned -= gone

    # -- offsets ------------------------------------------------------------------------------------------
    def mark_done(self, messages: list[Message]) -> None:
        """The batch is in Redis and its output acknowledged: its offsets may be committed."""
        for tp in offsets_to_commit(messages):
            key = (tp.topic, tp.partition)
            if key in self.assigned:
                self._done[key] = max(tp.offset, self._done.get(key, -1))

    def commit_done(self, sync: bool, only: set[TP] | None = None) -> None:
        """Commit done offsets. Asynchronous after each batch: a synchronous commit blocks for up to the
        session timeout while the broker is unreachable. Synchronous on revoke and at close."""
        offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(self._done.items())
                   if only is None or (t, p) in only]
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=not sync)
        except KafkaException as exc:
            self._warn("commit", "offset commit failed (a replay covers it)", error=str(exc.args[0]))
            return
        if sync:
            for tp in offsets:
                if self._done.get((tp.topic, tp.partition)) == tp.offset:
                    del self._done[(tp.topic, tp.partition)]

    def _committed(self, err: KafkaError | None, _partitions: list[TopicPartition]) -> None:
        if err is not None:
            self._warn("commit", "offset commit failed (a later one or a replay covers it)", error=err.name())

    # -- polling ------------------------------------------------------------------------------------------
    def collect(self, max_batch: int, max_wait_ms: int, first_wait: float = 0.5) -> list[Message]:
        """Up to `max_batch` messages: the first waits up to `first_wait` s and, when it had to be waited
        for, the rest up to `max_wait_ms` (stopping early when `max_batch` is reached).

        Messages already queued when called (they arrived while the last batch was decided) are taken
        without the fill wait: they have waited a batch already, and waiting for more only adds to it. The
        wait is for a consumer that was idle, where one record alone would make a batch of one."""
        batch, self._stash = self._stash[:max_batch], self._stash[max_batch:]
        waited = False
        if not batch:
            first = self._good(self.consumer.poll(0))
            if first is None:
                waited = True
                first = self._good(self.consumer.poll(first_wait))
            if first is None:
                return []
            batch.append(first)
        deadline = time.monotonic() + (max_wait_ms / 1000 if waited else 0.0)
        while len(batch) < max_batch:
            more = [m for m in map(self._good, self.consumer.consume(max_batch - len(batch), 0)) if m is not None]
            batch += more
            remaining = deadline - time.monotonic()
            if len(batch) >= max_batch or remaining <= 0:
                break
            if not more:
                nxt = self._good(self.consumer.poll(remaining))
                if nxt is None:
                    break
                batch.append(nxt)
        return batch

    def _good(self, msg: Message | None) -> Message | None:
        if msg is None:
            return None
        err = msg.error()
        if err is None:
            return msg
        self._warn(f"consume:{err.name()}", "consume error", error=err.name())
        return None

    def idle(self, seconds: float, beat: Callable[[], None]) -> None:
        """Wait while serving the group (rebalance callbacks, max.poll.interval) with partitions paused;
        a message from a partition assigned meanwhile is kept for the next batch."""
        beat()
        if not self._paused and self.assigned:
            self._paused = [TopicPartition(t, p) for t, p in sorted(self.assigned)]
            self.consumer.pause(self._paused)
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            msg = self._good(self.consumer.poll(min(left, 0.1)))
            if msg is not None:
                self._stash.append(msg)
            beat()

    def resume(self) -> None:
        """Undo `idle`'s pause (after the batch finished or was dropped)."""
        if self._paused:
            try:
                self.consumer.resume(self._paused)
            except KafkaException as exc:
                log.warning("resume failed", extra={"error": str(exc.args[0])})
        self._paused = []

    def lag(self) -> dict[TP, int]:
        return consumer_lag(self.consumer)

    def probe(self, timeout: float = 1.0) -> bool:
        """A metadata round trip: whether the broker answers (error_cb only ever reports it gone)."""
        try:
            self.consumer.list_topics(timeout=timeout)
            return True
        except KafkaException:
            return False

    def close(self, leave_seconds: float = 10.0) -> None:
        """Commit what is done (synchronously), leave the group, close the consumer.

        The group is left through `unsubscribe` and `poll` first, so the revoke runs on the normal path and
        `close` finds nothing to revoke. Why: a revoke served *inside* `close` calls librdkafka's
        `rd_kafka_rebalance_protocol()`, which can wait forever there (librdkafka issue 4041), and the
        Python client holds the GIL while it does: one CI run froze its whole process in a member's
        shutdown. Messages polled while leaving are not done, so the next owner reads them again."""
        self.commit_done(sync=True)
        try:
            self.consumer.unsubscribe()
            deadline = time.monotonic() + leave_seconds
            while self.assigned and time.monotonic() < deadline:
                self.consumer.poll(0.1)  # serves the revoke: on_revoke commits anything done meanwhile
        except (KafkaException, RuntimeError) as exc:
            log.warning("leaving the group failed", extra={"error": str(exc.args[0]) if exc.args else ""})
        try:
            self.consumer.close()
        except KafkaException as exc:
            log.warning("consumer close failed", extra={"error": str(exc.args[0])})
