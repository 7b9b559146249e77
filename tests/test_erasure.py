"""Erasure without a broker: the engine forgets a record everywhere it holds one, the Redis script removes
it and re-founds its cluster, the events validate (issue 23).

Why: the integration tests (tests/test_service_erasure.py) show the doors and the group end to end; these
pin the pieces: a pipeline that forgot a record decides as if it had never held it (no id, no vector, no
count left; its snapshot holds nothing of it), and Redis is consistent after any erasure (`verify`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pytest
from harness.kafka import FakeMessage
from harness.service import schema_validator

from consumer.config import load_settings
from consumer.engine.records import Record
from consumer.generate import write_crm
from consumer.io.artifacts import build_pipeline
from consumer.io.batch import iter_records
from consumer.io.events import Source, erasure_events
from consumer.service.batch import Batch, assemble
from consumer.service.changelog import Replica, parse_split
from consumer.service.erasure import parse_erasure
from consumer.service.snapshot import load_snapshot, save_snapshot
from consumer.store.erasure import id_hash
from consumer.store.record_state import cluster_id_for
from consumer.store.redis import RedisStateStore


@pytest.fixture(scope="module")
def recs(tmp_path_factory: pytest.TempPathFactory) -> list[Record]:
    d = tmp_path_factory.mktemp("crm")
    write_crm(d / "crm.csv", d / "truth.csv", 700, 23)
    return [r for _, r in iter_records(d / "crm.csv", load_settings(env={})) if isinstance(r, Record)]


def _consistent(pipe: object) -> None:
    cl = pipe.clusters  # type: ignore[attr-defined]
    for key, members in cl.members.items():
        assert members and all(cl.cluster_of[m] == key for m in members)
    assert sum(len(m) for m in cl.members.values()) == len(cl.cluster_of)
    assert set(pipe.canonical) == set(cl.members)  # type: ignore[attr-defined]


def test_engine_forgets_a_record_and_rechecks_its_cluster(recs: list[Record], tmp_path: Path) -> None:
    s = load_settings(env={})
    a = build_pipeline(s)
    for i in range(0, 500, 125):
        a.process(recs[i: i + 125])
    ids = a.store.record_ids
    big = sorted(a.clusters.members.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    founder = ids[big[0][0]]  # founded a multi-record cluster
    member = ids[max(big[1][1])]  # a later member of another
    victims = [founder, member]
    rows = [a.store.row_of[v] for v in victims]
    vecs = a.blocker.vectors(a.store.gather(np.array(rows)))
    counts_before = a.frequencies.records
    done = a.erase([*victims, "no-such-id"])
    assert [e.found for e in done] == [True, True, False]
    assert done[0].founder and done[0].cluster_id == cluster_id_for(founder)
    assert not any(v in a.store.row_of or v in a.store.record_ids for v in victims)
    assert not any(v in a.assignments() for v in victims)
    assert a.frequencies.records == counts_before - 2
    found, _sims = a.blocker.index.query(vecs, 5)
    assert not set(found.ravel().tolist()) & set(rows)  # the graph no longer returns them
    assert a.erase(victims) and all(not e.found for e in a.erase(victims))  # idempotent
    checks = [a.recheck(e) for e in done if e.found]
    _consistent(a)
    first = checks[0]
    assert first.split_cluster_id == cluster_id_for(founder)  # every remaining record moved to a new id
    assert first.cluster_id != cluster_id_for(founder) and first.pieces
    assert {r for p in first.pieces for r in p.record_ids} == set(done[0].rest)
    # A snapshot holds nothing of them, and a member restored from it decides exactly the same.
    info = save_snapshot(a, 7, tmp_path, {"config_version": a.config_version})
    raw = b"".join(p.read_bytes() for p in info.path.iterdir())
    assert not any(v.encode() in raw for v in victims)
    assert not any(v.tobytes() in raw for v in vecs)
    b = build_pipeline(s, text_encoder=a.text)
    assert load_snapshot(b, tmp_path, {"config_version": a.config_version}) is not None
    assert b.assignments() == a.assignments()
    assert [d.to_dict() for d in a.process(recs[500:600])] == [d.to_dict() for d in b.process(recs[500:600])]
    # An erased id sent again is a new record, not a replay.
    again = next(r for r in recs if r.record_id == member)
    assert a.process([again])[0].outcome != "replay"


def test_replica_forgets_on_an_erasure_entry(recs: list[Record]) -> None:
    s = load_settings(env={})
    a = build_pipeline(s)
    a.process(recs[:200])
    gone = a.store.record_ids[5]
    rep = Replica(100)
    out = rep.apply(a, [f"e{gone}", "eunknown"], {})
    assert rep.position == 102 and [(p, e.found) for p, e in out.erased] == [(100, True), (101, False)]
    assert gone not in a.store.row_of


def test_erasure_events_validate(recs: list[Record]) -> None:
    s = load_settings(env={})
    a = build_pipeline(s)
    a.process(recs[:300])
    founder = a.store.record_ids[max(a.clusters.members, key=lambda k: len(a.clusters.members[k]))]
    (e,) = a.erase([founder])
    done = a.recheck(e)
    events = erasure_events(done, e.cluster_id or "", Source("dedup.erasure", 0, 42, None),
                            model_version="m", config_version="c", now=time.time())
    validator = schema_validator("2")
    for ev in events:
        assert not [x.message for x in validator.iter_errors(ev)], ev
    assert [ev["event_type"] for ev in events] == ["record.erased", "cluster.split"]
    assert events[0]["record_id"] == founder and events[0]["matches"] == []
    bad = dict(events[0], outcome="new")
    assert list(validator.iter_errors(bad))  # an erased event carries no decision fields


@pytest.mark.parametrize("value,expected", [
    (b'{"record_id": "c1"}', "c1"), (b'"c2"', "c2"), (b"17", "17"), (b"{not json", None), (b"[1]", None),
    (b'{"id": "x"}', None), (b'{"record_id": ""}', None), (b"", None), (None, None), (b"true", None),
    (orjson.dumps({"record_id": "x" * 600}), None)])
def test_erasure_messages_are_parsed_or_refused(value: bytes | None, expected: str | None) -> None:
    assert parse_erasure(value, 512) == expected


def test_redis_erase_script_removes_and_refounds(recs: list[Record], redis_url: str, redis_prefix: str) -> None:
    """The store side: a founder's cluster is re-founded under its earliest record, a member's cluster
    keeps its id, unknown ids change nothing, the audit trail names no id, `verify` stays clean."""
    s = load_settings(env={})
    pipe = build_pipeline(s)
    store = RedisStateStore(redis_url, redis_prefix)
    for i in range(0, 300, 100):
        batch = Batch([FakeMessage(j) for j in range(i, i + 100)])  # type: ignore[list-item]
        batch.good = list(zip(batch.messages, recs[i: i + 100]))  # type: ignore[arg-type]
        batch.fps = ["f" * 32] * 100
        batch.decisions = pipe.process(recs[i: i + 100])
        assemble(batch, pipe, time.time())
        assert batch.write is not None
        store.write_batch(batch.write, "2026-01-01T00:00:00.000Z")
    final = dict(store.export_clusters())
    by_cluster: dict[str, list[str]] = {}
    for rid, cid in final.items():
        by_cluster.setdefault(cid, []).append(rid)
    multi = sorted((c for c, m in by_cluster.items() if len(m) > 1), key=lambda c: -len(by_cluster[c]))
    founder_cluster = multi[0]
    founder = store.client.hget(store.key("clmeta", founder_cluster), "founder").decode()
    other = next(r for r in by_cluster[multi[1]] if store.client.hget(
        store.key("clmeta", multi[1]), "founder").decode() != r)
    head = store.log_length()
    done = store.erase([founder, other, "nope", founder], door="cli", hash_key="k", now_iso="2026-01-02T00:00:00Z")
    assert done == {founder: True, other: True, "nope": False}
    assert store.verify() == []
    assert not store.existing([founder, other])
    assert store.stored_payload(founder) is None and store.client.get(store.key("ev", other)) is None
    rest = sorted(set(by_cluster[founder_cluster]) - {founder})
    new_founder = min(rest, key=lambda r: int(store.client.hget(store.key("rec", r), "seq")))
    assert {store.record_cluster(r) for r in rest} == {cluster_id_for(new_founder)}
    assert not store.client.exists(store.key("clmeta", founder_cluster))
    assert store.record_cluster(next(r for r in by_cluster[multi[1]] if r != other)) == multi[1]
    entries = store.read_log(head)
    split_founder, moved = parse_split(entries[1])
    assert entries[0] == f"e{founder}" and split_founder == new_founder and sorted(moved) == rest
    assert f"e{other}" in entries and len(entries) == 3
    trail = store.audit_trail()
    assert [e["h"] for e in trail[-2:]] == [id_hash("k", founder), id_hash("k", other)]
    assert founder.encode() not in orjson.dumps(trail)
    assert store.erase([founder], door="api", hash_key="k", now_iso="2026-01-02T00:00:00Z") == {founder: False}
    assert store.log_length() == head + 3  # an unknown id appends nothing
    assert store.generations([founder, other, "nope"], "k") == {founder: 1, other: 1}


def test_a_batch_decided_before_an_erasure_writes_no_erased_id_back(
        recs: list[Record], redis_url: str, redis_prefix: str) -> None:
    """The race behind a flaky end-to-end run: a member decides a batch on a replica that still holds X,
    X is erased (by another member's door) before the batch is written. The batch names the changelog
    position it saw; the script reports X as *raced*, the store deletes the batch's own stored events that
    name X (the re-checking member's scrub may have run already), and a split piece founded by X is not
    written (no erased id back as a founder), so the member reloads."""
    s = load_settings(env={})
    pipe = build_pipeline(s)
    store = RedisStateStore(redis_url, redis_prefix)

    def batch_of(rows: list[Record], first: int) -> Batch:
        batch = Batch([FakeMessage(j) for j in range(first, first + len(rows))])  # type: ignore[list-item]
        batch.good = list(zip(batch.messages, rows))  # type: ignore[arg-type]
        batch.fps = ["f" * 32] * len(rows)
        batch.decisions = pipe.process(rows)
        assemble(batch, pipe, time.time())
        assert batch.write is not None
        return batch

    for i in range(0, 200, 100):
        store.write_batch(batch_of(recs[i: i + 100], i).write, "2026-01-01T00:00:00.000Z")  # type: ignore[arg-type]
    final = dict(store.export_clusters())
    sizes: dict[str, int] = {}
    for cid in final.values():
        sizes[cid] = sizes.get(cid, 0) + 1
    gone = next(r for r, c in final.items() if sizes[c] == 1)  # a singleton: its twin will match it
    founder = next(r for r, c in final.items() if sizes[c] > 1
                   and store.client.hget(store.key("clmeta", c), "founder").decode() == r)
    mates = sorted(r for r, c in final.items() if c == final[founder] and r != founder)
    twin = replace(next(r for r in recs if r.record_id == gone), record_id="twin-of-a-gone-record")
    seen = store.log_length()
    batch = batch_of([twin], 200)  # decided while the replica still holds `gone`
    write = batch.write
    assert write is not None and any(f'"{gone}"'.encode() in o.value for o in batch.events[twin.record_id])
    write.add_split(final[founder], [(cluster_id_for(founder), founder, [founder, *mates])])
    assert store.erase([gone, founder], door="api", hash_key="k", now_iso="2026-01-02T00:00:00Z", scrub=True) \
        == {gone: True, founder: True}
    write.seen = seen
    n, conflicts = store.write_batch(write, "2026-01-02T00:00:01.000Z")
    assert (n, conflicts) == (1, []) and sorted(write.raced) == sorted([gone, founder])
    assert write.dropped_pieces == 1
    assert store.stored_events([twin.record_id]) == {}  # its events named `gone`: deleted, not kept
    assert store.existing([twin.record_id]) == {twin.record_id}
    values = [v for k in store.client.scan_iter(match=redis_prefix + "*")
              if store.client.type(k) == b"hash" for v in store.client.hgetall(k).values()]
    assert gone.encode() not in values and founder.encode() not in values
    after = store.read_log(store.log_length() - 1)  # the batch's own entry (its record), no split
    assert after == [f"r{twin.record_id}"]
    assert store.verify() == []
