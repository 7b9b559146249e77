"""What `Pipeline.process` answers: a `Decision` per record, with the `Match`es that explain it and the
`Split`s it caused; and the `Encoded` micro-batch it may be handed ahead. A leaf module (no engine imports),
so code that only needs the types can import them without the pipeline; `consumer.engine.pipeline`
re-exports them, so `from consumer.engine.pipeline import Decision` works.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Match", "Decision", "Split", "Encoded", "replay_clusters"]


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
class Split:
    """A piece split off a cluster when later evidence showed the cluster was wrong (a new cluster)."""

    cluster_id: str
    founder_id: str
    canonical_id: str
    record_ids: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"cluster_id": self.cluster_id, "canonical_id": self.canonical_id, "record_ids": self.record_ids}


@dataclass
class Decision:
    record_id: str
    cluster_id: str
    canonical_id: str
    #: The one outcome vocabulary: batch lines print it, events carry it (consumer.io.events.EVENTS_FOR_OUTCOME).
    outcome: str  # "new" | "joined" | "merged" | "replay"
    row: int
    merged_cluster_ids: list[str] = field(default_factory=list)
    matches: list[Match] = field(default_factory=list)
    #: After this record joined, its cluster was split: the cluster that kept its id, and the new pieces.
    split_cluster_id: str | None = None
    splits: list[Split] = field(default_factory=list)
    #: The founding record of `split_cluster_id` (the service updates its keeper; not in the output line).
    split_founder_id: str | None = None
    #: The keeper of `split_cluster_id` after the split (it may change when its keeper went to a piece).
    split_canonical_id: str | None = None

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
                "matches": [m.to_dict() for m in self.matches],
                **({"split_cluster_id": self.split_cluster_id, "split_canonical_id": self.split_canonical_id,
                    "splits": [p.to_dict() for p in self.splits]} if self.splits else {})}


@dataclass
class Encoded:
    """A micro-batch's encoder output, computed ahead of `Pipeline.process` (`Pipeline.process_stream`):
    `cols`, name -> array by record (`consumer.store.memory.Columns`)."""

    record_ids: list[str]
    cols: dict[str, np.ndarray]
    #: The blocker's index vectors of `cols` (computed on the encode thread too; None when empty).
    vecs: np.ndarray | None = None
    #: The waiting batch's own encoding when records joined it (`Pipeline.encode_in_worker(..., joining=)`):
    #: its rows come first here, so an index search started ahead for it still serves them.
    head: Encoded | None = None
    #: Each row's persisted payload (`consumer.store.record_state.encode_rows`), encoded on the encode thread
    #: when the caller persists every decision (`Pipeline.payloads_ahead`), with the column names it holds
    #: in their order; None otherwise.
    payloads: list[bytes] | None = None
    payload_columns: tuple[str, ...] = ()

    def rows_of(self, ids: list[str]) -> np.ndarray | None | bool:
        """Which rows hold the records `ids`: None = all of them in order, False = not all from this
        encoding (encode afresh rather than guess), else their positions."""
        if ids == self.record_ids:
            return None
        pos = {rid: i for i, rid in enumerate(self.record_ids)}
        return False if any(rid not in pos for rid in ids) else np.array([pos[rid] for rid in ids], np.int64)

    def then(self, more: Encoded) -> Encoded:
        """These rows followed by `more`'s (records that joined this batch), `head` pointing at these."""
        if not self.record_ids or not more.record_ids:
            return self if not more.record_ids else more
        cols = {name: np.concatenate([arr, more.cols[name]]) for name, arr in self.cols.items()}
        vecs = None if self.vecs is None or more.vecs is None else np.concatenate([self.vecs, more.vecs])
        same = self.payloads is not None and more.payloads is not None and self.payload_columns == more.payload_columns
        return Encoded(self.record_ids + more.record_ids, cols, vecs, self.head if self.head is not None else self,
                       payloads=self.payloads + more.payloads if same else None,  # type: ignore[operator]
                       payload_columns=self.payload_columns if same else ())


def replay_clusters(lines: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, str]]:
    """record id -> (cluster id, canonical id) from decision lines (`Decision.to_dict`, in order): what a
    consumer of `dedup batch --out` keeps, and exactly the `--clusters` table. Per line: the record goes
    to `cluster_id`; every record of `merged_cluster_ids` moves to it; every piece in `splits` takes its
    `record_ids` to its own `cluster_id`; keepers come from `canonical_id`, `split_canonical_id` and each
    piece's `canonical_id`. `replay` lines change nothing."""
    cluster: dict[str, str] = {}
    members: dict[str, set[str]] = {}
    canonical: dict[str, str] = {}

    def move(record: str, to: str) -> None:
        old = cluster.get(record)
        if old is not None:
            members[old].discard(record)
        cluster[record] = to
        members.setdefault(to, set()).add(record)

    for d in lines:
        if d.get("outcome") == "replay":
            continue
        to = d["cluster_id"]
        for gone in d.get("merged_cluster_ids", ()):
            for record in list(members.get(gone, ())):
                move(record, to)
            members.pop(gone, None)
            canonical.pop(gone, None)
        move(d["record_id"], to)
        for piece in d.get("splits", ()):
            for record in piece["record_ids"]:
                move(record, piece["cluster_id"])
            canonical[piece["cluster_id"]] = piece["canonical_id"]
        if d.get("split_cluster_id") and d.get("split_canonical_id"):
            canonical[d["split_cluster_id"]] = d["split_canonical_id"]
        canonical[cluster[d["record_id"]]] = d["canonical_id"]
    return {r: (c, canonical.get(c, r)) for r, c in cluster.items()}
