"""Late links as Redis writes and events (the I/O-free half of `Service._sync`, see consumer/replica.py).

A late link merges two clusters whose twins were decided at the same moment by two members. It is written
like any batch's merge (the atomic script resolves forward pointers, so applying it twice, or after
another member merged the same clusters, is a no-op) and announced with a `clusters.merged` event whose
subject is this member's own record; `source` names the changelog position that revealed the twin (topic
`dedup.changelog`), since no input message caused it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from consumer.io.events import MERGED, Source, build_events
from consumer.pipeline import Decision, Pipeline
from consumer.replica import LateLink
from consumer.service_batch import Output
from consumer.store.redis import BatchWrite

__all__ = ["CHANGELOG_SOURCE", "late_link_write", "late_link_outputs"]

#: The `source.topic` of late-link events.
CHANGELOG_SOURCE = "dedup.changelog"


def late_link_write(link: LateLink) -> BatchWrite:
    """One link's write: its own, so `applied_merges` says whether *this* link changed Redis (another
    member, or a record decided meanwhile, may have merged the same clusters: then no event is sent)."""
    write = BatchWrite("late-" + uuid.uuid4().hex)
    write.add_merge(link.surviving_cluster_id, link.merged_cluster_ids)
    write.set_canonical(link.surviving_cluster_id, link.canonical_id)
    return write


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
