"""The Redis state store against a real Redis: atomic batches, idempotent re-application, concurrent writers.

Why: several consumers (or a consumer and its own retry after a lost reply) may write overlapping clusters.
The store's invariant is that every record is in exactly one existing cluster and the member sets, record
hashes, sizes and founders agree, whatever the interleaving.
"""

from __future__ import annotations

import random
import threading

import pytest
import redis

from consumer.engine.clustering import cluster_id_for
from consumer.engine.state import RecordState
from consumer.store.redis import BatchWrite, MergesMoved, RedisStateStore

pytestmark = pytest.mark.integration


def rec(rid: str, founder: str) -> RecordState:
    return RecordState(rid, 0, founder, b"\x00\x01payload-" + rid.encode())


def write(store: RedisStateStore, token: str, recs: list[tuple[str, str]],
          merges: list[tuple[str, list[str]]] = ()) -> tuple[int, list[str]]:
    b = BatchWrite(token)
    for rid, founder in recs:
        b.add_record(rec(rid, founder), cluster_id_for(founder), [b'{"event_id":"%s"}' % rid.encode()])
        b.set_canonical(cluster_id_for(founder), founder)
    for survivor, absorbed in merges:
        b.add_merge(survivor, absorbed)
    b.set_offset("in", 0, len(recs))
    return store.write_batch(b, "2025-01-01T00:00:00.000Z")


def test_a_decision_whose_merges_were_partly_done_meanwhile_is_refused_before_anything_is_written(
        redis_url: str, redis_prefix: str) -> None:
    """A member named the clusters, then another member merged one of them: a decision bridging it and one
    nobody merged would announce the first a second time. With `check_merges` nothing is written and
    `MergesMoved` says to name them again; named again, only the other is absorbed and announced."""
    store = RedisStateStore(redis_url, redis_prefix)
    a, b, c = (cluster_id_for(x) for x in "abc")
    write(store, "t1", [("a", "a"), ("b", "b"), ("c", "c")])
    write(store, "t2", [("x", "a")], [(a, [b])])  # the other member: b's cluster into a's

    def bridging(rid: str, absorbed: list[str]) -> BatchWrite:
        w = BatchWrite("t3-" + rid)
        w.check_merges = True
        w.add_record(rec(rid, "a"), a, [b'{"event_id":"%s-merged"}' % rid.encode()],
                     alt_events=[b'{"event_id":"%s-joined"}' % rid.encode()])
        w.add_merge(a, absorbed, of_last_record=True)
        return w

    client = redis.Redis.from_url(redis_url)
    keys_before = sorted(client.keys(f"{redis_prefix}*"))
    with pytest.raises(MergesMoved):
        store.write_batch(bridging("d", [b, c]), "2025-01-01T00:00:00.000Z")
    assert sorted(client.keys(f"{redis_prefix}*")) == keys_before  # nothing written, no log entry
    assert client.llen(f"{redis_prefix}log") == 5
    named_again = bridging("d", [c])  # `freshen` drops b's cluster: it lives in a's already
    assert store.write_batch(named_again, "2025-01-01T00:00:00.000Z") == (1, [])
    assert named_again.applied_merges == 1 and named_again.demoted == []
    assert store.stored_events(["d"]) == {"d": [b'{"event_id":"d-merged"}']}
    all_done = bridging("e", [b, c])  # every merge done already: demoted, no error
    assert store.write_batch(all_done, "2025-01-01T00:00:00.000Z") == (1, [])
    assert all_done.demoted == ["e"] and store.stored_events(["e"]) == {"e": [b'{"event_id":"e-joined"}']}
    assert store.verify() == [] and set(dict(store.export_clusters()).values()) == {a}


def test_batches_merges_and_idempotent_reapply(redis_url: str, redis_prefix: str) -> None:
    store = RedisStateStore(redis_url, redis_prefix)
    assert write(store, "t1", [("a", "a"), ("b", "a"), ("c", "c")]) == (3, [])
    # d bridges a's and c's clusters: c's cluster is absorbed into a's (older founder survives).
    merge = [(cluster_id_for("a"), [cluster_id_for("c")])]
    assert write(store, "t2", [("d", "a")], merge) == (1, [])
    assert write(store, "t2", [("d", "a")], merge) == (0, [])  # same token again: a lost reply, no-op
    assert write(store, "t3", [("d", "a")]) == (0, ["d"])  # another batch claims d: reported, not applied
    assert dict(store.export_clusters()) == dict.fromkeys("abcd", cluster_id_for("a"))
    assert store.verify() == [] and store.record_count() == 4
    # A stale writer still joining the absorbed cluster lands in the survivor.
    assert write(store, "t4", [("e", "c")]) == (1, [])
    assert dict(store.export_clusters())["e"] == cluster_id_for("a")
    states = {s.record_id: s for s in store.load_states()}
    assert [states[r].seq for r in "abcde"] == [1, 2, 3, 4, 5]
    assert {s.founder_id for s in states.values()} == {"a"} and states["c"].payload == b"\x00\x01payload-c"
    assert store.stored_events(["d", "zz"]) == {"d": [b'{"event_id":"d"}']}
    client = redis.Redis.from_url(redis_url)
    assert client.hget(f"{redis_prefix}clmeta:{cluster_id_for('a')}", "size") == b"5"
    assert not client.exists(f"{redis_prefix}clmeta:{cluster_id_for('c')}")
    assert client.hget(f"{redis_prefix}offsets", "in:0") == b"3"  # max of the offsets written


def test_concurrent_writers_keep_clusters_consistent(redis_url: str, redis_prefix: str) -> None:
    """Four writers with stale, overlapping views (joins into absorbed clusters, crossing merges)."""
    known: list[str] = []  # founders of clusters some writer created (never updated after merges: stale)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        rng = random.Random(w)
        store = RedisStateStore(redis_url, redis_prefix)
        try:
            for b in range(40):
                recs: list[tuple[str, str]] = []
                merges: list[tuple[str, list[str]]] = []
                for k in range(rng.randint(1, 12)):
                    rid = f"w{w}-{b}-{k}"
                    with lock:
                        pool = list(known)
                    founder = rng.choice(pool) if pool and rng.random() < 0.7 else rid
                    recs.append((rid, founder))
                    if len(pool) > 2 and rng.random() < 0.2:
                        merges.append((cluster_id_for(founder), [cluster_id_for(rng.choice(pool))]))
                n, conflicts = write(store, f"w{w}-{b}", recs, merges)
                assert (n, conflicts) == (len(recs), [])
                with lock:
                    known.extend(f for r, f in recs if r == f)
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]
    store = RedisStateStore(redis_url, redis_prefix)
    assert store.verify() == []
    exported = dict(store.export_clusters())
    assert len(exported) == store.record_count() == sum(1 for s in store.load_states())
    assert len(set(exported.values())) < len(exported) / 2  # merges and joins happened


def test_split_moves_a_piece_into_its_own_cluster_consistently(redis_url: str, redis_prefix: str) -> None:
    """`cluster.split` state: the piece's records (earlier batches and this one) move to the new cluster,
    founders and sizes follow, a reused absorbed id is revived, and re-applying the batch is a no-op."""
    store = RedisStateStore(redis_url, redis_prefix)
    ca, cc = cluster_id_for("a"), cluster_id_for("c")
    assert write(store, "t1", [("a", "a"), ("b", "a"), ("c", "c"), ("d", "c")]) == (4, [])
    assert write(store, "t2", [("e", "a")], [(ca, [cc])]) == (1, [])  # e bridged: c's cluster absorbed
    assert set(dict(store.export_clusters()).values()) == {ca}
    # f joins a's cluster, and the later evidence splits c and d (and f's batch-mate g) off again.
    b = BatchWrite("t3")
    for rid, founder in (("f", "a"), ("g", "c")):
        b.add_record(rec(rid, founder), cluster_id_for(founder), [b"{}"])
    b.add_split(ca, [(cc, "c", ["c", "d", "g"])])
    b.set_canonical(ca, "a")
    b.set_canonical(cc, "d")
    assert store.write_batch(b, "2025-01-01T00:00:01.000Z") == (2, [])
    assert store.write_batch(b, "2025-01-01T00:00:01.000Z") == (0, [])
    exported = dict(store.export_clusters())
    assert exported == {**dict.fromkeys("abef", ca), **dict.fromkeys("cdg", cc)}
    assert store.verify() == []
    client = redis.Redis.from_url(redis_url)
    assert client.hget(f"{redis_prefix}clmeta:{ca}", "size") == b"4"
    assert client.hget(f"{redis_prefix}clmeta:{cc}", "size") == b"3"
    assert client.hget(f"{redis_prefix}clmeta:{cc}", "canonical") == b"d"
    assert not client.exists(f"{redis_prefix}fwd:{cc}")
    assert {s.record_id: s.founder_id for s in store.load_states()}["d"] == "c"
    # The split is in the changelog (once: the replayed batch wrote nothing), so replicas split too.
    from consumer.service.changelog import parse_split
    splits = [parse_split(e) for e in store.read_log(0) if e.startswith("s")]
    assert splits == [("c", ["c", "d", "g"])]


def test_lean_layout_events_ttl_and_cluster_metadata_defaults(redis_url: str, redis_prefix: str) -> None:
    """Issue 12's leaner state: stored events expire after `events_ttl`, are packed with the preset
    dictionary and read back byte-identical (and so are the two formats written before); cluster metadata
    leaves out the canonical id while it is the founder and `updated` while it is `created`, and the
    look-ups answer as before."""
    import zlib

    from consumer.store.redis import pack_events, unpack_events

    events = [b'{"event_id":"x","event_type":"record.clustered","scores":{"name":0.5}}', b'{"a":[1,2.5,null]}']
    packed = pack_events(events)
    assert packed[:2] == b"E1" and len(packed) < len(zlib.compress(b"[" + b",".join(events) + b"]", 6))
    old_z, old_json = b"Z" + zlib.compress(b"[" + b",".join(events) + b"]"), b"[" + b",".join(events) + b"]"
    assert unpack_events(packed) == unpack_events(old_z) == unpack_events(old_json)
    # Packed before with deflate's memory level 9 (the same format and dictionary): read back the same.
    from consumer.store.event_codec import EVENTS_ZDICT_1

    comp = zlib.compressobj(6, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, EVENTS_ZDICT_1)
    level9 = b"E1" + comp.compress(b"[" + b",".join(events) + b"]") + comp.flush()
    assert unpack_events(level9) == unpack_events(packed)

    store = RedisStateStore(redis_url, redis_prefix, events_ttl=3600)
    client = redis.Redis.from_url(redis_url)
    assert write(store, "t1", [("a", "a"), ("b", "b")]) == (2, [])
    assert 0 < client.ttl(f"{redis_prefix}ev:a") <= 3600 and client.ttl(f"{redis_prefix}rec:a") == -1
    meta = client.hgetall(f"{redis_prefix}clmeta:{cluster_id_for('a')}")
    assert b"canonical" not in meta and b"updated" not in meta
    info = store.cluster_info(cluster_id_for("a"), 10)
    assert info is not None and info["canonical_id"] == "a" and info["updated"] == info["created"]
    # A later batch: canonical moves to b's record after a merge, `updated` is now kept.
    b = BatchWrite("t2")
    b.add_record(rec("c", "a"), cluster_id_for("a"), [b'{"event_id":"c"}'])
    b.add_merge(cluster_id_for("a"), [cluster_id_for("b")])
    b.set_canonical(cluster_id_for("a"), "b")
    assert store.write_batch(b, "2025-01-02T00:00:00.000Z") == (1, [])
    info = store.cluster_info(cluster_id_for("b"), 10)
    assert info is not None and info["canonical_id"] == "b" and info["merged_into"] == cluster_id_for("a")
    assert info["updated"] == "2025-01-02T00:00:00.000Z" and info["members"] == ["a", "b", "c"]
    b = BatchWrite("t3")  # canonical back to the founder: the field goes again
    b.set_canonical(cluster_id_for("a"), "a")
    store.write_batch(b, "2025-01-03T00:00:00.000Z")
    assert not client.hexists(f"{redis_prefix}clmeta:{cluster_id_for('a')}", "canonical")
    assert store.verify() == []
    # Past the retention: the record is still stored, its events are gone.
    client.delete(f"{redis_prefix}ev:a")
    assert store.stored_events(["a", "c"]) == {"c": [b'{"event_id":"c"}']}
    assert store.existing(["a", "zz"]) == {"a"}
    plain = RedisStateStore(redis_url, redis_prefix)  # 0 = kept forever
    assert write(plain, "t4", [("d", "d")]) == (1, []) and client.ttl(f"{redis_prefix}ev:d") == -1
    # The record hash keeps 16 hex digits of the token and the time as epoch ms; a lost reply's batch
    # re-applied is still recognised as itself, another batch still as a conflict; readers see ISO (also
    # of the ISO times records written before hold).
    token = "0123456789abcdef" * 2
    assert write(plain, token, [("e", "e")]) == (1, []) and write(plain, token, [("e", "e")]) == (0, [])
    assert write(plain, "f" * 32, [("e", "e")]) == (0, ["e"])
    assert client.hmget(f"{redis_prefix}rec:e", ["batch", "written"]) == [b"0123456789abcdef", b"1735689600000"]
    assert plain.fetch_states(["e"])[1] == {"e": "2025-01-01T00:00:00.000Z"}
    client.hset(f"{redis_prefix}rec:d", "written", "2025-01-01T00:00:00.001Z")
    assert plain.fetch_states(["d"])[1] == {"d": "2025-01-01T00:00:00.001Z"}


def test_fetch_states_reads_many_records_in_chunks_and_old_payload_fields(
        redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A replica's fetch: every record asked for that is stored (none that is not), its founder, sequence
    and payload, also where the payload is still in the hash (written before issue 12), across several of
    the script's chunks, in the order asked."""
    import consumer.store.redis as store_module

    monkeypatch.setattr(store_module, "FETCH_CHUNK", 3)
    store = RedisStateStore(redis_url, redis_prefix)
    client = redis.Redis.from_url(redis_url)
    ids = [f"r{i}" for i in range(8)]
    assert write(store, "t1", [(rid, "r0") for rid in ids]) == (8, [])
    old = client.get(f"{redis_prefix}pl:r5")
    client.delete(f"{redis_prefix}pl:r5")  # as an old writer left it: the payload in the hash
    client.hset(f"{redis_prefix}rec:r5", "payload", old)
    asked = ["r7", "missing", *ids[:7], "also-missing"]
    states, written = store.fetch_states(asked)
    assert list(states) == ["r7", *ids[:7]] and set(written) == set(ids)
    assert all(st.founder_id == "r0" and st.payload == b"\x00\x01payload-" + rid.encode() for rid, st in states.items())
    assert states["r5"].payload == old and len({st.seq for st in states.values()}) == 8
    assert store.fetch_states([]) == ({}, {})


def test_member_sets_written_before_still_read_and_merged(redis_url: str, redis_prefix: str) -> None:
    """Clusters written before issue 12's layout keep their members in a `cl:<id>` set; new members are
    '.<id>' fields of `clmeta:<id>`. Joins, merges, look-ups and verify() see the union."""
    store = RedisStateStore(redis_url, redis_prefix)
    client = redis.Redis.from_url(redis_url)
    old = cluster_id_for("o1")
    client.sadd(f"{redis_prefix}cl:{old}", "o1", "o2")
    client.hset(f"{redis_prefix}clmeta:{old}", mapping={"founder": "o1", "canonical": "o1", "size": 2,
                                                         "created": "2024-01-01T00:00:00.000Z",
                                                         "updated": "2024-01-01T00:00:00.000Z"})
    for i, rid in enumerate(["o1", "o2"], 1):
        client.hset(f"{redis_prefix}rec:{rid}", mapping={"seq": i, "founder": "o1", "cluster": old, "batch": "old"})
        client.set(f"{redis_prefix}pl:{rid}", b"\x00\x01payload")
    client.set(f"{redis_prefix}seq", 2)
    assert store.verify() == []
    assert write(store, "t1", [("o3", "o1"), ("n1", "n1")]) == (2, [])  # joins the old cluster; a new one
    assert store.cluster_info(old, 10)["members"] == ["o1", "o2", "o3"]  # type: ignore[index]
    assert client.hexists(f"{redis_prefix}clmeta:{old}", ".o3") and client.scard(f"{redis_prefix}cl:{old}") == 2
    assert write(store, "t2", [("n2", "n1")], [(cluster_id_for("n1"), [old])]) == (1, [])  # old one survives
    info = store.cluster_info(cluster_id_for("n1"), 10)
    assert info is not None and info["cluster_id"] == old and info["size"] == 5
    assert info["members"] == ["o1", "o2", "o3", "n1", "n2"]
    assert store.verify() == [] and dict(store.export_clusters()) == dict.fromkeys(info["members"], old)
    assert not client.exists(f"{redis_prefix}clmeta:{cluster_id_for('n1')}")
