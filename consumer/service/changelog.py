"""Every consumer sees every record: the replica of the group's whole state, fed by the Redis changelog.

Why: a consumer group spreads the input partitions over several consumers, and a person's second account
rarely lands on the partition of the first. Each consumer therefore keeps the *whole* state (index,
clusters, keepers) in memory and tails the changelog (`<prefix>log`, a Redis list written by the same
atomic script as the state, so it can neither miss a write nor show one that did not happen):

- `r<record id>`: a record was written. Not known here -> another consumer decided it: its signature
  (vectors and keyed hashes, never raw values) is fetched and absorbed with the cluster its decider gave it.
- `m<len>:<survivor founder><absorbed founder>`: clusters were merged in Redis. Applied idempotently, and the
  survivor Redis chose (the older founder) becomes the cluster's key here too, so every replica converges on
  the same cluster ids.
- `e<record id>`: the record was erased (GDPR Art. 17; consumer/store/erasure.py): every replica forgets
  it (`Pipeline.erase`); one member, which claims the entry in Redis, re-checks the cluster it left and
  writes any split as `s` entries (consumer/service/erasure.py).
- `s[<founder>, [<record id>, ...]]` (JSON): a piece was split off its cluster (later evidence showed the
  cluster held different people); the piece becomes the cluster keyed by its founder on every replica. The
  member that decided the split already holds it and skips its own entry (`note_own_splits`).

The race this module exists for: two twins decided at the same moment by two consumers never saw each
other. For such a pair exactly one consumer can tell, without coordination: the one whose own record was
written *after* the other's (its record is still "pending", i.e. written but not yet seen in the log, when it
reads the other's entry). That consumer scores the pair (`late_links`) and, on a match, merges the two
clusters in Redis (atomic, idempotent: forward pointers) and emits `clusters.merged`. Pure: no I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson

from consumer.engine.clustering import cluster_id_for
from consumer.engine.erasure import Erased
from consumer.engine.pipeline import Match, Pipeline
from consumer.store.record_state import RecordState

__all__ = ["LateLink", "Replica", "merge_entry", "parse_merge", "parse_split", "split_entry"]


def merge_entry(survivor_founder: str, absorbed_founder: str) -> str:
    """The log entry of a merge (founder record ids, length-prefixed: ids may contain any character)."""
    return f"m{len(survivor_founder.encode())}:{survivor_founder}{absorbed_founder}"


def parse_merge(entry: str) -> tuple[str, str]:
    """(survivor founder, absorbed founder) of a merge entry (the length counts UTF-8 bytes, as Lua's #)."""
    n, rest = entry[1:].encode().split(b":", 1)
    k = int(n)
    return rest[:k].decode(), rest[k:].decode()


def split_entry(founder: str, record_ids: Sequence[str]) -> str:
    """The log entry of a split piece, as the Redis script writes it (tests and tools use this)."""
    return "s" + orjson.dumps([founder, list(record_ids)]).decode()


def parse_split(entry: str) -> tuple[str, list[str]]:
    """(founder, record ids) of a split entry."""
    founder, rids = orjson.loads(entry[1:])
    return str(founder), [str(r) for r in rids]


@dataclass
class LateLink:
    """Two clusters this consumer linked after the fact: its own record `record_id` matched `match`, a
    record another consumer decided at the same time (neither saw the other)."""

    record_id: str
    surviving_cluster_id: str
    merged_cluster_ids: list[str]
    canonical_id: str
    match: Match


@dataclass
class SyncResult:
    absorbed: int = 0
    merges: int = 0
    splits: int = 0
    links: list[LateLink] = field(default_factory=list)
    #: Erasures applied here: (absolute log position of the `e` entry, what the erasure did).
    erased: list[tuple[int, Erased]] = field(default_factory=list)


class Replica:
    """Where this consumer is in the changelog, and which of its own records the others may not have seen."""

    def __init__(self, position: int = 0) -> None:
        #: Log entries applied so far (the next `read_log` starts here).
        self.position = position
        #: Rows this consumer decided and wrote whose log entry it has not read yet.
        self.pending_own: set[int] = set()
        #: Founders of split pieces this consumer decided whose log entry it has not read yet (it already
        #: holds those splits; re-applying one could undo a later local join to the piece).
        self.pending_splits: set[str] = set()

    def note_own(self, rows: Iterable[int]) -> None:
        """A batch decided here is in Redis: its records are pending until their entries are read."""
        self.pending_own.update(int(r) for r in rows)

    def note_own_splits(self, founders: Iterable[str]) -> None:
        """Split pieces decided here are in Redis: skip their log entries when they come round."""
        self.pending_splits.update(founders)

    @staticmethod
    def unknown(pipe: Pipeline, entries: Sequence[str]) -> list[str]:
        """Record ids of the entries this replica does not hold (their states must be fetched)."""
        known = pipe.store.row_of
        return list(dict.fromkeys(e[1:] for e in entries if e[:1] == "r" and e[1:] not in known))

    def apply(self, pipe: Pipeline, entries: Sequence[str], states: Mapping[str, RecordState]) -> SyncResult:
        """Apply log entries in order; returns what was absorbed and the late links found on the way."""
        out = SyncResult()
        run: list[RecordState] = []
        in_run: set[str] = set()

        def flush() -> None:
            if run:
                rows = pipe.absorb(run)
                out.absorbed += len(rows)
                if self.pending_own:
                    out.links.extend(self.late_links(pipe, rows))
                run.clear()
                in_run.clear()

        row_of = pipe.store.row_of
        erasing: list[tuple[int, str]] = []

        def erase_run() -> None:
            if erasing:
                done = pipe.erase([rid for _, rid in erasing])
                out.erased.extend((pos, e) for (pos, _), e in zip(erasing, done))
                erasing.clear()

        for entry in entries:
            self.position += 1
            kind = entry[:1]
            if kind != "e":
                erase_run()
            if kind == "r":
                rid = entry[1:]
                row = row_of.get(rid)
                if row is not None:
                    if row in self.pending_own:
                        flush()  # the foreign records before it were written before it: score them first
                        self.pending_own.discard(row)
                elif rid in states and rid not in in_run:
                    run.append(states[rid])
                    in_run.add(rid)
            elif kind == "m":
                flush()
                out.merges += self.apply_merge(pipe, *parse_merge(entry))
            elif kind == "e":  # consecutive erasures are forgotten together (`erase_run`)
                flush()
                row = row_of.get(entry[1:])
                if row is not None:
                    self.pending_own.discard(row)
                erasing.append((self.position - 1, entry[1:]))
                continue
            elif kind == "s":
                flush()
                founder, rids = parse_split(entry)
                if founder in self.pending_splits:
                    self.pending_splits.discard(founder)
                else:
                    out.splits += self.apply_split(pipe, founder, rids)
        erase_run()
        flush()
        return out

    # -- merges ---------------------------------------------------------------------------------------------
    @staticmethod
    def apply_merge(pipe: Pipeline, survivor_founder: str, absorbed_founder: str) -> int:
        """Merge the two founders' clusters under `survivor_founder`'s row (Redis's choice); 1 if anything
        changed. Also relabels a cluster this replica merged under the other founder."""
        row_of, cl = pipe.store.row_of, pipe.clusters
        rs, ra = row_of.get(survivor_founder), row_of.get(absorbed_founder)
        if rs is None or ra is None:
            return 0
        cs, ca = cl.cluster_of[rs], cl.cluster_of[ra]
        if cs == ca == rs:
            return 0
        merge_rows(pipe, rs, [cs, ca])
        return 1

    @staticmethod
    def apply_split(pipe: Pipeline, founder: str, record_ids: Sequence[str]) -> int:
        """Make `record_ids` the cluster keyed by `founder`'s row, taking them out of the clusters they are
        in (as `ClusterState` did on the member that decided the split); 1 if anything changed."""
        row_of, cl = pipe.store.row_of, pipe.clusters
        key = row_of.get(founder)
        rows = [r for r in (row_of.get(rid) for rid in record_ids) if r is not None]
        if key is None or not rows:
            return 0
        moving = set(rows) | {key}
        if all(cl.cluster_of[r] == key for r in moving):
            return 0
        for c in {cl.cluster_of[r] for r in moving} - {key}:
            rest = [m for m in cl.members[c] if m not in moving]
            if rest:
                cl.members[c] = rest
                pipe.update_canonical(c, [])
            else:  # the whole cluster moved: it no longer exists under its old key
                cl.members.pop(c, None)
                pipe.canonical.pop(c, None)
        kept = [m for m in cl.members.get(key, []) if m not in moving]
        for r in moving:
            cl.cluster_of[r] = key
        cl.members[key] = sorted(kept + sorted(moving))
        pipe.update_canonical(key, [])
        return 1

    @staticmethod
    def similarities(pipe: Pipeline, foreign: np.ndarray, own: np.ndarray) -> np.ndarray:
        """Index-vector similarity of every (foreign, own) pair. A row whose index-only columns the store no
        longer holds (a member on a shared Milvus collection keeps its newest rows' only) scores 2.0, above
        any cosine, with everything: its pairs are all scored rather than any left out."""
        (vf, hf), (vo, ho) = pipe.held_vectors(foreign), pipe.held_vectors(own)
        sims = vf @ vo.T
        sims[~hf] = 2.0
        sims[:, ~ho] = 2.0
        return sims

    def late_links(self, pipe: Pipeline, foreign: np.ndarray) -> list[LateLink]:
        """Score freshly absorbed foreign records against this consumer's pending own records (pairs that
        neither decider saw) and merge the clusters of matching pairs, with the evidence `assign` asks for:
        a join when one side is still alone, a merge (match + merge_margin) when both already grew."""
        own = np.array(sorted(self.pending_own), np.int64)
        foreign = np.asarray(foreign, np.int64)
        if not len(own) or not len(foreign):
            return []
        store, blocker = pipe.store, pipe.blocker
        sims = self.similarities(pipe, foreign, own)
        k = min(blocker.k, len(own))
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        q_idx = np.repeat(np.arange(len(foreign)), k)
        q_rows, c_rows = foreign[q_idx], own[top.ravel()]
        skip = pipe.comparator.unused_columns
        fcols = store.gather(foreign)
        rarity = {name: v[q_idx] for name, v in pipe.frequencies.features(fcols, fcols).items()}
        q_cols, c_cols = store.gather(q_rows, skip), store.gather(c_rows, skip)
        rarity.update(pipe.frequencies.pair_features(q_cols, c_cols, (q_rows, c_rows)))
        feats = pipe.comparator.compare(q_cols, c_cols, rarity)
        with pipe.fuser.thread_limits():
            fused, mods = pipe.fuser.score(feats)
        labels = pipe.fuser.label(fused)
        s = pipe.settings.clustering
        match_t = pipe.fuser.match_threshold
        links: list[LateLink] = []
        ids = store.record_ids
        for j in np.argsort(-fused, kind="stable"):
            if labels[j] != 2:
                break
            f, o = int(q_rows[j]), int(c_rows[j])
            cl = pipe.clusters
            cf, co = cl.cluster_of[f], cl.cluster_of[o]
            if cf == co:
                continue
            alone = cl.size(cf) == 1 or cl.size(co) == 1
            if not alone and float(fused[j]) < match_t + s.merge_margin:
                continue
            survivor, absorbed = min(cf, co), max(cf, co)
            absorbed_id = cluster_id_for(ids[absorbed])
            merge_rows(pipe, survivor, [survivor, absorbed])
            match = Match(ids[f], cluster_id_for(ids[survivor]), round(float(fused[j]), 4), "match",
                          {m: (None if v[j] != v[j] else round(float(v[j]), 4)) for m, v in mods.items()})
            links.append(LateLink(ids[o], cluster_id_for(ids[survivor]), [absorbed_id],
                                  ids[pipe.canonical[survivor]], match))
        return links


def merge_rows(pipe: Pipeline, key: int, clusters: Sequence[int]) -> None:
    """Put every member of `clusters` into one cluster keyed by row `key` (its founder) and re-pick the
    keeper. A replica-side merge: `ClusterState.assign` does the same for a record being decided."""
    cl = pipe.clusters
    members: list[int] = []
    for c in dict.fromkeys(clusters):
        members.extend(cl.members.pop(c, []))
        pipe.canonical.pop(c, None)
    for r in members:
        cl.cluster_of[r] = key
    cl.members[key] = members
    pipe.update_canonical(key, [])
