"""Late links as Redis writes and events (the I/O-free half of `Service._sync`, see consumer/service/changelog.py).

A late link merges two clusters whose twins were decided at the same moment by two members. It is written
like any batch's merge (the atomic script resolves forward pointers, so applying it twice, or after
another member merged the same clusters, is a no-op) and announced with a `clusters.merged` event whose
subject is this member's own record; `source` names the changelog position that revealed the twin (topic
`dedup.changelog`), since no input message caused it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence

from consumer.engine.pipeline import Decision, Pipeline
from consumer.io.events import MERGED, Source, build_events
from consumer.service.batch import Output
from consumer.service.changelog import LateLink
from consumer.store.redis import BatchWrite

__all__ = ["CHANGELOG_SOURCE", "RENAME_ATTEMPTS", "late_link_write", "late_link_outputs", "clusters_to_resolve",
           "freshen", "resolved_link"]

#: The `source.topic` of late-link events.
CHANGELOG_SOURCE = "dedup.changelog"


#: Writes refused because another member merged some of their clusters meanwhile (`MergesMoved`), each
#: followed by naming the clusters again, before the last attempt writes without that check (an absorbed
#: cluster may then be announced twice).
RENAME_ATTEMPTS = 3


def late_link_write(link: LateLink) -> BatchWrite:
    """One link's write: its own, so `applied_merges` says whether *this* link changed Redis (another
    member, or a record decided meanwhile, may have merged the same clusters: then no event is sent)."""
    write = BatchWrite("late-" + uuid.uuid4().hex)
    write.add_merge(link.surviving_cluster_id, link.merged_cluster_ids)
    write.set_canonical(link.surviving_cluster_id, link.canonical_id)
    return write


def resolved_link(link: LateLink, where: Mapping[str, tuple[str, int]]) -> LateLink | None:
    """The link named as Redis knows its clusters now (`where`: `resolve_clusters`), or None when they are one
    cluster there already. Why: the link was found on this member's replica, which lags the others; another
    member may have merged either cluster meanwhile, and a link written and announced under the old names
    would announce an absorbed cluster a second time (seen with 3 members and a kill -9 on a shared Milvus
    index, where replicas lag more). Same rule as `freshen`: the older founder survives."""
    ids = [where.get(c, (c, -1)) for c in [link.surviving_cluster_id, *link.merged_cluster_ids]]
    live = list(dict.fromkeys(ids))
    survivor = min(live, key=lambda cs: (cs[1] < 0, cs[1]))[0]
    merged = sorted({c for c, _seq in live if c != survivor})
    if not merged:
        return None
    link.match.cluster_id = where.get(link.match.cluster_id, (link.match.cluster_id, -1))[0]
    return LateLink(link.record_id, survivor, merged, link.canonical_id, link.match)


def late_link_outputs(links: Sequence[LateLink], pipe: Pipeline, position: int, now: float) -> list[Output]:
    out: list[Output] = []
    for link in links:
        d = Decision(link.record_id, link.surviving_cluster_id, link.canonical_id, "merged", -1,
                     list(link.merged_cluster_ids), [link.match])
        events = build_events(d, Source(CHANGELOG_SOURCE, 0, position, None), model_version=pipe.model_version,
                              config_version=pipe.config_version, now=now,
                              schema_version=pipe.settings.service.event_schema)
        out.extend(Output.from_event(e) for e in events if e["event_type"] == MERGED)
    return out


def clusters_to_resolve(decisions: Iterable[Decision]) -> set[str]:
    """Cluster ids a batch's events would name that another member may have merged away meanwhile."""
    out: set[str] = set()
    for d in decisions:
        if d.outcome in ("joined", "merged"):
            out.add(d.cluster_id)
            out.update(d.merged_cluster_ids)
        out.update(m.cluster_id for m in d.matches)
    return out


def freshen(decisions: Iterable[Decision], where: Mapping[str, tuple[str, int]]) -> int:
    """Name clusters in the batch's decisions as Redis knows them now, before events are built (in place).

    Why: a member decides with its replica, which lags the other members by the consistency window. A
    cluster it joins or bridges may have been merged into another meanwhile; its events would then name an
    absorbed cluster, and a merge it announces might repeat one announced already. Resolved here: ids
    through forward pointers, the survivor of a bridge chosen by Redis's rule (the older founder, by seq;
    a cluster not in Redis yet is the youngest), absorbed clusters that already live in the survivor
    dropped, and a bridge left with nothing to absorb becomes a join. Returns how many decisions changed."""
    changed = 0
    for d in decisions:
        for m in d.matches:
            m.cluster_id = where.get(m.cluster_id, (m.cluster_id, -1))[0]
        if d.outcome not in ("joined", "merged"):
            continue
        before = (d.cluster_id, list(d.merged_cluster_ids), d.outcome)
        ids = [where.get(c, (c, -1)) for c in [d.cluster_id, *d.merged_cluster_ids]]
        live = list(dict.fromkeys(ids))
        survivor = min(live, key=lambda cs: (cs[1] < 0, cs[1]))[0]
        d.cluster_id = survivor
        d.merged_cluster_ids = sorted({c for c, _seq in live if c != survivor})
        d.outcome = "merged" if d.merged_cluster_ids else "joined"
        changed += before != (d.cluster_id, d.merged_cluster_ids, d.outcome)
    return changed
