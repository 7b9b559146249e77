"""The core path every runner shares: records in, decisions out, no I/O.

    encode (per modality) -> block (HNSW + previous batch + same batch) -> compare -> fuse -> cluster -> keeper

`dedup batch` and `dedup run` differ only in the source and sink around `Pipeline.process`, which keeps batch and
stream results identical. Records are *encoded* a micro-batch at a time (the transformer is far faster batched) but
*decided* one by one in arrival order: each record sees every earlier record, those already in the index, those of the
previous batch (compared exactly: the index lags one batch, so the next batch's search can run ahead, see
`consumer.engine.blocking`) and those earlier in its own batch, so batch boundaries do not change who is compared.

Answer types in `consumer.engine.decisions` (re-exported); `snapshot`/`restore`/`absorb` from the `PersistedState`
mixin (`consumer.engine.pipeline_state`), `erase`/`recheck` from `consumer.engine.erasure`, `score_pairs`/`judge_pairs`
from `consumer.engine.pair_judge`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from consumer.config import Settings, exact_rows, link_match
from consumer.encoders import build_encoders, needs_text_model, omitted_features, profile_encoders
from consumer.encoders.base import Columns
from consumer.engine.answers import Answers
from consumer.engine.blocking import Blocker, IndexFactory, Search
from consumer.engine.clustering import ClusterState, Guards, cluster_id_for, partner_mode, size_penalty
from consumer.engine.comparison import FLOORS, Comparator
from consumer.engine.cores import usable_cores
from consumer.engine.decisions import Decision, Encoded, Match, Split
from consumer.engine.erasure import Erasure
from consumer.engine.frequencies import FrequencyTable
from consumer.engine.fusion import Fuser, LearnedModel
from consumer.engine.keeper import choose_canonical
from consumer.engine.keys import key_blocker, key_bytes, merge
from consumer.engine.pair_judge import PairJudging
from consumer.engine.pipeline_state import PersistedState, keeper_inputs
from consumer.engine.records import Record
from consumer.engine.rowmap import RowMap
from consumer.engine.sources import SourceLinks
from consumer.engine.stages import DECIDE_STAGES, StageTimer, encode_stage
from consumer.engine.titles import WORD_KEYING
from consumer.store.memory import SignatureStore

__all__ = ["Match", "Decision", "Encoded", "Pipeline", "Split"]


def _num(x: float) -> float | None:
    return None if x != x else round(float(x), 4)  # NaN -> None (modality absent)


class Pipeline(PersistedState, Erasure, PairJudging):
    """Holds the encoders, index and cluster state; `process` advances them by a micro-batch."""

    def __init__(self, settings: Settings, text_encoder: Any = None, model: LearnedModel | None = None, *,
                 encode_in_background: bool = False, image_encoder: Any = None, variant_slots: list | None = None,
                 index_factory: IndexFactory | None = None, hold_index_only: bool = True, recent_index_rows: int = 0):
        """Pure: reads no file. `text_encoder` (when the profile uses it) and `model` (in learned fusion mode) are
        loaded outside and handed in (`consumer.io.artifacts.build_pipeline` does both; and `index_factory`, the
        index of a non-embedded `index.backend`: the engine does no I/O).
        `encode_in_background`: the caller will use `process_stream`, so encoding runs on a worker thread
        beside the deciding thread, and automatic thread counts split the cores (transformer cores - 1; knn,
        BLAS and the fusion's OpenMP 1): letting both claim all 2 cores measured ~15% slower. Speed only.
        `variant_slots`: a title's variant words; None: the model's own. `hold_index_only`, `recent_index_rows`:
        `SignatureStore`'s `drop` and `recent`."""
        self.settings = settings
        self.encode_in_background = encode_in_background
        cores = usable_cores()
        if text_encoder is None and needs_text_model(settings):
            raise ValueError("the profile uses the text encoder: pass a loaded one (text_encoder=) or build the "
                             "pipeline with consumer.io.artifacts.build_pipeline, which loads it")
        self.text = text_encoder
        #: The profile's modalities; everything below is derived from their contributions.
        slots = variant_slots if variant_slots is not None or model is None else _model_slots(model.meta)
        self.encoders = build_encoders(settings, {"text_encoder": text_encoder, "image_encoder": image_encoder,
                                                  "variant_slots": slots})
        contribs = [e.contribution for e in self.encoders]
        #: Stage-timer name per encoder ("encode_<name>" unless it declares one).
        self.encode_stages = [encode_stage(e.name, c.stage) for e, c in zip(self.encoders, contribs)]
        #: The stages a micro-batch passes through, in the one vocabulary (`consumer.engine.stages`).
        self.batch_stages: tuple[str, ...] = (*self.encode_stages, *DECIDE_STAGES)
        self.comparator = Comparator(self.encoders, floors={f: model and model.meta.get(k) for f, k in FLOORS.items()})
        absent = omitted_features(settings, profile_encoders(settings)) if settings.fusion.mode == "learned" else ()
        self.fuser = Fuser(settings.fusion, model, self.encoders, self.comparator.features, absent,
                           link_match(settings))
        self.blocker = Blocker([v for c in contribs for v in c.index], settings.index, exact_rows=exact_rows(settings),
                               query_threads=1 if encode_in_background else cores,
                               background_add=encode_in_background, index_factory=index_factory)
        #: Exact-key candidates beside the index (None when no encoder declares a key, or `index.key_cap` 0).
        self.keys = key_blocker([k for c in contribs for k in c.keys], settings.index.key_cap)
        self.frequencies = FrequencyTable([r for c in contribs for r in c.rarity])
        drop = () if hold_index_only else self.comparator.unused_columns - {self.blocker.spec[0].column}
        self.store = SignatureStore(drop=drop, recent=recent_index_rows)
        #: A labelled model's answers (`consumer.engine.answers`): answered pairs score as answered.
        self.answers = Answers.of(model.meta, self.store.record_ids) if model is not None else None
        self.sources = SourceLinks.of(settings)  # a file joining sources: linked across them only
        self.clusters = ClusterState()
        self.canonical = RowMap()  # cluster -> its keeper row
        #: Owns every stage time (`timer.totals()`; the service diffs it per batch with `timer.since`).
        self.timer = StageTimer()
        self._encode_lock = threading.Lock()
        self._encode_pool: ThreadPoolExecutor | None = None
        #: The last batch handed to the encode worker; the index search started ahead for one (`_search_ahead`).
        self._latest: Future[Encoded] | None = None
        self._ahead: tuple[Future[Encoded], Search] | None = None
        self.closers: list[Callable[[], None]] = []  # called by `close`: what a runner attached (an encoder process)
        #: When a list, every scored candidate set as (row, candidate rows, features): `dedup train`, labelling.
        self.pair_log: list[tuple[int, np.ndarray, np.ndarray]] | None = None
        self.model_version = self.fuser.version
        self.config_version = settings.fingerprint()
        cl = settings.clustering
        #: The clustering's chaining guards (average linkage over members scored by `score_pairs`).
        self.guards = Guards(self.fuser.match_threshold, cl.merge_margin, cl.join_support, cl.link_members,
                             cl.merge_support, cl.split, partner_mode(cl.recheck, settings.profile.name),
                             cl.partner_margin, self.sources and self.sources.reader(self.store),
                             self.judge_pairs, size_penalty(self.fuser.model and self.fuser.model.meta, cl.size_prior),
                             self.join_vetoes)

    # -- encoding -------------------------------------------------------------------------------------
    def encode(self, records: Sequence[Record], *, timed: bool = True) -> Columns:
        """Every encoder's columns for `records`. `timed=False` keeps the stage timers out of it: the HTTP
        API scores pairs on a service's pipeline, and its encodes must not count as the stream's."""
        # The encoders' caches are not thread-safe (`process` encoding beside the worker; the API's threads).
        cols: Columns = {}
        with self._encode_lock:
            for enc, stage in zip(self.encoders, self.encode_stages):
                with self.timer.time(stage) if timed else nullcontext():
                    cols.update(enc.encode(records))
        if self.sources is not None:
            self.sources.add_column(records, cols)
        return cols

    def _fresh(self, records: Sequence[Record]) -> list[Record]:
        """Records whose id is neither known nor earlier in the same batch."""
        first = {r.record_id: i for i, r in reversed(list(enumerate(records)))}  # the first of each id wins
        return [r for i, r in enumerate(records) if first[r.record_id] == i and r.record_id not in self.store.row_of]

    def encode_ahead(self, records: Sequence[Record]) -> Encoded:
        """Encode a batch before its turn. Touches only the encoders (and their caches), never the index,
        store or clusters, so it may run in another thread while the previous batch is being decided."""
        fresh = self._fresh(records)
        if not fresh:
            return Encoded([], {})
        cols = self.encode(fresh)
        payloads, payload_columns = self.encode_payloads(fresh, cols)
        return Encoded([r.record_id for r in fresh], cols, self.blocker.vectors(cols), payloads=payloads,
                       payload_columns=payload_columns)

    def encode_in_worker(self, records: Sequence[Record], joining: Future[Encoded] | None = None) -> Future[Encoded]:
        """`encode_ahead` on the pipeline's one encode thread, so batches are encoded in submission order.
        `joining`: a waiting batch's encoding that these records join (the service's `_joins`): the result
        holds its rows, then these (an id it holds is not encoded twice: the first wins)."""
        def job(recs: Sequence[Record] = tuple(records)) -> Encoded:
            first = joining.result() if joining is not None else Encoded([], {})
            known = set(first.record_ids)
            return first.then(self.encode_ahead([r for r in recs if r.record_id not in known]))

        if self._encode_pool is None:
            self._encode_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode")
        self._latest = self._encode_pool.submit(job)
        return self._latest

    def close(self, wait: bool = True) -> None:
        """Stop the encode worker and the index-add thread once their work is done; `wait=False` lets them
        finish in the background (a service replacing its pipeline after a reload). Idempotent."""
        pool, self._encode_pool = self._encode_pool, None
        if pool is not None:
            pool.shutdown(wait=wait)
        self.blocker.close(wait=wait)
        self.fuser.close()
        for closer in self.closers:
            closer()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def decide_thread_limits(self) -> AbstractContextManager[Any]:
        """Where batches are encoded in the worker: cap BLAS/OpenMP pools (the fusion model's) at one
        thread; between calls they spin, and with the encoder on the other core(s) only steal its time."""
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=1 if self.encode_in_background else None)

    def process_stream(self, batches: Iterable[Sequence[Record]]) -> Iterator[tuple[Sequence[Record], list[Decision]]]:
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
        self.blocker.flush()  # so the last batches' inserts are done and counted when the stream ends
        self._index_stages()

    def _index_stages(self) -> None:  # cumulative, not per thread: in the background they overlap the deciding
        self.timer.set("index_add", self.blocker.add_seconds)
        self.timer.set("index_wait", self.blocker.wait_seconds)
        self.timer.set("index_search", self.blocker.search_seconds)

    # -- the core path --------------------------------------------------------------------------------
    def process(self, records: Sequence[Record], encoded: Encoded | None = None) -> list[Decision]:
        """Decide every record in order. Ids seen before (replays) get their existing assignment.

        `encoded`: this batch's `encode_ahead` output, possibly computed before the previous batch was
        decided; records that batch made known are replays now and are dropped from it here."""
        fresh = self._fresh(records)
        by_id: dict[str, Decision] = {}
        given = encoded
        if fresh:
            take = False if encoded is None else encoded.rows_of([r.record_id for r in fresh])
            if take is False or encoded is None:
                cols, encoded = self.encode(fresh), None
            else:
                cols = encoded.cols if take is None else {n: a[take] for n, a in encoded.cols.items()}
            completeness, recency = keeper_inputs(fresh)
            rows = self.store.append([r.record_id for r in fresh], cols, completeness, recency)
            self.stash_payloads(rows, encoded, take)
            t0 = time.perf_counter()
            if encoded is not None and encoded.vecs is not None:
                vecs = encoded.vecs if take is None else encoded.vecs[take]
            else:
                vecs = self.blocker.vectors(cols)
            cands = self.blocker.candidates(vecs, rows, self._ahead_for(encoded),
                                           take if isinstance(take, np.ndarray) else None,
                                           None if encoded is None else encoded.vecs)
            cands = cands if self.keys is None else merge(cands, self.keys.candidates(cols, rows))
            if self.sources is not None:
                cands = self.sources.candidates(cands, cols, self.store)
            if self.answers is not None:  # a "yes" partner the search missed is a candidate all the same
                cands = self.answers.with_partners(rows, cands)
            t1 = time.perf_counter()
            # Insert the previous batch now (the graph grows while this thread scores and clusters) and
            # search the next one after it, if it is already being encoded.
            self.blocker.advance(vecs, rows)
            self._search_ahead(given)
            ta = time.perf_counter()
            # Score every (record, candidate) pair of the batch in one vectorised pass...
            counts = np.array([len(c) for c in cands], np.int64)
            offsets = np.concatenate([[0], np.cumsum(counts)])
            q_rows, c_rows = np.repeat(rows, counts), np.concatenate(cands) if len(cands) else np.zeros(0, np.int64)
            self.frequencies.observe(cols)
            feats = self.comparator.logged(rows, cands)
            if feats is None:  # (else a replayed pass compared them already)
                rarity = {k: np.repeat(v, counts) for k, v in self.frequencies.features(cols, cols).items()}
                skip = self.comparator.unused_columns
                q_cols, c_cols = self.store.gather_repeated(rows, counts, skip), self.store.gather(c_rows, skip)
                rarity.update(self.frequencies.pair_features(q_cols, c_cols, (q_rows, c_rows)))
                feats = self.comparator.compare(q_cols, c_cols, rarity)
            t2 = time.perf_counter()
            with self.fuser.thread_limits():  # scoped to this step, not process-wide (see Fuser)
                fused, mods = self.fuser.score(feats)
            fused, said = (fused, None) if self.answers is None else self.answers.apply(q_rows, c_rows, fused)
            labels = self.fuser.label(fused)
            vetoed = self.candidate_vetoes(feats, said)
            t3 = time.perf_counter()
            self.timer.add("candidates", t1 - t0)
            self.timer.add("compare", t2 - ta)
            self._index_stages()
            self.timer.add("fuse", t3 - t2)
            # ...then decide record by record, in arrival order (under the fuser's thread limit: the
            # clustering scores members on demand, `score_pairs`, and entering the limit per call costs more).
            with self.fuser.thread_limits():
                for i, rec in enumerate(fresh):
                    sl = slice(int(offsets[i]), int(offsets[i + 1]))
                    if self.pair_log is not None:
                        self.pair_log.append((int(rows[i]), cands[i], feats[sl]))
                    by_id[rec.record_id] = self._decide(rec, int(rows[i]), cands[i], fused[sl], labels[sl],
                                                        {m: v[sl] for m, v in mods.items()},
                                                        None if vetoed is None else vetoed[sl])
            self.timer.add("cluster", time.perf_counter() - t3)
        out: list[Decision] = []
        for r in records:
            d = by_id.pop(r.record_id, None)
            out.append(d if d is not None else self._replay(r.record_id))
        return out

    def _ahead_for(self, encoded: Encoded | None) -> Search | None:
        """The search started ahead for this batch, if any (used once)."""
        ahead = self._ahead
        if ahead is None or encoded is None:
            return None
        fut, search = ahead  # compared by identity: `Encoded` is a dataclass, `==` would compare its arrays
        if fut.done() and fut.exception() is None and (fut.result() is encoded or fut.result() is encoded.head):
            self._ahead = None  # (for `encoded.head`, its first rows: the blocker searches the rest)
            return search
        return None  # started for a later batch

    def _search_ahead(self, current: Encoded | None) -> None:
        """Start the index search of the batch encoded after this one on the blocker's add thread, behind
        the insert just submitted: the index then holds exactly what that batch must search (see
        `consumer.engine.blocking`), and the search leaves the deciding thread. Only with a background blocker."""
        fut = self._latest
        if fut is None or (self._ahead is not None and self._ahead[0] is fut):
            return
        if fut.done() and (fut.exception() is not None or fut.result() is current):
            return  # this batch's own encoding (no next batch yet), or a failed one

        def vectors(f: Future[Encoded] = fut) -> np.ndarray | None:
            return f.result().vecs

        search = self.blocker.search_ahead(vectors)
        if search is not None:
            self._ahead = (fut, search)

    def _decide(self, rec: Record, row: int, cand_rows: np.ndarray, fused: np.ndarray, labels: np.ndarray,
                mods: dict[str, np.ndarray], vetoed: np.ndarray | None = None) -> Decision:
        a = self.clusters.assign(row, cand_rows, fused, labels, self.guards, scorer=self.score_pairs, vetoed=vetoed)
        self.update_canonical(a.cluster, a.merged)
        ids = self.store.record_ids
        splits: list[Split] = []
        if a.split_from is not None:
            for c in {a.split_from, *(f for f, _ in a.splits)} - {a.cluster}:
                self.update_canonical(c, [])
            splits = [Split(cluster_id_for(ids[f]), ids[f], ids[self.canonical[f]], [ids[r] for r in rows])
                      for f, rows in a.splits]
        matches = []
        for j in np.argsort(-fused, kind="stable"):
            if labels[j] == 0:
                continue
            cr = int(cand_rows[j])
            matches.append(Match(ids[cr], cluster_id_for(ids[self.clusters.cluster_of[cr]]), round(float(fused[j]), 4),
                                 "match" if labels[j] == 2 else "possible",
                                 {m: _num(mods[m][j]) for m in self.fuser.modalities}))
        return Decision(rec.record_id, cluster_id_for(ids[a.cluster]), ids[self.canonical[a.cluster]], a.outcome,
                        row, [cluster_id_for(ids[c]) for c in a.merged], matches,
                        cluster_id_for(ids[a.split_from]) if a.split_from is not None else None, splits,
                        ids[a.split_from] if a.split_from is not None else None,
                        ids[self.canonical[a.split_from]] if a.split_from is not None else None)

    def update_canonical(self, cluster: int, merged: list[int]) -> None:
        """The cluster's keeper after a join or merge (readers use `canonical`; the service persists the
        canonical of every cluster a batch touched)."""
        for c in merged:
            self.canonical.pop(c, None)
        if not merged and len(self.clusters.members[cluster]) == 1:  # a new cluster: its founder keeps it
            self.canonical[cluster] = cluster
            return
        members = np.array(self.clusters.members[cluster], np.int64)
        # The keeper's centroid lives in the first declared index vector (the transformer's, by default).
        vec = self.store.column(self.blocker.spec[0].column)
        new = choose_canonical(members, vec[members], self.store.completeness[members],
                               self.store.recency[members], self.settings.clustering.keeper_alpha)
        self.canonical[cluster] = new

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

    def final_clusters(self) -> Iterator[tuple[str, str, str]]:
        """(record id, cluster id, canonical id) of every record seen, in arrival order, with every merge
        applied: the table `dedup batch --clusters` writes, so nobody has to replay `merged` decisions."""
        ids = self.store.record_ids
        for row in range(len(self.store)):
            if (c := self.clusters.cluster_of.get(row)) is not None:  # None: an erased row's tombstone
                yield ids[row], cluster_id_for(ids[c]), ids[self.canonical[c]]

    def memory_bytes(self) -> int:
        return self.store.memory_bytes() + self.blocker.index.memory_bytes() + key_bytes(self.keys)


log = logging.getLogger(__name__)


def _model_slots(meta: dict[str, Any]) -> list | None:
    """A saved model's variant words (keyed hashes of words), or None where it has none or keyed them
    otherwise than `consumer.engine.titles.word_key` does now: their hashes would match no title word, so
    they are left out, and said, rather than read as words no title has."""
    slots = meta.get("variant_slots")
    if slots and meta.get("variant_keying") != WORD_KEYING:
        log.warning("the model's variant words were keyed by an earlier version: left out; refit the model "
                    "(dedup fit) to read them", extra={"variant_words": len(slots)})
        return None
    return slots
