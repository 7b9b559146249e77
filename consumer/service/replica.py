"""The service's replica duties, apart from the batch state machine in `consumer.service.runner`: tail the group's
changelog (absorb the other members' records, link simultaneous twins), and write/load snapshots.

A mixin of `Service` (it uses the service's store, pipeline, metrics and `_retry`), kept in its own module
so `consumer.service.runner` stays the one place for the ordering rules of a batch. See docs/scale-out.md.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from typing import Any

from consumer.config import ServiceSettings, Settings, key_id
from consumer.engine.erasure import Erased
from consumer.engine.pipeline import Pipeline
from consumer.io.events import utc_iso
from consumer.io.kafka import TrackedProducer
from consumer.service.batch import Batch, assemble
from consumer.service.changelog import LateLink, Replica
from consumer.service.snapshot import SnapshotInfo, load_snapshot, save_snapshot
from consumer.service.sync import (
    RENAME_ATTEMPTS,
    clusters_to_resolve,
    freshen,
    late_link_outputs,
    late_link_write,
    resolved_link,
)
from consumer.store.erasure import LOG_PAGE
from consumer.store.redis import RETRYABLE, ChangelogTrimmed, MergesMoved, RedisStateStore
from consumer.telemetry.metrics import Metrics

__all__ = ["ReplicaDuties"]

log = logging.getLogger("dedup.service")


class ReplicaDuties:
    """Mixed into `Service`; the attributes below are the service's."""

    settings: Settings
    svc: ServiceSettings
    pipe: Pipeline | None
    store: RedisStateStore
    metrics: Metrics
    producer: TrackedProducer | None
    replica: Replica
    _reload_needed: bool
    _next_snapshot: float
    _retry: Callable[..., Any]
    _warn: Callable[..., None]
    _after_erasures: Callable[[list[tuple[int, Erased]], Batch | None], None]
    _housekeeping: Callable[[], None]
    _snapshot_written: Callable[[str, int], None]
    _deferred_erasures: list[tuple[int, Erased]]

    def _load_snapshot(self, pipe: Pipeline, log_length: int) -> SnapshotInfo | None:
        """The newest usable snapshot into `pipe` (None: none, other settings, or newer than Redis's log,
        i.e. Redis was reset since: then Redis is the truth)."""
        if not self.svc.snapshot_dir:
            return None
        expect = {"config_version": pipe.config_version, "key_id": key_id(self.settings.encoders.hash_key),
                  "redis_prefix": self.store.prefix}
        try:
            snap = load_snapshot(pipe, self.svc.snapshot_dir, expect)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("snapshot unreadable, loading from redis", extra={"error": type(exc).__name__})
            snap = None
        if snap is not None and snap.position > log_length:
            log.warning("snapshot is ahead of redis (redis reset?), loading from redis")
            return None
        if snap is not None and snap.position < self._retry("redis", "read log base", self.store.log_base):
            # The changelog it needs was trimmed: useless from now on, and it may hold erased records.
            log.warning("snapshot older than the trimmed changelog, loading from redis; deleting it")
            shutil.rmtree(snap.path, ignore_errors=True)
            return None
        return snap

    def _maybe_snapshot(self, force: bool = False) -> None:
        """Write a snapshot when one is due (between batches: every row is in Redis then)."""
        if (not self.svc.snapshot_dir or self.pipe is None or self._reload_needed
                or not (force or time.monotonic() >= self._next_snapshot)):
            return
        self._next_snapshot = time.monotonic() + self.svc.snapshot_interval_seconds
        t0 = time.perf_counter()
        try:
            info = save_snapshot(self.pipe, self.replica.position, self.svc.snapshot_dir, {
                "config_version": self.pipe.config_version, "key_id": key_id(self.settings.encoders.hash_key),
                "redis_prefix": self.store.prefix, "model_version": self.pipe.model_version})
        except OSError as exc:
            self._warn("snapshot", "snapshot not written", error=type(exc).__name__)
            return
        log.info("snapshot written", extra={"records": info.records, "position": info.position,
                                            "seconds": round(time.perf_counter() - t0, 3)})
        try:
            self._snapshot_written(info.path.name, info.position)
        except (*RETRYABLE, OSError) as exc:
            self._warn("snapshot", "snapshot position not published", error=type(exc).__name__)


    # -- the group's other writes ------------------------------------------------------------------------
    def _sync(self, batch: Batch | None = None) -> None:
        """Tail the changelog: absorb the records and merges other members wrote, and link this member's
        own recent records to simultaneous twins decided elsewhere (late links: Redis, then events)."""
        pipe = self.pipe
        if pipe is None or self._reload_needed:
            return
        t0 = time.perf_counter()
        absorbed = 0
        while True:
            try:
                entries = self._retry("redis", "read changelog",
                                      lambda: self.store.read_log(self.replica.position), batch)
            except ChangelogTrimmed:  # this member fell behind the trimmed log: rebuild instead of failing
                log.warning("changelog position trimmed, reloading state", extra={"position": self.replica.position})
                self._reload_needed = True
                return
            if not entries:
                break
            need = Replica.unknown(pipe, entries)
            states, written = (self._retry("redis", "fetch states", lambda n=need: self.store.fetch_states(n),
                                           batch) if need else ({}, {}))
            start = self.replica.position
            result = self.replica.apply(pipe, entries, states)
            absorbed += result.absorbed
            self.metrics.observe_replica_lag(written.values(), time.time())
            applied = []
            for found in result.links:
                link = self._write_late_link(found, batch)
                if link is not None:
                    applied.append(link)
            if applied:
                self._send_now(late_link_outputs(applied, pipe, start, time.time()), batch)
            if result.links:
                self.metrics.observe_late_links(len(applied), len(result.links) - len(applied))
                log.info("late links", extra={"found": len(result.links), "applied": len(applied)})
            if result.erased:
                self._after_erasures(result.erased, batch)
            if len(entries) < LOG_PAGE:  # the log's end when read: no second round trip to learn it
                break
        if absorbed:
            self.metrics.observe_sync(absorbed, time.perf_counter() - t0)
            self.metrics.index_size.set(len(pipe.store))
        if self._deferred_erasures and self.producer is not None:  # applied while loading: re-check now
            self._after_erasures([], batch)
        try:
            self._housekeeping()
        except RETRYABLE as exc:  # positions and trimming wait for the next turn
            self._warn("redis", "changelog housekeeping skipped", error=type(exc).__name__)

    def _name_and_assemble(self, batch: Batch) -> None:
        """Name the decisions' clusters as Redis knows them now (another member may have merged some
        meanwhile), then build the batch's events and its Redis write."""
        assert self.pipe is not None
        fresh = [d for d in batch.decisions if d.outcome != "replay"]
        ids = clusters_to_resolve(fresh)
        if ids:
            where = self._retry("redis", "resolve clusters", lambda: self.store.resolve_clusters(ids), batch)
            if freshen(fresh, where):
                log.debug("decisions renamed to current clusters")
        gens = self._retry("redis", "read generations", lambda: self.store.generations(
            [d.record_id for d in fresh], self.settings.encoders.hash_key), batch)
        assemble(batch, self.pipe, time.time(), gens)

    def _write_late_link(self, found: LateLink, batch: Batch | None) -> LateLink | None:
        """Write a late link named as Redis knows its clusters now; the link to announce, or None when
        another member merged them meanwhile. Named again when Redis refuses it (`MergesMoved`: merged in
        part meanwhile), at most `RENAME_ATTEMPTS` times, the last without that check."""
        for attempt in range(RENAME_ATTEMPTS):
            where = self._retry("redis", "resolve clusters", lambda f=found: self.store.resolve_clusters(
                [f.surviving_cluster_id, *f.merged_cluster_ids, f.match.cluster_id]), batch)
            link = resolved_link(found, where)
            if link is None:  # merged in Redis already (by another member meanwhile): nothing to announce
                return None
            write = late_link_write(link)
            write.check_merges = attempt < RENAME_ATTEMPTS - 1
            try:
                self._retry("redis", "write late link",
                            lambda w=write: self.store.write_batch(w, utc_iso(time.time())), batch)
            except MergesMoved:
                continue
            return link if write.applied_merges else None
        return None

    def _send_now(self, outputs: list[Any], batch: Batch | None) -> None:
        assert self.producer is not None
        producer, topic = self.producer, self.svc.events_topic

        def send() -> int:
            for out in outputs:
                producer.produce(topic, out.value, out.key, [("dedup.event.type", out.event_type),
                                                             ("dedup.event.id", out.event_id)])
            return producer.flush_and_check(timeout=2.0)

        self._retry("kafka", "produce late-link events", send, batch)
        for out in outputs:
            self.metrics.events.labels(type=out.event_type).inc()

