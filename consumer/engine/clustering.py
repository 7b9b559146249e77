"""Incremental clustering in arrival order: join, start, or bridge (merge) clusters, with chaining guards.

Single-link clustering over noisy matches builds giant clusters (one bad link glues two families
together, and at 100k records one "James Johnson" links to the next across cities). So a link between a
record and a cluster, or between two clusters, needs evidence that holds for the *clusters*, not for one
bridging pair:

- a record *joins* the cluster of its best match only if its mean score over the cluster's members
  (average linkage; members its candidate search did not return are scored on demand, up to
  `link_members` of them) clears `join_support` x the match threshold;
- a record *merges* a second cluster into the first only with more evidence than a join (best score at
  least `match + merge_margin`, the same average-linkage test for the second cluster) *and* when the two
  clusters agree with each other: the mean score between their members (up to `link_members` a side)
  clears `merge_support` x the match threshold, and, with the partner re-check, no pair between those
  members conflicts. A record that looks like two different people (a nickname, a common surname, a shared
  device), or a listing that names neither of two colours, can then no longer glue them together; the
  link is reported as a possible duplicate for review instead of applied;
- on a merge the older cluster (lower founding row) keeps its id, so ids are stable and deterministic;
- a cluster is *split* when later evidence shows it was wrong: a record joins it yet disagrees with some of
  its members (a score below the merge bar), so the cluster (when small enough to re-check, up to
  2 x `link_members`) is re-clustered from all its member pairs by average linkage, stopping at the bar a
  merge needs. If it falls apart, the largest piece keeps the id and every other piece becomes a cluster
  named after its earliest record (`Assignment.splits`; the service emits `cluster.split`). Ids derive
  from founding records, so when the founder itself lands in a smaller piece, that piece keeps the id.

With `Guards.partner` (the *partner re-check*, `clustering.recheck`; the listing profile's default) the
clustering also follows *reciprocal best partners*, for data where a duplicate has one true partner and
its siblings (one shop's colour or size variants of a model) score almost as high: arriving one by one, a
listing links to the best *earlier* candidate, so two variants of one shop link before the other shop's
listing arrives. Two rules, both computed from scores on demand (no extra state, so a restored consumer
decides the same):

- every join into a cluster re-checks it (up to 2 x `link_members` members) from all its member pairs, and
  two groups stay together only when no pair between them *conflicts* and at least one pair between them
  is a *near-reciprocal* match (above the threshold and within `partner_margin` of both ends' best partner
  in the cluster), average linkage still clearing the merge bar. A conflict is what the comparisons call
  two different things (`Guards.judge`, `Feature.conflict`: listings whose attributes or model codes
  disagree); where the profile has no such comparison, any pair below the merge bar (`merge_support` x the
  match threshold) counts as one. Why not the score alone: groups of three or four listings of one product
  hold pairs the model scores near zero (a typo, capitals), and a veto on those split them (another
  generator's listings: recall 0.71 -> 0.78-0.80). A sibling that was the best match until a better
  partner arrived, and conflicts with it, is split off (the same `splits` and `cluster.split` events).
  One more way in: a *lone* record (a group of one) whose best partner in the cluster is in a group, and
  which is a match with *every* member of that group without a conflict, joins it although no pair is
  near-reciprocal. Why: once a group holds two copies of one title (a pair scoring 0.9999), the bar
  "within the margin of both ends' best" is 0.9 for everybody else, so a copy with a typo ("hybrid theroy",
  0.57 with each of the four others) was split off the group it belongs to; a sibling is kept out by the
  conflict or by the one member it does not match;
- a record with no match whose best candidate is a *possible* pair with a record still alone, and which is
  that record's best among the record's other possible candidates too (reciprocal best), joins it (its
  decision line still lists the pair as `possible`: the link is the clustering's, not the score's).

A user's answers (`consumer.engine.answers`, a model from `dedup train --labels`) reach the clustering as
scores (a "yes" pair scores near 1, a "no" pair near 0) and, in the partner re-check, as themselves
(`Guards.judge`): a "no" is a conflict, and a "yes" is near-reciprocal without being the yardstick of its
records' other partners (its score is the answer's, beside which every model score would look far; another
generator's listings, 25 answers: a group's third listing was split off, F1 0.859 -> 0.856, now 0.859).

Linking across sources (`Guards.sources`, a file joining two shops' catalogues) keeps one record per source
in a cluster, so a record whose best match already has a partner from the record's own source cannot join
it. It *takes the place* when it matches the cluster's other members better than that partner does, by at
least `DISPLACE_MARGIN` log-odds, and the partner is split off alone (`splits`, a `cluster.split` event).
Without this, arrival order decided: the first of two Google listings of one program took the Amazon
listing, however much better the second matched. With it the links are close to those a greedy one-to-one
matching by score makes (Amazon-Google, 100 answers, six question orders: 0.648 -> 0.686 with the threshold
moving all the way again, `consumer.learn.labelling.THRESHOLD_SHARE`). The partner re-check's reciprocal-best
link follows the same rule, and in such a file it does not ask whether the candidate prefers another of the
record's candidates: those are of the candidate's own source, never its partners.

With `Guards.size_penalty` (the *size prior*, `clustering.size_prior`) the re-check also asks a group that
would grow past two members for more evidence: its average linkage must clear the match threshold raised by
that many log-odds, not only the merge bar. A pairwise score has one prior for every pair, but in a file
whose duplicates come in pairs (RLdata10000) a third record that matches both members of a pair is usually
a namesake. The penalty is the file's own (`consumer.learn.size_prior`, estimated when the model is fitted
without labels): ~3 nats on RLdata10000, 0 on FEBRL2/3, whose originals have up to six noisy copies. When it
is set, every join that leaves a cluster of three or more re-checks it.

Cluster ids are derived from the founding record id, so the same input gives the same ids, and a replay
cannot mint a new one.

Why this module is long: every rule above (join, merge, split, partner link, displacement, size prior) reads
and changes the same two maps (row -> cluster, cluster -> rows) under one invariant, and a restored consumer
must decide exactly as the original; one class keeps that invariant in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from consumer.engine.rowmap import RowMap
from consumer.store.record_state import cluster_id_for

__all__ = ["ClusterState", "Assignment", "Guards", "PairScorer", "cluster_id_for", "partner_mode", "size_penalty",
           "DISPLACE_MARGIN"]

#: How much better (log-odds) a record must match a cluster than its member from the record's own source
#: does, to take that member's place (`ClusterState._rival`). Not zero: each displacement is a
#: `cluster.split` a CRM acts on, and two rivals a few tenths of a nat apart are a coin toss for the model
#: (Amazon-Google, 100 answers, third question order: displacements under 0.5 nats were 35 right, 36 wrong,
#: 57 neither; over it 71 right, 22 wrong). Six question orders at 100 / 25 answers: 0.682 / 0.568 with no
#: margin, 0.686 / 0.579 with 0.5, 0.683 / 0.577 with 1; Abt-Buy (three orders) 0.9385 / 0.9175 and 0.9371 /
#: 0.9171.
DISPLACE_MARGIN = 0.5

#: Fused scores of the pairs (left[i], right[i]) (`Pipeline` compares and fuses them on demand).
PairScorer = Callable[[Sequence[int], Sequence[int]], np.ndarray]
#: Fused scores of the pairs, whether each *conflicts* (None: the profile has no conflict evidence) and the
#: user's answers about them (1 yes, -1 no, 0 none; None: none): `Pipeline.judge_pairs`, one comparison for all.
PairJudge = Callable[[Sequence[int], Sequence[int]], tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]
#: Per pair, whether the first may not join a cluster holding the second (None: nothing says so):
#: `Pipeline.join_vetoes`.
PairVeto = Callable[[Sequence[int], Sequence[int]], np.ndarray | None]


def partner_mode(recheck: str, profile: str) -> bool:
    """Whether `clustering.recheck` means the partner re-check for a run of `profile`: "auto" picks it for
    product listings (two shops' listings link one to one among near-identical siblings), not for people,
    whose true clusters hold several noisy records (generated CRM seed 1: F1 0.956 -> 0.939 with it, recall
    0.955 -> 0.905; RLdata10000, whose duplicates come in pairs, would gain: 0.971 -> 0.979)."""
    return recheck == "partner" or (recheck == "auto" and profile == "listing")


def size_penalty(meta: dict | None, size_prior: str = "auto") -> float:
    """The size prior's penalty (nats) a model carries (`meta["size_prior"]`, or its base model's for a model
    corrected by labels); 0 with `clustering.size_prior = "off"`, or for a model fitted without one (the
    shipped models, listing fits: their files link one to one through the partner re-check already)."""
    if size_prior == "off" or not meta:
        return 0.0
    prior = meta.get("size_prior") or (meta.get("base") or {}).get("size_prior") or {}
    return max(0.0, float(prior.get("penalty", 0.0)))


@dataclass(frozen=True)
class Guards:
    """The chaining guards of one `assign` call (thresholds in fused-score units)."""

    match_threshold: float
    merge_margin: float
    join_support: float
    #: Members a side scored for average linkage (0: only the members the candidate search returned).
    link_members: int = 0
    #: A merge needs the mean cross-cluster score >= this share of the match threshold.
    merge_support: float = 0.0
    #: Re-check (and split) a cluster when a record that joins it disagrees with some of its members.
    split: bool = False
    #: The partner re-check (module docstring): re-check on every join, keep groups together only with no
    #: pair below the merge bar and one near-reciprocal match; link reciprocal-best possible pairs.
    partner: bool = False
    #: How far below both ends' best partner (fused-score units) a pair still counts as near-reciprocal.
    partner_margin: float = 0.1
    #: Linking across sources (`consumer.engine.sources`): rows -> their source hashes (0 = unknown). A
    #: cluster then never holds two records of one source (each source holds no duplicates of its own).
    sources: Callable[[list[int]], np.ndarray] | None = None
    #: Scores and conflicts of member pairs for the partner re-check (module docstring); None: scores only,
    #: and a pair below the merge bar keeps two groups apart instead of a conflict.
    judge: PairJudge | None = None
    #: The size prior (module docstring): log-odds a group must clear beyond the match threshold to grow past
    #: two members in the re-check; 0 = off (every join below the merge bar re-checks, as before).
    size_penalty: float = 0.0
    #: Partner mode: what keeps a record out of a cluster it scored a match with (a member it conflicts
    #: with decisively: another colour, edition or pack; a learned photo bar; the user's "no"), as such a
    #: pair keeps two groups apart. None: only the score decides a join.
    join_veto: PairVeto | None = None


@dataclass
class Assignment:
    """What clustering decided for one record."""

    cluster: int  # founding row of the cluster the record ended in
    outcome: str  # "new" | "joined" | "merged"
    merged: list[int] = field(default_factory=list)  # founding rows of clusters absorbed
    #: candidate rows whose link was not applied (review band, or a merge without enough evidence)
    held_back: list[int] = field(default_factory=list)
    #: Pieces split off the record's cluster after it joined (later evidence): (new founding row, rows).
    splits: list[tuple[int, list[int]]] = field(default_factory=list)
    #: The cluster the pieces were split from (it keeps its id); None without a split.
    split_from: int | None = None


class ClusterState:
    """row -> cluster (its founding row) and cluster -> member rows."""

    def __init__(self) -> None:
        self.cluster_of = RowMap()  # a dict's interface, 8 bytes a row (`consumer.engine.rowmap`)
        self.members: dict[int, list[int]] = {}

    def size(self, cluster: int) -> int:
        return len(self.members[cluster])

    def largest(self) -> int:
        return max((len(m) for m in self.members.values()), default=0)

    def _sample(self, cluster: int, cap: int) -> list[int]:
        """Up to `cap` members spread over the cluster's history, in arrival (row) order: the member lists'
        own order depends on merge history, which a restored state does not keep."""
        m = sorted(self.members[cluster])
        if len(m) <= cap:
            return list(m)
        step = len(m) / cap
        return [m[int(i * step)] for i in range(cap)]

    def assign(self, row: int, cand_rows: np.ndarray, scores: np.ndarray, labels: np.ndarray,
               match_threshold: float | Guards, merge_margin: float = 0.0, join_support: float = 0.0,
               scorer: PairScorer | None = None, vetoed: np.ndarray | None = None) -> Assignment:
        """Place `row` given its scored candidates (labels: 2 match, 1 possible, 0 no).

        `match_threshold` may be a `Guards` (the other thresholds then come from it); `scorer` scores the
        row, or a cluster's members, against members its candidates did not cover (average linkage).
        `vetoed`: per candidate, `g.join_veto` of the pair where the caller knows it already (the batch's
        comparisons); members that are not candidates are asked of `g.join_veto`."""
        g = match_threshold if isinstance(match_threshold, Guards) else Guards(match_threshold, merge_margin,
                                                                                join_support)
        if g.partner and scorer is not None and len(scores) and not (labels == 2).any():
            labels = self._partner_link(row, cand_rows, scores, labels, scorer, g)
        if not (labels == 2).any():  # the common case (a record with no match): it founds a cluster
            self.cluster_of[row] = row
            self.members[row] = [row]
            return Assignment(row, "new", [], [])
        by_cluster: dict[int, list[int]] = {}
        for j, c in enumerate(self.cluster_of.take(cand_rows).tolist()):
            if c >= 0:
                by_cluster.setdefault(c, []).append(j)
        thr = g.match_threshold
        use_scorer = scorer is not None and g.link_members > 0

        def best(c: int) -> float:
            return float(max(scores[j] for j in by_cluster[c]))

        def linkage(c: int) -> list[float]:
            """The row's scores over the cluster's members: the scored candidates plus, with a scorer, up to
            `link_members` members the candidate search missed, scored now."""
            idx = by_cluster[c]
            known = [float(scores[j]) for j in idx]
            if not use_scorer or self.size(c) <= len(idx):
                return known
            seen = {int(cand_rows[j]) for j in idx}
            missing = [m for m in self._sample(c, g.link_members) if m not in seen]
            missing = missing[:max(0, g.link_members - len(known))] or missing[:1]
            return known + ([float(x) for x in scorer([row] * len(missing), missing)]  # type: ignore[misc]
                            if missing else [])

        links: dict[int, list[float]] = {}

        def supported(c: int) -> bool:
            if use_scorer:
                if self.size(c) < 2:
                    return True
                links[c] = linkage(c)
                return float(np.mean(links[c])) >= g.join_support * thr
            idx = by_cluster[c]
            if self.size(c) < 3 or len(idx) < 2:
                return True
            return float(np.mean([scores[j] for j in idx])) >= g.join_support * thr

        def agree(a: list[int], c: int) -> bool:
            """Do the clusters merged so far (`a`) and cluster `c` hold together (mean cross score)?"""
            if not use_scorer or g.merge_support <= 0:
                return True
            left = [m for t in a for m in self._sample(t, g.link_members)][:g.link_members]
            right = self._sample(c, g.link_members)
            lefts, rights = [m for m in left for _ in right], right * len(left)
            if g.partner and g.judge is not None:
                # Partner mode: two groups that hold a conflicting pair (two colours, two models) stay apart
                # whatever the record bridging them scores, as the re-check keeps them apart; a record that
                # names neither ("gaming mouse vista 5s") used to merge a whole family at once, past the size
                # the re-check can split.
                cross, conflict, said = g.judge(lefts, rights)
                if conflict is not None and (conflict.any() or (said is not None and (said < 0).any())):
                    return False
            else:
                cross = scorer(lefts, rights)  # type: ignore[misc]
            return float(np.mean(cross)) >= g.merge_support * thr

        def clash(clusters: list[int]) -> bool:
            """Would `row` and these clusters hold two records of one source (linking across sources)?"""
            if g.sources is None:
                return False
            src = g.sources([row, *(m for c in clusters for m in self.members[c])])
            src = src[src != 0]
            return len(np.unique(src)) < len(src)

        def compatible(c: int) -> bool:
            """Partner mode: does `row` conflict decisively with none of cluster `c`'s members (`join_veto`)?
            Why: the clustering kept two *groups* apart across such a pair but let a record join one, so a
            listing whose score read no photo or colour joined its sibling (photo-offers-1: +0.066 F1)."""
            if not g.partner or g.join_veto is None:
                return True
            known = {int(cand_rows[j]): bool(vetoed[j]) for j in by_cluster[c]} if vetoed is not None else {}
            members = self._sample(c, g.link_members)
            if any(known.get(m, False) for m in members):
                return False
            missing = [m for m in members if m not in known]
            veto = g.join_veto([row] * len(missing), missing) if missing else None
            return veto is None or not bool(veto.any())

        matched = [c for c, idx in by_cluster.items() if any(labels[j] == 2 for j in idx)]
        # Strongest evidence first; ties go to the older cluster (lower founding row): deterministic.
        matched.sort(key=lambda c: (-best(c), c))
        target: int | None = None
        merged: list[int] = []
        held: list[int] = []
        displaced: tuple[int, int] | None = None  # (cluster, the rival taken out of it)
        for c in matched:
            if target is None:
                if not clash([c]) and supported(c) and compatible(c):
                    target = c
                elif scorer is not None and (z := self._rival(row, c, scorer, g)) is not None:
                    target, displaced = c, (c, z)
                else:
                    held.extend(int(cand_rows[j]) for j in by_cluster[c])
            elif (best(c) >= thr + g.merge_margin and not clash([target, *merged, c]) and supported(c)
                  and agree([target, *merged], c)):
                merged.append(c)
            else:
                held.extend(int(cand_rows[j]) for j in by_cluster[c] if labels[j] == 2)

        if target is None:
            self.cluster_of[row] = row
            self.members[row] = [row]
            return Assignment(row, "new", [], held)
        if displaced is not None:
            target = self._take_out(displaced[1])
        survivor = min([target, *merged])
        for c in [target, *merged]:
            if c != survivor:
                for r in self.members.pop(c):
                    self.cluster_of[r] = survivor
                    self.members[survivor].append(r)
        self.cluster_of[row] = survivor
        self.members[survivor].append(row)
        absorbed = sorted(c for c in [target, *merged] if c != survivor)
        splits: list[tuple[int, list[int]]] = []
        if g.split and (g.partner or min(links.get(target, [1.0])) < g.merge_support * thr
                        or (g.size_penalty > 0 and self.size(survivor) >= 3)):
            splits = self._split(survivor, scorer, g)  # type: ignore[arg-type]
        split_from = survivor if splits else None
        if displaced is not None:
            # The rival's side of the split: it alone keeps the old id when it founded the cluster (ids derive
            # from founding records), and the rest, with this record, is the piece under a new one.
            c, z = displaced
            if z == c:
                splits.append((survivor, sorted(self.members[survivor])))
                split_from = c
            else:
                splits.append((z, [z]))
                split_from = survivor
        return Assignment(self.cluster_of[row], "merged" if absorbed else "joined", absorbed, held, splits, split_from)

    def _rival(self, row: int, cluster: int, scorer: PairScorer, g: Guards) -> int | None:
        """Linking across sources: the member of `cluster` from `row`'s own source that `row` would displace,
        or None. A cluster holds one record per source, so a record whose best match already has a partner
        from its source used to stay alone, however much better it matched: arrival order decided (the first
        of two Google listings of one program took the Amazon listing). `row` takes the place when it scores
        higher against the cluster's other members than that rival does (mean), by at least `DISPLACE_MARGIN`
        log-odds (anything closer keeps the incumbent); the rival is split off alone. Inserting each arrival
        this way keeps close to the links a greedy one-to-one matching by score would make, whatever the
        arrival order (Amazon-Google, 100 answers: that matching over the same probabilities 0.69 against 0.67
        for first come)."""
        if g.sources is None:
            return None
        members = sorted(self.members[cluster])
        src = g.sources([row, *members])
        mine = int(src[0])
        if mine == 0:
            return None
        rivals = [m for m, s in zip(members, src[1:].tolist()) if s == mine]
        rest = [m for m, s in zip(members, src[1:].tolist()) if s != mine]
        if len(rivals) != 1 or not rest:
            return None
        z = rivals[0]
        scores = scorer([row] * len(rest) + [z] * len(rest), rest + rest)
        ours, theirs = float(np.mean(scores[:len(rest)])), float(np.mean(scores[len(rest):]))
        return z if _logit(ours) > _logit(theirs) + DISPLACE_MARGIN else None

    def _take_out(self, z: int) -> int:
        """Take `z` out of its cluster and leave it alone (`remove`, then a cluster of its own): the key the
        rest is under now. When `z` founded the cluster, `z` keeps the key and the rest is re-keyed under
        its earliest record."""
        _, rest = self.remove(z)
        self.cluster_of[z] = z
        self.members[z] = [z]
        return self.cluster_of[rest[0]]

    def _partner_link(self, row: int, cand_rows: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                      scorer: PairScorer, g: Guards) -> np.ndarray:
        """`labels` with the record's best candidate promoted to a match when it is a *possible* pair with a
        record still alone that scores lower with each of the record's other possible candidates: each is
        the other's best (as far as the record's neighbourhood shows), the rule a one-to-one link between
        two sources follows. A candidate already in a cluster was claimed by a better partner: left alone,
        unless linking across sources, where a weaker partner from the record's own source is displaced
        (`_rival`) and the record's other candidates, of the candidate's own source, are not asked."""
        j = int(np.argmax(scores))
        x = int(cand_rows[j])
        c = self.cluster_of.get(x)
        if labels[j] != 1 or c is None:
            return labels
        if self.size(c) != 1 and self._rival(row, c, scorer, g) is None:
            return labels
        others = [int(cand_rows[i]) for i in range(len(scores)) if i != j and labels[i] >= 1]
        if g.sources is None and others and float(np.max(scorer([x] * len(others), others))) >= float(scores[j]):
            return labels  # x has a better partner than this record
        out = labels.copy()
        out[j] = 2
        return out

    def remove(self, row: int) -> tuple[int, list[int]]:
        """Take an erased row out of its cluster: (the cluster it was in, the rows left there). When it
        founded the cluster and others remain, they are re-keyed under the earliest of them (cluster ids
        derive from founding records, and the erased record's id must not name a cluster any more)."""
        cluster = self.cluster_of.pop(row)
        rest = [r for r in self.members.pop(cluster) if r != row]
        if not rest:
            return cluster, []
        key = cluster if cluster != row else min(rest)
        for r in rest:
            self.cluster_of[r] = key
        self.members[key] = rest
        return cluster, rest

    def recheck(self, cluster: int, scorer: PairScorer, g: Guards) -> list[tuple[int, list[int]]]:
        """Re-check a cluster after one of its records was erased: the same average-linkage split as after
        a disagreeing join (`_split`), down to two members (the erased record may have been the only thing
        holding a pair together). Returns the pieces split off as (new founding row, rows)."""
        return self._split(cluster, scorer, g, min_size=2)

    def _split(self, cluster: int, scorer: PairScorer, g: Guards,
               min_size: int = 3) -> list[tuple[int, list[int]]]:
        """Re-check a cluster from all its member pairs (average linkage, stopping at the merge bar) and
        split it when it falls apart; returns the pieces split off as (new founding row, rows). With
        `g.partner`, two groups may only join when no pair between them conflicts (`g.judge`; without one,
        falls below the merge bar) and one pair between them is a near-reciprocal match (module docstring)."""
        members = sorted(self.members[cluster])
        n = len(members)
        if n < min_size or n > 2 * g.link_members:
            return []
        ii, jj = np.triu_indices(n, 1)
        sim = np.zeros((n, n), np.float32)
        left, right = [members[i] for i in ii], [members[j] for j in jj]
        conflict = said = None
        if g.partner and g.judge is not None:
            scores, conflict, said = g.judge(left, right)
            if said is not None and conflict is not None:  # a pair answered "no" is a conflict
                conflict = conflict | (said < 0)
        else:
            scores = scorer(left, right)
        sim[ii, jj] = sim[jj, ii] = scores
        groups = [[i] for i in range(n)]
        bar = g.merge_support * g.match_threshold
        # The size prior: a group of three or more needs its mean past the match threshold plus the penalty.
        big = bar if g.size_penalty <= 0 else max(bar, _raise(g.match_threshold, g.size_penalty))
        # What keeps two groups apart in partner mode: a conflicting pair between them where the profile's
        # comparisons can say so, else (no conflict evidence) any pair below the merge bar.
        if conflict is None:
            apart = sim < bar
        else:
            apart = np.zeros((n, n), bool)
            apart[ii, jj] = apart[jj, ii] = conflict
        # Average linkage. The group means are kept in a matrix and only the merged group's row is recomputed
        # after a merge (the others are unchanged), with the same block means as a full rescan; one argmax
        # then finds the first best pair in row order, as the Python double loop over all pairs did.
        upper = np.triu(np.ones((n, n), bool), 1)
        means = np.where(upper, sim.astype(np.float64), -1.0)
        # Partner mode: `allowed[a, b]` says groups a and b may join (no pair between them below the merge
        # bar, one of them a near-reciprocal match); average linkage alone keeps everything allowed.
        allowed = upper.copy()
        near = np.ones((n, n), bool)
        first = np.zeros(n, np.int64)  # each member's best partner in the cluster (partner mode)
        if g.partner:
            # A pair answered "yes" is near-reciprocal, and not what its records' other partners are measured
            # against (its score is the answer's, beside which every model score would look far).
            yes = np.zeros((n, n), bool)
            if said is not None:
                yes[ii, jj] = yes[jj, ii] = said > 0
            best = np.where(np.eye(n, dtype=bool) | yes, -np.inf, sim).max(axis=1)
            near = ((sim >= g.match_threshold) & (sim >= best[:, None] - g.partner_margin)
                    & (sim >= best[None, :] - g.partner_margin)) | yes
            allowed = upper & ~apart & near
            # A lone record may join its best partner's group when it matches every member (docstring).
            first = np.where(np.eye(n, dtype=bool), -np.inf, sim).argmax(axis=1)
            rows = np.arange(n)
            lone = (sim[rows, first] >= g.match_threshold) & ~apart[rows, first]
            allowed[np.minimum(rows, first)[lone], np.maximum(rows, first)[lone]] = True
        while len(groups) > 1:
            m = len(groups)
            sizes = np.array([len(grp) for grp in groups])
            need = np.where(sizes[:, None] + sizes[None, :] > 2, big, bar)
            a, b = divmod(int(np.argmax(np.where(allowed & (means >= need), means, -1.0))), m)
            if not allowed[a, b] or means[a, b] < need[a, b]:
                break
            groups[a] += groups.pop(b)
            means = np.delete(np.delete(means, b, 0), b, 1)
            allowed = np.delete(np.delete(allowed, b, 0), b, 1)
            for j in range(m - 1):
                if j != a:
                    lo, hi = groups[min(a, j)], groups[max(a, j)]
                    block = sim[np.ix_(lo, hi)]
                    means[min(a, j), max(a, j)] = float(block.mean())
                    if g.partner:
                        allowed[min(a, j), max(a, j)] = bool(not apart[np.ix_(lo, hi)].any() and (
                            near[np.ix_(lo, hi)].any() or _lone_joins(lo, hi, sim, first, g.match_threshold)
                            or _lone_joins(hi, lo, sim, first, g.match_threshold)))
        if len(groups) == 1:
            return []
        pieces = sorted(([members[i] for i in grp] for grp in groups), key=lambda p: (-len(p), min(p)))
        keep = next((p for p in pieces if cluster in p), pieces[0])
        out = []
        for piece in pieces:
            if piece is keep:
                continue
            founder = min(piece)
            for r in piece:
                self.cluster_of[r] = founder
            self.members[founder] = sorted(piece)
            out.append((founder, sorted(piece)))
        self.members[cluster] = [r for r in self.members[cluster] if self.cluster_of[r] == cluster]
        return out


def _lone_joins(one: list[int], group: list[int], sim: np.ndarray, first: np.ndarray, threshold: float) -> bool:
    """Whether `one` is a lone record whose best partner (`first`) is in `group` and which is a match with
    every member of it: the partner re-check's way in for a copy scored below a group's near-identical pairs
    (`ClusterState._split`; conflicts are checked by the caller)."""
    return len(one) == 1 and int(first[one[0]]) in group and float(sim[one[0], group].min()) >= threshold


def _logit(p: float) -> float:
    """Log-odds, clipped so that two probabilities that round to 1 compare as equal, not as infinities."""
    q = min(max(p, 1e-6), 1 - 1e-6)
    return float(np.log(q / (1 - q)))


def _raise(p: float, nats: float) -> float:
    """The probability whose log-odds are `p`'s plus `nats` (a threshold outside (0, 1) is kept)."""
    if not 0.0 < p < 1.0:
        return p
    return float(1.0 / (1.0 + np.exp(-(_logit(p) + nats))))
