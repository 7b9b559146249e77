"""The Redis state store on a real Redis Cluster of three masters, beside the same checks on one Redis.

Why: Redis Cluster refuses what one server allows (a script or transaction over keys of several slots:
CROSSSLOT; a script sent to a master that does not own its keys: MOVED), and SCAN on one node sees only
that node's keys. The store must give the same answers on both (issue 39, item 2), through one code path:
on a cluster the prefix is a hash tag, so each script and transaction touches one slot.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis
from harness.redis import delete_prefix
from harness.service import committed_offset, crm_rows, running_service, service_settings, wait_for
from redis.cluster import RedisCluster

from consumer.cli import main as cli_main
from consumer.engine.clustering import cluster_id_for
from consumer.engine.state import RecordState
from consumer.store.connect import cluster_prefix, connect, is_cluster_url, parse_cluster_url
from consumer.store.redis import BatchWrite, RedisStateStore

pytestmark = pytest.mark.integration
NOW = "2025-01-01T00:00:00.000Z"


@pytest.fixture(params=["single", "cluster"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(URL, prefix as configured): one Redis or the three-master cluster, and a fresh prefix."""
    url = request.getfixturevalue("redis_url" if request.param == "single" else "redis_cluster_url")
    return url, f"dedup-test:{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(backend: tuple[str, str]) -> Iterator[RedisStateStore]:
    """The store of `backend`; its keys (on every master) deleted afterwards."""
    s = RedisStateStore(*backend)
    yield s
    try:
        delete_prefix(s.client, s.prefix)
    finally:
        s.close()


def masters(store: RedisStateStore) -> list[redis.Redis]:
    """A plain client per master (one for a single Redis): what a check of *every* node must look at."""
    if isinstance(store.client, RedisCluster):
        return [store.client.get_redis_connection(n) for n in store.client.get_primaries()]
    return [store.client]


def keys_on_every_master(store: RedisStateStore) -> list[bytes]:
    """Every key of the store, by SCAN on each master separately (not through the store's own reads): those
    of its slot and, on a cluster, the payloads and events in their records' own slots."""
    escaped = store.prefix.replace("[", "\\[")
    return [k for m in masters(store) for pattern in (escaped + "*", "{*}:" + escaped + "*")
            for k in m.scan_iter(match=pattern, count=1000)]


def payload_keys(store: RedisStateStore) -> list[bytes]:
    """The payloads kept in their records' own slots (none on one Redis)."""
    return [k for k in spread_keys(store) if (store.prefix + "pl:").encode() in k]


def spread_keys(store: RedisStateStore) -> list[bytes]:
    """Payloads and events kept in their records' own slots (none on one Redis)."""
    return [k for k in keys_on_every_master(store) if not k.startswith(store.prefix.encode())]


def getkeys_calls(store: RedisStateStore) -> int:
    """`COMMAND GETKEYS` calls served by the masters so far (redis-py's way to find a moving-key command's slot)."""
    stats = [m.info("commandstats").get("cmdstat_command|getkeys", {}) for m in masters(store)]
    return sum(int(s.get("calls", 0)) for s in stats)


def write(store: RedisStateStore, token: str, recs: list[tuple[str, str]],
          merges: list[tuple[str, list[str]]] = ()) -> tuple[int, list[str]]:
    b = BatchWrite(token)
    for rid, founder in recs:
        b.add_record(RecordState(rid, 0, founder, b"\x00\x01payload-" + rid.encode()), cluster_id_for(founder),
                     [b'{"event_id":"%s"}' % rid.encode()])
        b.set_canonical(cluster_id_for(founder), founder)
    for survivor, absorbed in merges:
        b.add_merge(survivor, absorbed)
    b.set_offset("in", 0, len(recs))
    return store.write_batch(b, NOW)


def dump(store: RedisStateStore) -> dict[bytes, object]:
    """Every key's type and value (hashes as dicts, lists, strings): to show a replay changes nothing."""
    c = store.client
    out: dict[bytes, object] = {}
    for k in keys_on_every_master(store):
        kind = c.type(k)
        out[k] = (c.hgetall(k) if kind == b"hash" else c.lrange(k, 0, -1) if kind == b"list"
                  else c.smembers(k) if kind == b"set" else c.get(k))
    return out


def test_cluster_urls_and_prefix() -> None:
    spec = parse_cluster_url("redis+cluster://user:p%40ss@h1:7001,h2:7002/0")
    assert spec.nodes == (("h1", 7001), ("h2", 7002)) and spec.username == "user" and spec.password == "p@ss"
    assert parse_cluster_url("rediss+cluster://h1:1").tls and is_cluster_url("redis+cluster://h:1")
    assert not is_cluster_url("redis://h:6379/0")
    for bad in ("redis+cluster://", "redis+cluster://h1", "redis+cluster://h1:1/3", "redis://h1:1"):
        with pytest.raises(ValueError):
            parse_cluster_url(bad)
    assert cluster_prefix("dedup") == cluster_prefix("dedup:") == "{dedup}:"
    assert cluster_prefix("{tenant}:dedup") == "{tenant}:dedup:" and cluster_prefix("x{}") == "{x{}}:"
    assert isinstance(connect("redis://127.0.0.1:1/0"), redis.Redis)


def test_a_bad_cluster_url_is_one_line_without_the_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(["export-clusters", "--redis", "redis+cluster://u:sekret@h1/0", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "not host:port" in err and "sekret" not in err and len(err.strip().splitlines()) == 1


def test_one_slot_per_store_and_scripts_routed(store: RedisStateStore) -> None:
    """Every key of the store but the payloads hashes to one slot: the batch, erasure and changelog scripts
    run whole on the master owning it, whichever seed node the client first reached. On a cluster each
    payload is in its record's own slot, so the payloads spread over every master."""
    ids = [f"r{i}" for i in range(30)]
    assert write(store, "t1", [(rid, "r0") for rid in ids]) == (30, [])
    keys = keys_on_every_master(store)
    assert len(keys) >= 60
    if not store.cluster:
        assert payload_keys(store) == [] and all(store.client.get(store.key("pl", r)) for r in ids)
        return
    assert store.prefix.startswith("{")
    own = [k for k in keys if k.startswith(store.prefix.encode())]
    assert len({store.client.keyslot(k) for k in own}) == 1
    holders = [m for m in masters(store) if any(True for _ in m.scan_iter(match=store.prefix + "*"))]
    assert len(masters(store)) == 3 and len(holders) == 1
    spread = payload_keys(store)
    assert sorted(spread) == sorted(store.payload_key(r, "t1").encode() for r in ids)
    assert {store.client.keyslot(k) for k in spread} == {store.client.keyslot(r) for r in ids}
    assert all(any(True for _ in m.scan_iter(match="{*}:*")) for m in masters(store))  # on every master
    assert not [r for r in ids if store.client.exists(store.key("pl", r))]  # nothing beside the records


def test_batches_merges_replays_and_stale_joins(store: RedisStateStore) -> None:
    """The single-Redis store test, on both: merge (older founder survives), a replay is a no-op and
    changes no key, a conflicting batch is reported, a stale join lands in the survivor."""
    assert write(store, "t1", [("a", "a"), ("b", "a"), ("c", "c")]) == (3, [])
    merge = [(cluster_id_for("a"), [cluster_id_for("c")])]
    assert write(store, "t2", [("d", "c")], merge) == (1, [])
    before = dump(store)
    assert write(store, "t2", [("d", "c")], merge) == (0, [])  # same token: a lost reply, no-op
    assert dump(store) == before
    assert write(store, "t3", [("d", "a")]) == (0, ["d"])
    assert write(store, "t4", [("e", "c")]) == (1, [])  # joins the absorbed cluster: lands in the survivor
    assert dict(store.export_clusters()) == dict.fromkeys("abcde", cluster_id_for("a"))
    assert store.verify() == [] and store.record_count() == 5
    assert store.resolve_clusters([cluster_id_for("c")]) == {cluster_id_for("c"): (cluster_id_for("a"), 1)}
    info = store.cluster_info(cluster_id_for("c"), 10)
    assert info is not None and info["members"] == list("abcde") and info["merged_into"] == cluster_id_for("a")
    states = {s.record_id: s for s in store.load_states()}
    assert [states[r].seq for r in "abcde"] == [1, 2, 3, 4, 5]
    assert store.stored_events(["d", "zz"]) == {"d": [b'{"event_id":"d"}']}
    assert store.read_log(0) == ["ra", "rb", "rc", "rd", "m1:ac", "re"]


def test_export_clusters_cli(store: RedisStateStore, backend: tuple[str, str], tmp_path: Path) -> None:
    write(store, "t1", [("a", "a"), ("b", "a"), ("c", "c")])
    out = tmp_path / "clusters.jsonl"
    url, prefix = backend
    assert cli_main(["export-clusters", "--redis", url, "--redis-prefix", prefix, "--out", str(out)]) == 0
    got = {e["record_id"]: e["cluster_id"] for e in map(orjson.loads, out.read_bytes().splitlines())}
    assert got == {"a": cluster_id_for("a"), "b": cluster_id_for("a"), "c": cluster_id_for("c")}


def test_erasure_leaves_no_key_on_any_master(store: RedisStateStore) -> None:
    write(store, "t1", [("alice", "alice"), ("bob", "alice"), ("carol", "carol")])
    assert store.erase(["alice", "nobody"], door="test", hash_key="k", now_iso=NOW) == {"alice": True,
                                                                                        "nobody": False}
    assert not [k for k in keys_on_every_master(store) if b"alice" in k]
    for m in masters(store):  # no value names it either, except the changelog entries the trim removes
        for k in m.scan_iter(match=store.prefix + "*"):
            if m.type(k) == b"hash":
                assert not [f for f, v in m.hgetall(k).items() if b"alice" in f + v], k
    exported = dict(store.export_clusters())
    assert exported == {"bob": cluster_id_for("bob"), "carol": cluster_id_for("carol")}
    assert store.verify() == [] and len(store.audit_trail()) == 1


def one(token: str, rid: str, fp: str, payload: bytes) -> BatchWrite:
    """A batch of one record founding its own cluster, with a content fingerprint."""
    b = BatchWrite(token)
    b.add_record(RecordState(rid, 0, rid, payload), cluster_id_for(rid), [b"{}"], fp=fp)
    b.set_offset("in", 0, 1)
    return b


def test_payloads_through_replays_conflicts_and_a_writer_that_died_between_the_steps(store: RedisStateStore) -> None:
    """A payload (on a cluster in its record's own slot, written before the batch script) reads back the same
    through every read (a replica's fetch, a rebuild, `stored_payload`) after every kind of second write: the
    same batch again (a lost reply), the same record from another member (same content, another token),
    another record under a claimed id (other content: its payload is not kept), and a writer that died after
    writing its payloads, before its script (the replay claims the record and leaves no second key)."""
    x, y = b"\x00\x01payload-x", b"\x00\x01payload-y"
    assert store.write_batch(one("tok-a", "x", "fp-x", x), NOW) == (1, [])
    before = dump(store)
    assert store.write_batch(one("tok-a", "x", "fp-x", x), NOW) == (0, [])  # a lost reply: no key changes
    assert dump(store) == before
    assert store.write_batch(one("tok-b", "x", "fp-x", x), NOW) == (0, ["x"])  # another member, same content
    assert store.write_batch(one("tok-c", "x", "fp-other", b"\x00\x01payload-other"), NOW) == (0, ["x"])
    dying = one("tok-d", "y", "fp-y", y)
    if store.spread:
        store.put_payloads(dying.recs, dying.blobs, dying.token)  # then the writer dies
    assert store.write_batch(one("tok-e", "y", "fp-y", y), NOW) == (1, [])  # its replay, by another member
    assert store.stored_payload("x") == x and store.stored_payload("y") == y
    assert store.stored_payload("nobody") is None
    states, _ = store.fetch_states(["x", "y", "nobody"])
    assert {r: st.payload for r, st in states.items()} == {"x": x, "y": y}
    assert {st.record_id: st.payload for st in store.load_states()} == {"x": x, "y": y}
    assert sorted(payload_keys(store)) == (sorted([store.payload_key("x", "fp-x").encode(),
                                                   store.payload_key("y", "fp-y").encode()]) if store.spread else [])
    assert store.verify() == []
    assert store.erase(["x", "y"], door="test", hash_key="k", now_iso=NOW) == {"x": True, "y": True}
    assert payload_keys(store) == [] and store.stored_payload("x") is None and store.load_states() == []


def test_stored_events_through_a_demotion_a_conflict_a_retry_and_an_erasure(store: RedisStateStore) -> None:
    """The events a record's replay re-sends are those its claiming batch stored: its alternative events
    where its merge was done by another writer a moment before (demoted), unchanged by a conflicting batch
    and by the same batch retried after a lost reply; on a cluster in the record's own slot (`{<id>}:...`),
    with nothing left of a conflicting batch. Erasure leaves no event of the record anywhere."""
    assert write(store, "t1", [("a", "a"), ("c", "c")]) == (2, [])
    merge = (cluster_id_for("a"), [cluster_id_for("c")])

    def bridging(token: str, rid: str, events: bytes) -> BatchWrite:
        b = BatchWrite(token)
        b.add_record(RecordState(rid, 0, "a", b"\x00\x01payload-" + rid.encode()), cluster_id_for("a"),
                     [events], fp="fp-" + rid, alt_events=[b'{"alt":"%s"}' % rid.encode()])
        b.add_merge(*merge, of_last_record=True)
        b.set_offset("in", 0, 1)
        return b

    first = bridging("t2", "b", b'{"merged":"b"}')
    assert store.write_batch(first, NOW) == (1, []) and first.demoted == []
    late = bridging("t3", "d", b'{"merged":"d"}')  # decided on a view before t2's merge
    assert store.write_batch(late, NOW) == (1, []) and late.demoted == ["d"]
    before = dump(store)
    assert store.write_batch(bridging("t3", "d", b'{"merged":"d"}'), NOW) == (0, [])  # a lost reply
    assert dump(store) == before
    assert store.write_batch(bridging("t4", "d", b'{"other":"d"}'), NOW) == (0, ["d"])  # another batch
    assert dump(store) == before
    assert store.stored_events(["b", "d", "zz"]) == {"b": [b'{"merged":"b"}'], "d": [b'{"alt":"d"}']}
    if store.spread:
        assert not [k for k in keys_on_every_master(store) if k.startswith(store.prefix.encode())
                    and b":ev:" in k]
        assert sorted(k.split(b":")[-2] for k in spread_keys(store) if k.startswith(b"{d}")) == [b"ea", b"ev", b"pl"]
    assert store.erase(["d"], door="test", hash_key="k", now_iso=NOW) == {"d": True}
    assert store.stored_events(["d"]) == {}
    assert not [k for k in keys_on_every_master(store) if k.startswith(b"{d}") or k.endswith(b":d")]
    assert store.verify() == []


def test_a_twin_written_while_its_record_is_erased_leaves_no_payload(store: RedisStateStore,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """On a cluster the erasure deletes the payload before its script: another member's twin of the record
    (same content, its batch finding the id claimed) may write the same key again in between, and keeps it
    (it is the stored record's). The erasure deletes it again once the record is gone; nothing of the record
    is left on any master."""
    x = b"\x00\x01payload-x"
    assert store.write_batch(one("tok-a", "x", "fp-x", x), NOW) == (1, [])
    first = store.erase_payloads

    def with_a_twin(ids: list[str]) -> dict[str, list[str]]:
        keys = first(ids)
        assert store.write_batch(one("tok-b", "x", "fp-x", x), NOW) == (0, ["x"])  # still stored: a conflict
        assert payload_keys(store) == ([store.payload_key("x", "fp-x").encode()] if store.spread else [])
        return keys

    monkeypatch.setattr(store, "erase_payloads", with_a_twin)
    assert store.erase(["x"], door="test", hash_key="k", now_iso=NOW) == {"x": True}
    assert payload_keys(store) == [] and store.stored_payload("x") is None
    assert not [k for k in keys_on_every_master(store) if k.endswith(b":x") or k.startswith(b"{x}")]


def test_verify_finds_a_record_without_payload_and_a_stray_payload(store: RedisStateStore) -> None:
    """`verify()` (run by most tests here after every kind of write) says where a record names a payload that
    is not there, and, on a cluster, where a payload of no stored record is left (what the write order and
    the erasure's two deletes must never leave)."""
    assert store.write_batch(one("tok-a", "x", "fp-x", b"\x00\x01payload-x"), NOW) == (1, [])
    assert store.verify() == []
    where = store.payload_key("x", "fp-x") if store.spread else store.key("pl", "x")
    raw = store.client.get(where)
    store.client.delete(where)
    assert store.verify() == ["record x has no payload"]
    store.client.set(where, raw)
    if store.spread:
        stray = store.payload_key("ghost", "fp-g")
        store.client.set(stray, b"\x00\x01payload-g")
        assert store.verify() == [f"payload {stray} of no stored record"]
        store.client.delete(stray)
    assert store.verify() == []


def test_a_payload_an_older_writer_left_beside_its_record_is_still_read(store: RedisStateStore) -> None:
    """A cluster store written before payloads were spread keeps them in the store's slot (`pl:<id>`), and
    older still in the record hash: both are read where no spread payload is named, and erased."""
    ids = [f"o{i}" for i in range(4)]
    write(store, "t1", [(rid, "o0") for rid in ids])
    for rid in ids[:2]:  # as a writer before this layout left them (one Redis: where they are anyway)
        raw = store.stored_payload(rid)
        store.client.delete(store.payload_key(rid, "t1"))
        store.client.set(store.key("pl", rid), raw)
    store.client.delete(store.payload_key("o2", "t1"), store.key("pl", "o2"))
    store.client.hset(store.key("rec", "o2"), "payload", b"\x00\x01payload-o2")  # before issue 12
    want = {rid: b"\x00\x01payload-" + rid.encode() for rid in ids}
    assert {r: st.payload for r, st in store.fetch_states(ids)[0].items()} == want
    assert {st.record_id: st.payload for st in store.load_states()} == want
    assert store.erase(ids, door="test", hash_key="k", now_iso=NOW) == dict.fromkeys(ids, True)
    assert not [k for k in keys_on_every_master(store) for r in ids
                if k.endswith(b":" + r.encode()) or k.startswith(b"{" + r.encode() + b"}")]


def test_changelog_positions_and_trim(store: RedisStateStore) -> None:
    write(store, "t1", [("a", "a"), ("b", "a")])
    store.publish_position("members", "m1", 1, 1000)
    assert store.trim_log(1000, 60_000, 60_000) == (0, 1, 2)
    assert store.log_base() == 1 and store.log_length() == 2 and store.read_log(1) == ["rb"]
    store.withdraw_position("members", "m1")


def test_batches_in_flight_are_ordered_by_registration(store: RedisStateStore) -> None:
    """Each registration returns the batches registered before it and not yet written (never itself, never
    a stale one); a written batch leaves; on a cluster the hash stays in the store's slot."""
    now = 1_700_000_000_000
    assert store.register_batch("a", now) == []
    assert store.register_batch("b", now + 1) == ["a"]
    assert sorted(store.register_batch("c", now + 2)) == ["a", "b"]
    store.batch_written("a")
    assert store.still_in_flight(["a", "b", "c"]) == ["b", "c"]
    assert store.register_batch("b", now + 3) == ["c"]  # registered again (a retry): not its own wait
    # An entry of a member that died mid-batch is dropped once older than the stale bound.
    assert store.register_batch("d", now + 120_000, stale_ms=60_000) == []
    assert store.still_in_flight(["b", "c", "d"]) == ["d"]
    store.batch_written("d")
    assert store.still_in_flight(["d"]) == [] and store.verify() == []
    assert all(k.startswith(store.prefix.encode()) for k in keys_on_every_master(store))


def test_a_state_of_a_layout_this_process_never_saw_is_fetched_with_its_layout(store: RedisStateStore) -> None:
    """Another member wrote a payload of a column layout this process has not registered: fetching it reads
    the store's layout table (else a sync would fail to decode it); known layouts need no such read."""
    import numpy as np

    from consumer.store.record_state import LAYOUTS, decode_payload, encode_rows, layout_of

    cols = {"v": np.arange(6, dtype=np.float32).reshape(2, 3), "h": np.array([7, 9], np.int64)}
    payloads = encode_rows(cols, np.ones(2), np.zeros(2))
    b = BatchWrite("lay")
    for rid, pl in zip(("x", "y"), payloads):
        b.add_record(RecordState(rid, 0, rid, pl), cluster_id_for(rid), [b"{}"])
    b.set_offset("in", 0, 2)
    store.write_batch(b, NOW)
    lid = layout_of(payloads[0])
    assert lid is not None
    del LAYOUTS[lid]  # as in a process that never encoded this layout
    states, _ = store.fetch_states(["x", "y"])
    got, _c, _r = decode_payload(states["y"].payload)
    assert got["v"].tolist() == [3.0, 4.0, 5.0] and int(got["h"]) == 9


def test_a_wait_ends_when_the_batch_is_written_and_costs_a_few_round_trips(store: RedisStateStore) -> None:
    """`wait_written` blocks on the stream of deregistrations: it returns as soon as the earlier batch is
    written (not at the bound), asks Redis a handful of times however long it waits, and a batch
    deregistered without a stream entry (a member of an older version) still ends the wait within a slice."""
    import threading
    import time

    now = int(time.time() * 1000)
    store.register_batch("early", now)
    store.register_batch("late", now + 1)
    calls = {"n": 0}
    still = store._still_waiting

    def counted(tokens: list[str]) -> tuple[str, list[str]]:
        calls["n"] += 1
        return still(tokens)

    store._still_waiting = counted  # type: ignore[method-assign]
    threading.Timer(0.3, store.batch_written, args=("early",)).start()
    t0 = time.monotonic()
    asked = getkeys_calls(store)
    assert store.wait_written(["early"], 5.0) == []
    waited = time.monotonic() - t0
    assert 0.25 <= waited < 1.5, waited
    assert getkeys_calls(store) == asked  # the blocking reads went to the stream's node, no key lookups
    assert calls["n"] <= 0.3 * 1000 / 25 + 2  # one look per blocking slice at most, not one per millisecond
    threading.Timer(0.1, store.client.hdel, args=(store.key("inflight"), "late")).start()  # no stream entry
    t0 = time.monotonic()
    assert store.wait_written(["late"], 5.0) == []
    assert time.monotonic() - t0 < 0.1 + 0.5
    store.register_batch("never", now + 2)
    t0 = time.monotonic()
    assert store.wait_written(["never"], 0.1) == ["never"]  # bounded: the member died mid-batch
    assert 0.09 <= time.monotonic() - t0 < 1.0
    store.batch_written("never")
    assert store.verify() == []
    assert all(k.startswith(store.prefix.encode()) for k in keys_on_every_master(store))


def test_per_batch_calls_go_to_the_slots_node_and_follow_a_redirect(store: RedisStateStore,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A member's per-batch calls (registration, the in-flight check, the changelog read, the states'
    fetch) answer the same whether they reach the node that owns the store's slot directly or, when that
    node's map is stale (here: a node that does not own the slot, which answers MOVED), through the
    cluster client once more."""
    import time

    now = int(time.time() * 1000)
    write(store, "t0", [("a", "a"), ("b", "a")])

    def calls() -> tuple[object, ...]:
        store.register_batch("t-x", now)
        return (store.register_batch("t-y", now + 1), store.still_in_flight(["t-x", "t-y", "gone"]),
                store.read_log(0), sorted(store.fetch_states(["a", "b", "zz"])[0]))

    direct = calls()
    assert direct[0] == ["t-x"] and direct[1] == ["t-x", "t-y"] and direct[3] == ["a", "b"]
    if not store.cluster:
        return
    client = store.client
    owner = client.get_node_from_key(store.key("log"))
    other = next(n for n in client.get_primaries() if n.name != owner.name)
    monkeypatch.setattr(client, "get_node_from_key", lambda *_a, **_k: other)  # a stale map: MOVED
    store.batch_written("t-x")
    store.batch_written("t-y")
    again = calls()
    assert again[:1] == direct[:1] and again[1:] == direct[1:]


def test_a_batch_leaves_the_in_flight_hash_with_its_write(store: RedisStateStore) -> None:
    """The batch script deregisters its own token atomically with the state (no round trip of its own)
    and tells a member waiting on it; a write whose token was never registered appends nothing."""
    import threading
    import time

    now = int(time.time() * 1000)
    store.register_batch("t1", now)
    threading.Timer(0.2, write, args=(store, "t1", [("a", "a")])).start()
    t0 = time.monotonic()
    assert store.wait_written(["t1"], 5.0) == []
    assert 0.15 <= time.monotonic() - t0 < 1.5
    stream = store.key("written")
    assert [f[b"t"] for _id, f in store.client.xrange(stream)] == [b"t1"]
    write(store, "t2", [("b", "b")])  # never registered: nothing to tell
    assert store.client.xlen(stream) == 1 and store.still_in_flight(["t1", "t2"]) == []
    assert store.verify() == []


def test_concurrent_writers_converge(store: RedisStateStore, backend: tuple[str, str]) -> None:
    """Two writers with stale views joining and merging the same clusters: one consistent state."""
    import threading

    founders = [f"f{i}" for i in range(6)]
    write(store, "seed", [(f, f) for f in founders])
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        s = RedisStateStore(*backend)
        try:
            for b in range(15):
                a, z = founders[(b + w) % 6], founders[(b * 5 + w + 1) % 6]
                write(s, f"w{w}-{b}", [(f"w{w}-{b}", z)], [(cluster_id_for(a), [cluster_id_for(z)])])
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and store.verify() == []
    assert len(set(dict(store.export_clusters()).values())) == 1 and store.record_count() == 36


def test_dedup_run_on_a_cluster_gives_the_clusters_of_one_redis(kafka_bootstrap: str, redis_url: str,
                                                                  redis_cluster_url: str, tmp_path: Path) -> None:
    """`dedup run` end to end: the same 600 generated CRM records through the broker into one Redis and
    into the three-master cluster give the same clusters."""
    from harness.kafka import create_topics, produce_json, unique_topic

    n = 600
    _path, _truth, rows = crm_rows(n, 1, tmp_path)
    topic = unique_topic("crm")
    create_topics(kafka_bootstrap, [topic])
    produce_json(kafka_bootstrap, topic, rows, key="customer_id")
    results = []
    for url in (redis_url, redis_cluster_url):
        events, group, prefix = unique_topic("events"), unique_topic("g"), f"dedup-test:{uuid.uuid4().hex[:12]}"
        create_topics(kafka_bootstrap, [events])
        store = RedisStateStore(url, prefix)
        try:
            with running_service(service_settings(kafka_bootstrap, url, [topic], events, group, prefix)):
                wait_for(lambda s=store: s.record_count() >= n, 180, f"{n} records in redis")
                wait_for(lambda g=group: committed_offset(kafka_bootstrap, g, topic) == n, 30, "offsets committed")
            assert store.verify() == []
            results.append(dict(store.export_clusters()))
        finally:
            delete_prefix(store.client, store.prefix)
            store.close()
    single, cluster = results
    assert len(single) == n and single == cluster


def test_restart_from_snapshot_plus_changelog_tail_on_a_cluster(kafka_bootstrap: str, redis_cluster_url: str,
                                                                 tmp_path: Path) -> None:
    """The single-Redis snapshot scenario (tests/test_service_scaleout.py), on the cluster: a member writes a
    snapshot, another decides more meanwhile, the first restarts from snapshot + changelog tail and holds
    exactly what the cluster holds."""
    import test_service_scaleout as scaleout

    prefix = f"dedup-test:{uuid.uuid4().hex[:12]}"
    try:
        scaleout.test_restart_from_snapshot_plus_changelog_tail(kafka_bootstrap, redis_cluster_url, prefix,
                                                                tmp_path)
    finally:
        store = RedisStateStore(redis_cluster_url, prefix)
        delete_prefix(store.client, store.prefix)
        store.close()


def test_a_master_failover_is_waited_out_and_the_replayed_batch_is_a_no_op(tmp_path: Path) -> None:
    """Kill -9 the master that owns the store's slot: writes fail with retryable errors until its replica
    is promoted, then the same batch (same token, as the service retries it) applies once, and the state
    acknowledged and replicated before the crash is all there."""
    import time

    from harness.redis_cluster import OwnedRedisCluster

    from consumer.store.redis import RETRYABLE

    try:
        cluster = OwnedRedisCluster(3, replicas=1, node_timeout_ms=1000).start()
    except (FileNotFoundError, RuntimeError) as exc:
        pytest.skip(f"no Redis Cluster with replicas: {exc}")
    store = RedisStateStore(cluster.url, "dedup-failover")
    try:
        assert write(store, "t1", [("a", "a"), ("b", "a"), ("c", "c")]) == (3, [])
        owner = store.client.get_node_from_key(store.key("seq"))
        # Replication is asynchronous: WAIT makes the replica hold t1 before the crash (docs/scale-out.md).
        assert store.client.get_redis_connection(owner).execute_command("WAIT", 1, 5000) == 1
        cluster.kill(owner.port)
        retried, deadline, result = 0, time.monotonic() + 60, None
        while result is None:
            try:
                result = write(store, "t2", [("d", "c")], [(cluster_id_for("a"), [cluster_id_for("c")])])
            except RETRYABLE:  # ConnectionError here, for ~2 s, until the replica is promoted
                retried += 1
                assert time.monotonic() < deadline, "no failover within 60 s"
                time.sleep(0.2)
        assert retried >= 1 and result in ((1, []), (0, []))  # (0, []): applied by a try whose reply was lost
        assert store.client.get_node_from_key(store.key("seq")).port != owner.port
        assert write(store, "t2", [("d", "c")], [(cluster_id_for("a"), [cluster_id_for("c")])]) == (0, [])
        assert dict(store.export_clusters()) == dict.fromkeys("abcd", cluster_id_for("a"))
        assert store.verify() == [] and store.record_count() == 4
    finally:
        store.close()
        cluster.close()
