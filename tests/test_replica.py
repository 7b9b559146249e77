"""The replica core without a broker: snapshots decide identically, the changelog converges, late links.

Why: a member restarted from a snapshot must decide exactly as the member that wrote it would have, and two
replicas fed the same changelog must hold the same clusters under the same ids (consumer/service/changelog.py,
consumer/service/snapshot.py). Pure and fast; the group behaviour itself is in tests/test_service_scaleout.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from consumer.config import load_settings
from consumer.engine.records import Record
from consumer.generate import write_crm
from consumer.io.artifacts import build_pipeline
from consumer.io.batch import iter_records
from consumer.service.changelog import Replica, merge_entry, parse_merge, parse_split, split_entry
from consumer.service.snapshot import load_snapshot, save_snapshot


@pytest.fixture(scope="module")
def recs(tmp_path_factory: pytest.TempPathFactory) -> list[Record]:
    d = tmp_path_factory.mktemp("crm")
    write_crm(d / "crm.csv", d / "truth.csv", 900, 8)
    return [r for _, r in iter_records(d / "crm.csv", load_settings(env={})) if isinstance(r, Record)]


def test_snapshot_restart_decides_identically(recs: list[Record], tmp_path: Path) -> None:
    s = load_settings(env={})
    a = build_pipeline(s)
    for i in range(0, 600, 150):
        a.process(recs[i: i + 150])
    info = save_snapshot(a, 1234, tmp_path, {"config_version": a.config_version})
    assert info.records == 600 and (tmp_path / "CURRENT").read_text() == info.path.name
    b = build_pipeline(s, text_encoder=a.text)
    assert load_snapshot(b, tmp_path, {"config_version": "other"}) is None  # other settings: refused
    got = load_snapshot(b, tmp_path, {"config_version": a.config_version})
    assert got is not None and got.position == 1234 and len(b.store) == 600
    assert b.assignments() == a.assignments() and b.canonical == a.canonical
    assert [d.to_dict() for d in a.process(recs[600:])] == [d.to_dict() for d in b.process(recs[600:])]


def test_merge_entries_carry_any_record_id() -> None:
    for s, a in [("a", "b"), ("ü:x y", "é"), ("12:3", "")]:
        assert parse_merge(merge_entry(s, a)) == (s, a)


def test_twins_decided_apart_are_linked_by_the_later_writer(recs: list[Record]) -> None:
    """Two replicas decide a record each without seeing the other's (the race); the member whose record
    was written second finds the link when it reads the first one's entry."""
    s = load_settings(env={})
    a, b = build_pipeline(s), build_pipeline(s)
    base = recs[:300]
    for p in (a, b):
        p.process(base)
    # A twin pair from the generator's truth is not needed: a record and a copy under another id match.
    x = recs[300]
    y = dataclasses.replace(x, record_id=x.record_id + "-twin")
    (dx,) = a.process([x])
    (dy,) = b.process([y])
    assert dx.outcome == dy.outcome == "new"
    ra, rb = Replica(), Replica()
    ra.note_own([dx.row])
    rb.note_own([dy.row])
    states_x = {x.record_id: a.snapshot([dx.row])[0]}
    states_y = {y.record_id: b.snapshot([dy.row])[0]}
    log = [f"r{x.record_id}", f"r{y.record_id}"]  # x was written first
    res_a = ra.apply(a, log, states_y)  # A reads its own x first: x is no longer pending when y comes
    res_b = rb.apply(b, log, states_x)  # B reads x while its own y is still pending: the pair is its to link
    assert not res_a.links and len(res_b.links) == 1
    link = res_b.links[0]
    assert link.record_id == y.record_id and link.match.record_id == x.record_id
    assert b.assignments()[x.record_id] == b.assignments()[y.record_id]
    # Redis then logs the merge (older founder survives); A applies it and converges on the same id.
    ra.apply(a, [merge_entry(x.record_id, y.record_id)], {})
    rb.apply(b, [merge_entry(x.record_id, y.record_id)], {})
    assert a.assignments()[y.record_id] == a.assignments()[x.record_id] == b.assignments()[x.record_id]


def test_a_member_without_old_index_columns_still_links_twins_and_persists_every_column(recs: list[Record]) -> None:
    """A member on a shared Milvus collection keeps the index-only columns of its newest rows only
    (`SignatureStore.recent`). Its payloads still carry every column (other members index them), and a
    pending record of its own that left the ring is still scored against the foreign records it reads."""
    from consumer.store.record_state import decode_payload

    s = load_settings(env={})
    a = build_pipeline(s)
    b = build_pipeline(s, text_encoder=a.text, hold_index_only=False, recent_index_rows=4)
    assert "name_vec" not in b.store.column_names()
    for p in (a, b):
        p.process(recs[:300])
    x = recs[300]
    y = dataclasses.replace(x, record_id=x.record_id + "-twin")
    (dx,) = a.process([x])
    (dy,) = b.process([y])
    states_x = {x.record_id: a.snapshot([dx.row])[0]}
    columns_y = decode_payload(b.snapshot([dy.row])[0].payload)[0]
    assert set(columns_y) == set(decode_payload(states_x[x.record_id].payload)[0]) and "name_vec" in columns_y
    b.process(recs[301:306])  # y leaves b's ring of 4 rows
    assert not b.store.holds([dy.row])[0]
    rb = Replica()
    rb.note_own([dy.row])
    res_b = rb.apply(b, [f"r{x.record_id}", f"r{y.record_id}"], states_x)
    assert len(res_b.links) == 1 and res_b.links[0].match.record_id == x.record_id
    assert b.assignments()[x.record_id] == b.assignments()[y.record_id]
    assert b.store.holds([b.store.row_of[x.record_id]])[0]  # absorbed with every column: in the ring


def test_freshen_names_clusters_as_redis_knows_them() -> None:
    """A bridge decided on a stale replica: ids resolved, Redis's survivor rule, nothing announced twice."""
    from consumer.engine.pipeline import Decision, Match
    from consumer.service.sync import clusters_to_resolve, freshen

    m = Match("r0", "cl_x", 0.97, "match", {})
    bridge = Decision("r1", "cl_s", "r0", "merged", 5, ["cl_a", "cl_x"], [m])
    join = Decision("r2", "cl_x", "r0", "joined", 6, [], [])
    new = Decision("r3", "cl_r3", "r3", "new", 7, [], [])
    assert clusters_to_resolve([bridge, join, new]) == {"cl_s", "cl_a", "cl_x"}
    # cl_x was merged into cl_a elsewhere; cl_a's founder is older than cl_s's.
    where = {"cl_s": ("cl_s", 40), "cl_a": ("cl_a", 3), "cl_x": ("cl_a", 3)}
    assert freshen([bridge, join, new], where) == 2
    assert (bridge.cluster_id, bridge.merged_cluster_ids, bridge.outcome) == ("cl_a", ["cl_s"], "merged")
    assert (join.cluster_id, join.outcome) == ("cl_a", "joined") and m.cluster_id == "cl_a"
    # Both sides already one cluster in Redis: the bridge becomes a join (no second merge event).
    again = Decision("r4", "cl_s", "r0", "merged", 8, ["cl_a"], [])
    freshen([again], {"cl_s": ("cl_a", 3), "cl_a": ("cl_a", 3)})
    assert (again.cluster_id, again.merged_cluster_ids, again.outcome) == ("cl_a", [], "joined")


def test_split_entries_split_the_replica_once(recs: list[Record]) -> None:
    """A `cluster.split` decided on another member reaches this replica through the changelog: the piece
    becomes the cluster of its founder, the rest keeps its id, keepers follow; applying it again changes
    nothing, and the member that decided a split skips its own entry."""
    pipe = build_pipeline(load_settings(env={}))
    pipe.process(recs[:600])
    cl, ids = pipe.clusters, pipe.store.record_ids
    key = next(c for c, m in sorted(cl.members.items()) if len(m) >= 3)
    members = sorted(cl.members[key])
    piece = members[1:]  # everything but the founder splits off, founded by its earliest record
    entry = split_entry(ids[piece[0]], [ids[r] for r in piece])
    assert parse_split(entry) == (ids[piece[0]], [ids[r] for r in piece])
    replica = Replica()
    assert replica.apply(pipe, [entry], {}).splits == 1
    assert cl.members[key] == [key] and cl.members[piece[0]] == piece
    assert all(cl.cluster_of[r] == piece[0] for r in piece)
    assert pipe.canonical[key] == key and pipe.canonical[piece[0]] in piece
    before = pipe.assignments()
    assert replica.apply(pipe, [entry], {}).splits == 0 and pipe.assignments() == before
    own = Replica()
    own.note_own_splits([ids[piece[0]]])
    merged_back = split_entry(ids[key], [ids[r] for r in members])  # would undo the split if applied
    own.note_own_splits([ids[key]])
    assert own.apply(pipe, [merged_back], {}).splits == 0 and pipe.assignments() == before
    assert own.pending_splits == {ids[piece[0]]}


def test_a_late_link_is_named_as_redis_knows_its_clusters_now() -> None:
    """The replica that found the link lags the others: a cluster it names may have been merged meanwhile. The
    link is written and announced under the clusters Redis has (older founder survives), and not at all when
    both are one cluster there already (so no absorbed cluster is announced twice)."""
    from consumer.engine.decisions import Match
    from consumer.service.changelog import LateLink
    from consumer.service.sync import resolved_link

    def link() -> LateLink:
        return LateLink("own", "cl_a", ["cl_b"], "own", Match("foreign", "cl_b", 0.97, "match", {}))

    assert resolved_link(link(), {"cl_a": ("cl_x", 3), "cl_b": ("cl_x", 3)}) is None  # merged already
    moved = resolved_link(link(), {"cl_a": ("cl_a", 9), "cl_b": ("cl_y", 2)})
    assert moved is not None and (moved.surviving_cluster_id, moved.merged_cluster_ids) == ("cl_y", ["cl_a"])
    assert moved.match.cluster_id == "cl_y"
    same = resolved_link(link(), {"cl_a": ("cl_a", 1), "cl_b": ("cl_b", 5)})
    assert same is not None and (same.surviving_cluster_id, same.merged_cluster_ids) == ("cl_a", ["cl_b"])


class _FakeStore:
    """The Redis calls `ReplicaDuties._sync` makes, over a fixed changelog: `merged_already` makes Redis report
    the two clusters as one (another member linked them first)."""

    prefix = "t:"

    def __init__(self, log: list[str], states: dict[str, Any], merged_already: bool) -> None:
        self.log, self.states, self.merged_already = log, states, merged_already
        self.writes: list[Any] = []

    def read_log(self, position: int) -> list[str]:
        return self.log[position:]

    def fetch_states(self, ids: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
        return {i: self.states[i] for i in ids}, {i: "2026-01-01T00:00:00.000Z" for i in ids}

    def resolve_clusters(self, ids: list[str]) -> dict[str, tuple[str, int]]:
        return {c: (ids[0], 1) if self.merged_already else (c, n) for n, c in enumerate(ids)}

    def write_batch(self, write: Any, _now: str) -> tuple[int, list[str]]:
        write.applied_merges = 1
        self.writes.append(write)
        return 0, []


@pytest.mark.parametrize("merged_already", [False, True])
def test_late_links_are_counted_by_result(recs: list[Record], merged_already: bool) -> None:
    """`dedup_late_links{result}` counts the twins a member joined by the late-link rule (applied: a Redis
    merge and a `clusters.merged` event) apart from those another member had joined first (nothing sent).
    Why: the freshness figure of issue 39 (loadtest/freshness.py) is the share of twins that needed it."""
    from consumer.service.replica import ReplicaDuties
    from consumer.telemetry.metrics import Metrics

    s = load_settings(env={})
    a, b = build_pipeline(s), build_pipeline(s)
    for p in (a, b):
        p.process(recs[:200])
    x = recs[300]
    y = dataclasses.replace(x, record_id=x.record_id + "-twin")
    (dx,), (dy,) = a.process([x]), b.process([y])
    sent: list[str] = []

    class Producer:
        def produce(self, _topic: str, _value: bytes, _key: bytes, headers: list[tuple[str, str]]) -> None:
            sent.append(headers[0][1])

        def flush_and_check(self, timeout: float) -> int:
            return 0

    class Member(ReplicaDuties):
        pass

    m = Member()
    m.settings, m.svc, m.pipe, m.metrics, m.producer = s, s.service, b, Metrics(), Producer()
    m.store = _FakeStore([f"r{x.record_id}", f"r{y.record_id}"], {x.record_id: a.snapshot([dx.row])[0]},
                         merged_already)
    m.replica, m._reload_needed, m._deferred_erasures = Replica(), False, []
    m.replica.note_own([dy.row])
    m._retry = lambda _kind, _what, fn, _batch=None: fn()
    m._housekeeping = lambda: None
    m._after_erasures = lambda _erased, _batch: None
    m._sync()
    value = {r: m.metrics.late_links.labels(result=r)._value.get() for r in ("applied", "already_merged")}
    assert value == ({"applied": 0, "already_merged": 1} if merged_already else {"applied": 1, "already_merged": 0})
    assert sent == ([] if merged_already else ["clusters.merged"])
    assert b"dedup_late_links_total" in m.metrics.render()
