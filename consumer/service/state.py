"""The service's state loading, apart from the batch state machine in `consumer.service.runner`: build the pipeline
(artifacts loaded once), restore it from a snapshot plus the changelog tail or from a full Redis scan, check
the stored meta, and reload when this member's state diverged from Redis.

A mixin of `Service` (it uses the service's store, health, metrics, `_retry` and `_sync`), kept in its own
module so `consumer.service.runner` stays the one place for the ordering rules of a batch.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import Any

from consumer.api.health import HealthState
from consumer.config import ServiceSettings, Settings, key_id
from consumer.engine.blocking import IndexFactory
from consumer.engine.pipeline import Pipeline
from consumer.engine.state import restore
from consumer.io.artifacts import Artifacts, load_artifacts, warm_kernels
from consumer.io.group import GroupMember
from consumer.service.changelog import Replica
from consumer.service.shared_index import RECENT_INDEX_ROWS
from consumer.service.snapshot import SnapshotInfo, rss_bytes
from consumer.store.redis import RedisStateStore
from consumer.telemetry.metrics import Metrics

__all__ = ["StateLoading", "encoder_models", "freeze_survivors"]

log = logging.getLogger("dedup.service")


#: Seconds between two collect-and-freeze passes after batches (`freeze_survivors`).
FREEZE_EVERY_SECONDS = 0.5
_last_freeze = [float("-inf")]


def encoder_models(pipe: Pipeline) -> str:
    """The pipeline's image model as "role:sha256-prefix" (e.g. "image:8e7e7d51270b"; "" without one), for
    the stored meta.

    Why: a stored vector is only comparable with vectors of the model that made it. A new model (the image
    model's input went from 224 to 160 pixels) leaves the state's vectors from the old one, which no setting
    shows; the service says so at start instead of matching photos across two models in silence. The text
    model is not named: its int8, fp16 and static forms are one model by design (parity-tested), chosen per
    machine, so members on different machines share a state. An encoder whose keyed word hashes changed
    meaning names how it keys them ("title:words-swap5", `keying`): hashes of words keyed otherwise match
    none of the new ones, which no setting shows either."""
    ids = set()
    for enc in pipe.encoders:
        entry = getattr(getattr(enc, "model", None), "entry", None)
        if isinstance(entry, dict) and entry.get("sha256"):
            ids.add(f"{enc.name}:{str(entry['sha256'])[:12]}")
        if getattr(enc, "keying", None):
            ids.add(f"{enc.name}:words-{enc.keying}")
    return ",".join(sorted(ids))


def freeze_survivors(thaw: bool = False, every: float = FREEZE_EVERY_SECONDS) -> bool:
    """Collect the recent batches' cyclic garbage, then move what survived (the growing cluster state) out
    of the collector's reach; returns whether it ran. Why: CPython's full collections rescan every tracked
    object; with ~35k records of state one took 140-150 ms, a whole batch's latency budget, several times a
    minute. After a freeze a full collection sees only objects newer than the last freeze (measured 0.02-3
    ms). At most once per `every` seconds: a pass costs ~0.4 ms however small the batch, and at 300
    records/s a member decides batches of a few records (3-7% of its CPU when it ran after every batch).
    `thaw` (after a state reload) runs at once, first unfreezing, so the replaced state can be collected."""
    now = time.monotonic()
    if not thaw and now - _last_freeze[0] < every:
        return False
    if thaw:
        gc.unfreeze()
    gc.collect()
    gc.freeze()
    _last_freeze[0] = now
    return True


class StateLoading:
    """Mixed into `Service`; the attributes below are the service's."""

    settings: Settings
    svc: ServiceSettings
    health: HealthState
    metrics: Metrics
    store: RedisStateStore
    pipe: Pipeline | None
    replica: Replica
    member: GroupMember | None
    state_source: str
    _text_encoder: Any
    _artifacts: Artifacts | None
    _reload_needed: bool
    _check_count: bool
    _next_snapshot: float
    _retry: Callable[..., Any]
    _sync: Callable[..., None]
    _load_snapshot: Callable[[Pipeline, int], SnapshotInfo | None]
    _hold_log: Callable[[], None]
    _index_factory: Callable[[], IndexFactory | None]
    _bind_index: Callable[[Pipeline], None]
    _backfill: Callable[[Pipeline], None]

    # -- state ------------------------------------------------------------------------------------------
    def _new_pipeline(self) -> Pipeline:
        """A fresh pipeline around the artifacts loaded once (the first time), so a state reload never
        reloads the transformer or unpickles the model again."""
        if self._artifacts is None:
            self._artifacts = load_artifacts(self.settings, text_encoder=self._text_encoder,
                                             encode_in_background=True)
        a = self._artifacts
        # On a shared Milvus collection the index-only columns of old rows are Milvus's and Redis's to hold.
        shared = self.settings.index.backend == "milvus"
        pipe = Pipeline(self.settings, a.text_encoder, a.model, encode_in_background=True,
                        image_encoder=a.image_encoder, index_factory=self._index_factory(),
                        hold_index_only=not shared,
                        recent_index_rows=max(RECENT_INDEX_ROWS, 4 * self.svc.max_batch) if shared else 0)
        pipe.payloads_ahead = True  # every decision is persisted: its payload is compressed on the encode thread
        warm_kernels(pipe)
        self._bind_index(pipe)
        return pipe

    def _load_state(self) -> None:
        """Restore the pipeline from Redis (retrying until Redis answers); readiness waits for it."""
        self.health.set_index_loaded(False)
        pipe = self._new_pipeline()
        t0 = time.perf_counter()
        # The log position first: whatever is written during the scan is in the scan and/or the tail,
        # and the tail skips records already held.
        position = self._retry("redis", "read log position", self.store.log_length)
        self._retry("redis", "hold the changelog", self._hold_log)  # nobody trims past us while we load
        snap = self._load_snapshot(pipe, position)
        if snap is None and len(pipe.store):  # a snapshot half loaded, then refused: start clean
            pipe.close(wait=False)
            pipe = self._new_pipeline()
        if snap is not None:
            source, position = "snapshot", snap.position
        else:
            source = "redis"
            restore(pipe, self._retry("redis", "load state", self.store.load_states))
        self._backfill(pipe)  # an empty shared collection (a new Milvus): this state's vectors, once
        self.replica = Replica(position)
        #: Where the last state load came from: "snapshot" (+ changelog tail) or "redis" (a full rebuild).
        self.state_source = source
        self.metrics.declare_stages(pipe.batch_stages)
        old, self.pipe = self.pipe, pipe
        if old is not None:
            old.close(wait=False)  # its threads end after any in-flight work instead of idling forever
        meta = self._retry("redis", "read meta", self.store.get_meta)
        if meta.get("config_version") not in (None, pipe.config_version):
            log.warning("stored state was written with another config",
                        extra={"stored": meta.get("config_version"), "current": pipe.config_version})
        models = encoder_models(pipe)
        if meta.get("encoder_models") not in (None, models):  # vectors of two models are not comparable
            log.error("stored state was encoded with other models: re-encode it (docs/security.md, rotation)",
                      extra={"stored": meta.get("encoder_models"), "current": models})
        kid = key_id(self.settings.encoders.hash_key)
        if meta.get("key_id") not in (None, kid):  # new hashes would never match the stored ones
            log.error("stored state was written with another hash_key: re-encode it (docs/security.md)",
                      extra={"stored": meta.get("key_id"), "current": kid})
        self._retry("redis", "write meta", lambda: self.store.set_meta(
            {"model_version": pipe.model_version, "config_version": pipe.config_version, "key_id": kid,
             "encoder_models": models}))
        self._reload_needed = self._check_count = False
        self._sync()  # the changelog tail since the snapshot (or the scan): ready only once it is applied
        pipe.blocker.settle()  # and the index holds all of it (inserts run on a background thread)
        self.metrics.index_size.set(len(pipe.store))
        freeze_survivors(thaw=True)  # the replaced pipeline, if any, is garbage now: collect it first
        took = time.perf_counter() - t0
        self.metrics.startup_seconds.set(took)
        self._next_snapshot = time.monotonic() + self.svc.snapshot_interval_seconds
        self.health.set_index_loaded(True)
        log.info("state loaded", extra={"records": len(pipe.store), "clusters": len(pipe.clusters.members),
                                        "source": source, "seconds": round(took, 3),
                                        "rss_mb": round(rss_bytes() / 2**20)})

    def _maybe_reload(self) -> None:
        """Reload when this member's state diverged from Redis (a dropped batch, another member's writes)."""
        try:
            if not self._reload_needed:
                self._check_count = False
                self._sync()  # another member may have written records meanwhile: the log has them
                return
            self._load_state()
        finally:
            if self.member is not None:
                self.member.resume()  # a retry above paused the partitions while Redis was away
