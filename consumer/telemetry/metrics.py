"""Every Prometheus instrument of the service, in one place, on a dedicated registry.

Why a dedicated `CollectorRegistry` (not prometheus_client's global one): tests and the benchmark create
several services in one process, and the global registry refuses a second instrument with the same name.
Each `Metrics()` owns its registry; the health server renders exactly that registry at /metrics.

Label values are bounded sets (stage names, event types, short reason codes, topic/partition): never a
record id or a field value, both for cardinality and because metrics leave the trust boundary.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from consumer.engine.stages import DECIDE_STAGES, SERVICE_STAGES
from consumer.io.events import EVENT_TYPES

__all__ = ["LATENCY_BUCKETS", "STAGES", "LATE_LINK_RESULTS", "EVENT_TYPES", "Metrics", "ApiMetrics", "API_ROUTES"]

#: 1 ms .. 10 s, roughly 1-2.5-5 per decade, denser from 100 ms to 1 s where a micro-batch service's
#: end-to-end p50..p99 lie (so the 250 ms objective can be read off the histogram, not interpolated).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)
#: Stage labels known before a pipeline exists: the pipeline's names (`consumer.engine.stages`), no renaming.
#: The encoders' stages (`encode_<name>`, one per encoder of the profile) are added by `declare_stages`.
STAGES: tuple[str, ...] = (*SERVICE_STAGES, *DECIDE_STAGES)
#: `dedup_late_links` results: how often twins decided apart needed the late-link rule, and whether this
#: member's link was the one that joined them (the freshness figure of issue 39 reads the applied ones).
LATE_LINK_RESULTS: tuple[str, ...] = ("applied", "already_merged")
#: `dedup_freshness_waits` results: how a batch waited for the group's batches registered before it
#: (consumer/store/inflight.py): none in flight, all written in time, or decided without them.
FRESHNESS_RESULTS: tuple[str, ...] = ("none", "clear", "timeout", "error")


class Metrics:
    """The service's instruments, bound to one registry.

    Stage and event-type label values are pre-created so dashboards and alerts see zeros instead of
    missing series before the first occurrence.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.end_to_end_latency = Histogram(
            "dedup_end_to_end_latency_seconds",
            "Kafka record timestamp to the moment its events were acknowledged by the broker.",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.stage_seconds = Histogram(
            "dedup_stage_seconds", "Wall time per micro-batch spent in each pipeline stage.",
            ["stage"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.records = Counter("dedup_records", "Input records processed (incl. dead-lettered).", registry=r)
        self.events = Counter("dedup_events", "Duplicate events produced, by type.", ["type"], registry=r)
        self.dead_letters = Counter(
            "dedup_dead_letters", "Input records sent to the dead-letter topic, by reason code.", ["reason"],
            registry=r,
        )
        self.index_size = Gauge("dedup_index_size", "Records held in the candidate index.", registry=r)
        self.batch_size = Gauge("dedup_batch_size", "Records in the last processed micro-batch.", registry=r)
        self.consumer_lag = Gauge(
            "dedup_consumer_lag", "Records between the consumer position and the high watermark.",
            ["topic", "partition"], registry=r,
        )
        self.ready = Gauge("dedup_ready", "1 when /readyz would answer 200, else 0.", registry=r)
        self.replica_records = Counter(
            "dedup_replica_records", "Records decided by other members and absorbed from the changelog.",
            registry=r)
        self.replica_seconds = Counter(
            "dedup_replica_seconds", "Seconds spent reading and absorbing other members' records.", registry=r)
        self.erasures = Counter(
            "dedup_erasures", "Erasure requests of the erasure topic, by result (erased, not_found, malformed), and "
            "erasures this member's replica applied (applied).", ["result"], registry=r)
        self.replica_lag = Histogram(
            "dedup_replica_lag_seconds", "Consistency window: a record written by another member -> absorbed "
            "into this member's replica (a candidate here from then on).", buckets=LATENCY_BUCKETS, registry=r)
        self.late_links = Counter(
            "dedup_late_links", "Twins decided at the same moment on two members, linked afterwards by this member's "
            "late-link rule, by result: applied (its merge changed Redis, a clusters.merged event was sent) or "
            "already_merged (another member or a later decision had joined them first).", ["result"], registry=r)
        self.freshness_waits = Counter(
            "dedup_freshness_waits", "Batches by how they waited, before deciding, for the group's batches polled "
            "before them and not yet written: none (nothing in flight), clear (all written in time), timeout "
            "(decided without them after service.freshness_wait_ms; the late link may then join twins), error "
            "(Redis did not answer).", ["result"], registry=r)
        self.freshness_wait = Histogram(
            "dedup_freshness_wait_seconds", "Time a batch waited for the group's earlier batches in flight (batches "
            "that had any).", buckets=LATENCY_BUCKETS, registry=r)
        self.startup_seconds = Gauge(
            "dedup_startup_seconds", "Seconds the last state load took (snapshot + changelog tail, or Redis).",
            registry=r)
        for stage in STAGES:
            self.stage_seconds.labels(stage=stage)
        for event_type in EVENT_TYPES:
            self.events.labels(type=event_type)
        for result in LATE_LINK_RESULTS:
            self.late_links.labels(result=result)
        for result in FRESHNESS_RESULTS:
            self.freshness_waits.labels(result=result)

    def declare_stages(self, stages: Iterable[str]) -> None:
        """Pre-create series for a pipeline's stages (its encoders' names are known only once built)."""
        for stage in stages:
            self.stage_seconds.labels(stage=stage)

    def observe_stages(self, seconds: Mapping[str, float]) -> None:
        """One micro-batch's seconds per stage (`StageTimer.since`), under the pipeline's stage names."""
        for stage, value in seconds.items():
            self.stage_seconds.labels(stage=stage).observe(value)

    def observe_sync(self, records: int, seconds: float) -> None:
        """One changelog sync: how many foreign records it absorbed and how long it took."""
        self.replica_records.inc(records)
        self.replica_seconds.inc(seconds)

    def observe_late_links(self, applied: int, already_merged: int) -> None:
        """One sync's late links: `applied` merged two clusters in Redis (and were announced), `already_merged`
        found them joined there already (nothing written or announced)."""
        self.late_links.labels(result="applied").inc(applied)
        self.late_links.labels(result="already_merged").inc(already_merged)

    def observe_replica_lag(self, written_iso: Iterable[str], now: float) -> None:
        """Per absorbed record: now - the time its writer stored it (same clock when on one host; across
        hosts it includes their clock skew)."""
        for when in written_iso:
            if when:
                t = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
                self.replica_lag.observe(max(now - t, 0.0))

    @contextmanager
    def time_stage(self, stage: str) -> Iterator[None]:
        """`with metrics.time_stage("encode"): ...` observes the block's wall time (also on exceptions)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds.labels(stage=stage).observe(time.perf_counter() - start)

    def observe_end_to_end(self, record_timestamp_ms: int, now: float | None = None) -> None:
        """Record timestamp -> now (call once the event is acknowledged). Ignores missing timestamps (<= 0)
        and clamps clock skew between producer and this host to 0 rather than dropping the sample."""
        if record_timestamp_ms <= 0:
            return
        now = time.time() if now is None else now
        self.end_to_end_latency.observe(max(now - record_timestamp_ms / 1000.0, 0.0))

    def set_lag(self, lag: Mapping[tuple[str, int], int]) -> None:
        """Publish per-partition lag (e.g. from `consumer.io.kafka.consumer_lag`); unknown (-1) is skipped."""
        for (topic, partition), value in lag.items():
            if value >= 0:
                self.consumer_lag.labels(topic=topic, partition=str(partition)).set(value)

    def forget_partitions(self, partitions: list[tuple[str, int]]) -> None:
        """Drop lag series of revoked partitions so a stale value is not reported forever."""
        for topic, partition in partitions:
            try:
                self.consumer_lag.remove(topic, str(partition))
            except KeyError:
                pass

    def render(self) -> bytes:
        """The registry in Prometheus text exposition format."""
        return generate_latest(self.registry)


#: The /v1 API's routes (URI templates: a bounded label set, never an id).
API_ROUTES: tuple[str, ...] = ("/v1/score", "/v1/records/{record_id}/cluster", "/v1/clusters/{cluster_id}",
                               "/openapi.json", "/v1/records/{record_id}")


class ApiMetrics:
    """Instruments of the /v1 API (`consumer.api.app`), on the registry of the server it is added to (the
    service's own beside `dedup run`). Labels: the route's template and the status code."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("dedup_api_requests", "API requests answered, by route and status code.",
                                ["route", "status"], registry=registry)
        self.seconds = Histogram("dedup_api_request_seconds", "API request handling time, by route.", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=registry)
        for route in API_ROUTES:
            self.seconds.labels(route=route)

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, status=str(status)).inc()
        self.seconds.labels(route=route).observe(seconds)
