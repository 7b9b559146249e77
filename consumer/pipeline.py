"""The core path every runner shares: records in, decisions out, no I/O.

    encode (per modality) -> block (HNSW + same batch) -> compare -> fuse -> cluster -> keeper

`dedup batch` and `dedup run` differ only in the source and sink around `Pipeline.process`, which keeps
batch and stream results identical. Records are *encoded* a micro-batch at a time (the transformer is far
faster batched) but *decided* one by one in arrival order: each record sees every earlier record, those
already in the index and those earlier in its own batch, so batch boundaries do not change who is compared.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from consumer.blocking import Blocker, index_vectors
from consumer.clustering import ClusterState, cluster_id_for
from consumer.comparison import Comparator
from consumer.config import Settings
from consumer.encoders.base import Columns
from consumer.encoders.behaviour import BehaviourEncoder
from consumer.encoders.device import DeviceEncoder
from consumer.encoders.names import NameEncoder
from consumer.encoders.semantic import SemanticEncoder
from consumer.frequencies import FrequencyTable
from consumer.fusion import MODALITIES, Fuser, LearnedModel
from consumer.keeper import choose_canonical
from consumer.records import Record
from consumer.store.memory import SignatureStore

__all__ = ["Match", "Decision", "Encoded", "Pipeline"]


def _cores() -> int:
    """Cores this process may use (cgroup/affinity aware, unlike os.cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS/Windows
        return max(1, os.cpu_count() or 1)


def _num(x: float) -> float | None:
    return None if x != x else round(float(x), 4)  # NaN -> None (modality absent)


@dataclass
class Match:
    """A scored link to an earlier record: the explanation travels with every decision."""

    record_id: str
    cluster_id: str
    fused: float
    decision: str  # "match" | "possible"
    scores: dict[str, float | None]

    def to_dict(self) -> dict[str, Any]:
        return {"record_id": self.record_id, "cluster_id": self.cluster_id, "fused": self.fused,
                "decision": self.decision, "scores": self.scores}


@dataclass
class Encoded:
    """A micro-batch's encoder output, computed ahead of `process` (see `Pipeline.process_stream`)."""

    record_ids: list[str]
    cols: Columns


@dataclass
class Decision:
    record_id: str
    cluster_id: str
    canonical_id: str
    outcome: str  # "new" | "joined" | "merged" | "replay"
    row: int
    merged_cluster_ids: list[str] = field(default_factory=list)
    matches: list[Match] = field(default_factory=list)
    #: Clusters whose canonical record changed because of this decision (cluster id -> canonical id).
    canonical_changes: dict[str, str] = field(default_factory=dict)

    @property
    def decision(self) -> str:
        """replay | duplicate (joined or bridged a cluster) | possible_duplicate (links held for review) |
        unique."""
        if self.outcome in ("replay", "joined", "merged"):
            return "duplicate" if self.outcome != "replay" else "replay"
        return "possible_duplicate" if self.matches else "unique"

    def to_dict(self) -> dict[str, Any]:
        return {"record_id": self.record_id, "cluster_id": self.cluster_id, "canonical_id": self.canonical_id,
                "decision": self.decision, "outcome": self.outcome,
                "merged_cluster_ids": self.merged_cluster_ids,
                "matches": [m.to_dict() for m in self.matches]}


class Pipeline:
    """Holds the encoders, index and cluster state; `process` advances them by a micro-batch."""

    def __init__(self, settings: Settings, text_encoder: Any = None, model: LearnedModel | None = None, *,
                 encode_in_background: bool = False):
        """`encode_in_background`: the caller will use `process_stream`, so encoding runs on a worker
        thread beside the deciding thread. Automatic thread counts then split the cores instead of letting
        both sides claim all of them: the transformer gets cores - 1 and the decide thread's knn queries,
        BLAS and OpenMP (the fusion model) get 1. Oversubscribing 2 cores that way measured ~15% slower
        (benchmarks/bench_batch.py). Thread counts change speed only, never results."""
        self.settings = settings
        enc = settings.encoders
        self.encode_in_background = encode_in_background
        cores = _cores()
        if text_encoder is None:
            from consumer.encoders.text import TextEncoder  # heavy (onnxruntime): load only when used

            threads = enc.threads or (max(1, cores - 1) if encode_in_background else None)
            text_encoder = TextEncoder(model_dir=enc.model_dir, dim=enc.text_dim, device=enc.device,
                                       threads=threads)
        self.text = text_encoder
        self.encoders = [SemanticEncoder(text_encoder),
                         NameEncoder(enc.hash_key, n_keys=len(settings.profile.key_fields)),
                         BehaviourEncoder(), DeviceEncoder(enc.hash_key)]
        self.comparator = Comparator(self.encoders)
        self.fuser = Fuser(settings.fusion, model)
        self.blocker = Blocker(self.text.dim, settings.index, query_threads=1 if encode_in_background else cores,
                               background_add=encode_in_background)
        self.frequencies = FrequencyTable()
        self.store = SignatureStore()
        self.clusters = ClusterState()
        self.canonical: dict[int, int] = {}
        self.stage_seconds: dict[str, float] = defaultdict(float)
        self._encode_lock = threading.Lock()
        self._encode_pool: ThreadPoolExecutor | None = None
        #: When a list, every scored candidate set is appended as (row, candidate rows, features):
        #: training data for `dedup train` and the input of candidate-recall measurement.
        self.pair_log: list[tuple[int, np.ndarray, np.ndarray]] | None = None
        self.model_version = self.fuser.version
        self.config_version = settings.fingerprint()

    # -- encoding -------------------------------------------------------------------------------------
    def encode(self, records: Sequence[Record]) -> Columns:
        # The encoders' caches are not thread-safe; the lock matters only when `process` has to encode
        # (its batch was not encoded ahead) while the worker encodes the next one.
        cols: Columns = {}
        with self._encode_lock:
            for enc in self.encoders:
                t0 = time.perf_counter()
                cols.update(enc.encode(records))
                self.stage_seconds[f"encode_{enc.name}"] += time.perf_counter() - t0
        return cols

    def _fresh(self, records: Sequence[Record]) -> list[Record]:
        """Records whose id is neither known nor earlier in the same batch."""
        fresh: list[Record] = []
        seen: set[str] = set()
        for r in records:
            if r.record_id not in self.store.row_of and r.record_id not in seen:
                seen.add(r.record_id)
                fresh.append(r)
        return fresh

    def encode_ahead(self, records: Sequence[Record]) -> Encoded:
        """Encode a batch before its turn. Touches only the encoders (and their caches), never the index,
        store or clusters, so it may run in another thread while the previous batch is being decided."""
        fresh = self._fresh(records)
        return Encoded([r.record_id for r in fresh], self.encode(fresh) if fresh else {})

    def encode_in_worker(self, records: Sequence[Record]) -> Future[Encoded]:
        """`encode_ahead` on the pipeline's one encode thread, so batches are encoded in submission order."""
        if self._encode_pool is None:
            self._encode_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode")
        return self._encode_pool.submit(self.encode_ahead, list(records))

    def decide_thread_limits(self) -> AbstractContextManager[Any]:
        """Where batches are encoded in the worker: cap BLAS/OpenMP pools (the fusion model's) at one
        thread; between calls they spin, and with the encoder on the other core(s) only steal its time."""
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=1 if self.encode_in_background else None)

    def process_stream(self, batches: Iterable[Sequence[Record]]) -> Iterator[tuple[Sequence[Record],
                                                                                   list[Decision]]]:
        """`process` over consecutive batches, encoding batch i+1 in a worker thread while batch i is
        decided. Same decisions as calling `process` batch by batch (the encoders are deterministic and
        batch-invariant and the worker encodes strictly in order); it overlaps the transformer, which
        releases the GIL, with the single-threaded deciding work, using the second core (~20% faster
        end to end on 2 cores, benchmarks/bench_batch.py)."""
        with self.decide_thread_limits():
            pending: tuple[Sequence[Record], Future[Encoded]] | None = None
            for batch in batches:
                batch = list(batch)
                nxt = (batch, self.encode_in_worker(batch))
                if pending is not None:
                    yield pending[0], self.process(pending[0], pending[1].result())
                pending = nxt
            if pending is not None:
                yield pending[0], self.process(pending[0], pending[1].result())
        self.blocker.settle()  # so the last batch's insert is done and counted when the stream ends
        self._index_stages()

    def _index_stages(self) -> None:
        # Cumulative, not per thread: in the background these overlap the deciding stages.
        self.stage_seconds["index_add"] = self.blocker.add_seconds
        self.stage_seconds["index_wait"] = self.blocker.wait_seconds

    # -- the core path --------------------------------------------------------------------------------
    def process(self, records: Sequence[Record], encoded: Encoded | None = None) -> list[Decision]:
        """Decide every record in order. Ids seen before (replays) get their existing assignment.

        `encoded`: this batch's `encode_ahead` output, possibly computed before the previous batch was
        decided; records that batch made known are replays now and are dropped from it here."""
        fresh = self._fresh(records)
        by_id: dict[str, Decision] = {}
        if fresh:
            cols = self._columns_for(fresh, encoded)
            recency = np.array([r.login_times[-1].timestamp() if r.login_times else 0.0 for r in fresh])
            completeness = np.array([r.completeness() for r in fresh], np.float32)
            rows = self.store.append([r.record_id for r in fresh], cols, completeness, recency)
            t0 = time.perf_counter()
            vecs = index_vectors(cols)
            cands = self.blocker.candidates(vecs, rows)
            t1 = time.perf_counter()
            # Insert now: with a background blocker the graph grows while this thread scores and clusters.
            self.blocker.add(vecs, rows)
            ta = time.perf_counter()
            # Score every (record, candidate) pair of the batch in one vectorised pass...
            counts = np.array([len(c) for c in cands], np.int64)
            offsets = np.concatenate([[0], np.cumsum(counts)])
            q_rows = np.repeat(rows, counts)
            c_rows = np.concatenate(cands) if len(cands) else np.zeros(0, np.int64)
            self.frequencies.observe(cols)
            rarity = {k: np.repeat(v, counts) for k, v in self.frequencies.features(cols, cols).items()}
            skip = self.comparator.unused_columns
            feats = self.comparator.compare(self.store.gather(q_rows, skip), self.store.gather(c_rows, skip),
                                            rarity)
            t2 = time.perf_counter()
            fused, mods = self.fuser.score(feats)
            labels = self.fuser.label(fused)
            t3 = time.perf_counter()
            self.stage_seconds["candidates"] += t1 - t0
            self.stage_seconds["compare"] += t2 - ta
            self._index_stages()
            self.stage_seconds["fuse"] += t3 - t2
            # ...then decide record by record, in arrival order.
            for i, rec in enumerate(fresh):
                sl = slice(int(offsets[i]), int(offsets[i + 1]))
                if self.pair_log is not None:
                    self.pair_log.append((int(rows[i]), cands[i], feats[sl]))
                by_id[rec.record_id] = self._decide(rec, int(rows[i]), cands[i], fused[sl], labels[sl],
                                                    {m: v[sl] for m, v in mods.items()})
            self.stage_seconds["cluster"] += time.perf_counter() - t3
        out: list[Decision] = []
        for r in records:
            d = by_id.pop(r.record_id, None)
            out.append(d if d is not None else self._replay(r.record_id))
        return out

    def _columns_for(self, fresh: list[Record], encoded: Encoded | None) -> Columns:
        if encoded is None:
            return self.encode(fresh)
        ids = [r.record_id for r in fresh]
        if ids == encoded.record_ids:
            return encoded.cols
        pos = {rid: i for i, rid in enumerate(encoded.record_ids)}
        if any(rid not in pos for rid in ids):  # not from this batch: encode afresh rather than guess
            return self.encode(fresh)
        take = np.array([pos[rid] for rid in ids], np.int64)
        return {name: arr[take] for name, arr in encoded.cols.items()}

    def _decide(self, rec: Record, row: int, cand_rows: np.ndarray, fused: np.ndarray, labels: np.ndarray,
                mods: dict[str, np.ndarray]) -> Decision:
        s = self.settings
        a = self.clusters.assign(row, cand_rows, fused, labels, self.fuser.match_threshold,
                                 s.clustering.merge_margin, s.clustering.join_support)
        changes = self._update_canonical(a.cluster, a.merged)
        ids = self.store.record_ids
        matches = []
        for j in np.argsort(-fused, kind="stable"):
            if labels[j] == 0:
                continue
            cr = int(cand_rows[j])
            matches.append(Match(ids[cr], cluster_id_for(ids[self.clusters.cluster_of[cr]]), round(float(fused[j]), 4),
                                 "match" if labels[j] == 2 else "possible",
                                 {m: _num(mods[m][j]) for m in MODALITIES}))
        return Decision(rec.record_id, cluster_id_for(ids[a.cluster]), ids[self.canonical[a.cluster]], a.outcome,
                        row, [cluster_id_for(ids[c]) for c in a.merged], matches, changes)

    def _update_canonical(self, cluster: int, merged: list[int]) -> dict[str, str]:
        for c in merged:
            self.canonical.pop(c, None)
        if not merged and len(self.clusters.members[cluster]) == 1:  # a new cluster: its founder keeps it
            self.canonical[cluster] = cluster
            return {}
        members = np.array(self.clusters.members[cluster], np.int64)
        text = self.store.column("text")
        new = choose_canonical(members, text[members], self.store.completeness[members],
                               self.store.recency[members], self.settings.clustering.keeper_alpha)
        old = self.canonical.get(cluster)
        self.canonical[cluster] = new
        ids = self.store.record_ids
        return {} if old == new else {cluster_id_for(ids[cluster]): ids[new]}

    def _replay(self, record_id: str) -> Decision:
        row = self.store.row_of[record_id]
        c = self.clusters.cluster_of[row]
        ids = self.store.record_ids
        return Decision(record_id, cluster_id_for(ids[c]), ids[self.canonical[c]], "replay", row)

    # -- reporting ------------------------------------------------------------------------------------
    def assignments(self) -> dict[str, str]:
        """record id -> cluster id for every record seen (what `export-clusters` dumps)."""
        ids = self.store.record_ids
        return {ids[r]: cluster_id_for(ids[c]) for r, c in self.clusters.cluster_of.items()}

    def memory_bytes(self) -> int:
        return self.store.memory_bytes() + self.blocker.index.memory_bytes()
