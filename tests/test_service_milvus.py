"""`dedup run` on a shared Milvus collection (issue 39): members of one group keep the candidate vectors in one
collection, keyed by global id (`consumer.io.milvus_shared`), each written once by the member that decided it.

Real servers: the `milvus` wheel's standalone server (module fixture, as tests/test_milvus_index.py), the tansu
broker and Redis of the harness. Two members in one group: twins produced at the same moment to partitions
owned by different members end in one cluster, every record is clustered exactly once, and the collection
holds each record once. A member killed with SIGKILL comes back from Redis without writing the collection
again and keeps deciding against it.
"""

from __future__ import annotations

import csv
import signal
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from harness.kafka import create_topics, produce_json, unique_topic
from harness.service import (
    ServiceProcess,
    batch_f1_in_order,
    crm_rows,
    http_get,
    produce_twins,
    running_service,
    service_settings,
    shared_text_encoder,
    wait_for,
)

from consumer.config import Settings, load_settings
from consumer.evaluation.evaluate import cluster_scores
from consumer.io.batch import run_batch
from consumer.io.milvus_index import collection_name
from consumer.io.milvus_shared import gid_key, global_ids, shared_collection_prefix
from consumer.store.redis import RedisStateStore

pytestmark = pytest.mark.integration

#: Dimension of the CRM profile's composite vector (text 64 + name 128 + city 32 + login hours 24).
CRM_DIM = 248


def _random_key(_row: object) -> bytes:
    return uuid.uuid4().bytes


def milvus_settings(kafka: str, redis_url: str, topic: str, events: str, group: str, prefix: str, uri: str,
                    collections: str) -> Settings:
    s = service_settings(kafka, redis_url, [topic], events, group, prefix)
    s.index.backend, s.index.milvus_uri, s.index.milvus_collection_prefix = "milvus", uri, collections
    return s


def stored_ids(uri: str, name: str) -> list[int]:
    """Every primary key in the collection, read under Strong consistency (duplicates would show twice)."""
    from pymilvus import Collection, connections

    alias = f"check-{uuid.uuid4().hex[:8]}"
    connections.connect(alias=alias, uri=uri)
    try:
        got = Collection(name, using=alias).query("id >= 0", output_fields=["id"], limit=16384,
                                                  consistency_level="Strong")
        return [int(r["id"]) for r in got]
    finally:
        connections.disconnect(alias)


def shared_name(settings: Settings) -> str:
    return collection_name(shared_collection_prefix(settings, settings.service.redis_prefix),
                           settings.profile.name, settings.encoders.hash_key, CRM_DIM)


def linked_pairs(rows: list[dict[str, str]], truth: dict[str, str], tmp_path: Path,
                 want: int) -> list[tuple[dict[str, str], dict[str, str]]]:
    """Twin pairs that `dedup batch` links when it sees both (the race is about seeing, not scoring)."""
    by_entity: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_entity.setdefault(truth[row["customer_id"]], []).append(row)
    settings = load_settings(env={})
    linked = []
    for group in by_entity.values():
        if len(group) < 2:
            continue
        path = tmp_path / "pair.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(group[:2])
        _s, p = run_batch(path, tmp_path / "pair.jsonl", settings, progress=False)
        if len(set(p.assignments().values())) == 1:
            linked.append((group[0], group[1]))
        p.close()
        if len(linked) >= want:
            break
    return linked


def test_two_members_share_one_collection(kafka_bootstrap: str, redis_url: str, redis_prefix: str,
                                          milvus_uri: str, tmp_path: Path) -> None:
    """Twins produced at the same moment to the two members' partitions end in one cluster; then the rest of
    the file with random keys: every record in exactly one cluster, F1 within 0.02 of `dedup batch` on the
    records in the order a member holds them, and the collection holds every record exactly once (written by
    its decider only)."""
    _path, truth, rows = crm_rows(360, 5, tmp_path)
    linked = linked_pairs(rows, truth, tmp_path, 6)
    assert len(linked) >= 4, len(linked)

    topic, events, group = unique_topic("mv"), unique_topic("events"), unique_topic("g")
    create_topics(kafka_bootstrap, [topic], partitions=2)
    create_topics(kafka_bootstrap, [events])
    store = RedisStateStore(redis_url, redis_prefix)
    collections = f"t{uuid.uuid4().hex[:10]}"
    s = [milvus_settings(kafka_bootstrap, redis_url, topic, events, group, redis_prefix, milvus_uri, collections)
         for _ in range(2)]
    twin_ids = {r["customer_id"] for pair in linked for r in pair}
    rest = [r for r in rows if r["customer_id"] not in twin_ids]
    t0 = time.monotonic()
    with running_service(s[0]) as a, running_service(s[1]) as b:
        wait_for(lambda: all(m.member is not None and len(m.member.assigned) == 1 for m in (a, b)), 90,
                 "one partition each")
        produce_twins(kafka_bootstrap, topic, linked, store.record_count)
        produce_json(kafka_bootstrap, topic, rest, key=_random_key)
        wait_for(lambda: store.record_count() >= len(rows), 120, f"{len(rows)} records in redis")
        wait_for(lambda: all(m.pipe is not None and len(m.pipe.store) >= len(rows) for m in (a, b)), 60,
                 "every member holds every record")
        time.sleep(1.0)  # late links are written on the next sync
        erased = [rest[0]["customer_id"], rest[-1]["customer_id"]]  # erasure: gone from Milvus by global id
        assert all(store.erase(erased, door="test", hash_key=s[0].encoders.hash_key,
                               now_iso="2026-11-26T00:00:00Z").values())
        wait_for(lambda: all(r not in m.pipe.store.row_of for m in (a, b) for r in erased), 30, "erasure applied")
        name = a.shared_index.name
        assert name == b.shared_index.name == shared_name(s[0])
        collisions = a.shared_index.collisions + b.shared_index.collisions
        decided = [int(m.metrics.records._value.get()) for m in (a, b)]
        arrival = list(a.pipe.store.record_ids)  # own records as decided, the other's as absorbed
    assert store.verify() == []
    final = dict(store.export_clusters())
    assert len(final) == len(rows) - len(erased) and not set(erased) & set(final)
    split = [(x["customer_id"], y["customer_id"]) for x, y in linked
             if final[x["customer_id"]] != final[y["customer_id"]]]
    assert not split, f"{len(split)}/{len(linked)} twin pairs in two clusters"
    ids = stored_ids(milvus_uri, name)
    expected = global_ids(list(final), gid_key(s[0].encoders.hash_key))
    assert len(ids) == len(final) and sorted(ids) == sorted(expected.tolist())  # each record once, erased none
    assert collisions == 0 and all(d > 0 for d in decided), decided
    f1 = cluster_scores(final, truth).f1
    batch_f1 = batch_f1_in_order(rows, arrival, truth, tmp_path)  # the erased two left out, as in `final`
    print(f"\n2 members on one Milvus collection: {len(rows)} records in {time.monotonic() - t0:.1f}s, "
          f"decided {decided}, F1 {f1:.4f} (batch in the order member a holds them {batch_f1:.4f}), "
          f"twin pairs {len(linked)} in one cluster")
    assert f1 >= batch_f1 - 0.02, (f1, batch_f1)


def test_a_member_killed_with_sigkill_comes_back_without_rewriting_the_collection(
        kafka_bootstrap: str, redis_url: str, redis_prefix: str, milvus_uri: str, tmp_path: Path) -> None:
    """A real process member decides 200 records, is killed with SIGKILL, starts again: it rebuilds its map
    from its snapshot and the changelog tail (the collection is not empty, so nothing is written again), and
    the records after the restart, duplicates of earlier ones among them, are decided against the collection:
    F1 close to batch, each record in the collection once."""
    path, truth, rows = crm_rows(320, 11, tmp_path)
    _s, pipe = run_batch(path, tmp_path / "batch.jsonl", load_settings(env={}), progress=False)
    batch_f1 = cluster_scores(pipe.assignments(), truth).f1
    pipe.close()
    topic, events, group = unique_topic("mvk"), unique_topic("events"), unique_topic("g")
    create_topics(kafka_bootstrap, [topic], partitions=2)
    create_topics(kafka_bootstrap, [events])
    store = RedisStateStore(redis_url, redis_prefix)
    collections = f"t{uuid.uuid4().hex[:10]}"
    env = {"DEDUP_INDEX__BACKEND": "milvus", "DEDUP_INDEX__MILVUS_URI": milvus_uri,
           "DEDUP_INDEX__MILVUS_COLLECTION_PREFIX": collections,
           "DEDUP_SERVICE__SNAPSHOT_DIR": str(tmp_path / "snapshots"), "DEDUP_SERVICE__SNAPSHOT_INTERVAL_SECONDS": "1"}
    args = ["--kafka", kafka_bootstrap, "--redis", redis_url, "--input-topic", topic, "--events-topic", events,
            "--group", group, "--redis-prefix", redis_prefix]
    log = tmp_path / "member.log"
    proc = ServiceProcess(args, log, env=env).start()
    try:
        wait_for(lambda: http_get(proc.url + "/readyz")[0] == 200, 120, "ready (" + proc.log_tail(3) + ")")
        produce_json(kafka_bootstrap, topic, rows[:200], key=_random_key)
        wait_for(lambda: store.record_count() >= 200, 90, "200 records in redis")
        time.sleep(1.0)  # let the snapshot written after a batch (due every second) land before the kill
        proc.signal(signal.SIGKILL)
        proc.wait(10)
        proc = ServiceProcess(args, log, env=env).start()
        wait_for(lambda: http_get(proc.url + "/readyz")[0] == 200, 120, "ready again (" + proc.log_tail(3) + ")")
        produce_json(kafka_bootstrap, topic, rows[200:], key=_random_key)
        wait_for(lambda: store.record_count() >= len(rows), 90, f"{len(rows)} records in redis")
    finally:
        proc.stop()
    text = log.read_text(errors="replace")
    assert "empty milvus collection filled" not in text
    loads = [line for line in text.splitlines() if "state loaded" in line]
    assert len(loads) == 2 and "snapshot" in loads[1], loads  # the map rebuilt from a snapshot + the tail
    assert store.verify() == []
    final = dict(store.export_clusters())
    assert len(final) == len(rows)
    settings = load_settings(env=env)
    settings.service.redis_prefix = redis_prefix
    ids = stored_ids(milvus_uri, shared_name(settings))
    assert sorted(ids) == sorted(global_ids(list(final), gid_key(settings.encoders.hash_key)).tolist())
    f1 = cluster_scores(final, truth).f1
    print(f"\nkill -9 at 200/{len(rows)}, restart from a snapshot: F1 {f1:.4f} (batch {batch_f1:.4f})")
    assert f1 >= batch_f1 - 0.03, (f1, batch_f1)


def stored_vectors(uri: str, name: str) -> dict[int, np.ndarray]:
    """Every row's vector (Strong read)."""
    from pymilvus import Collection, connections

    alias = f"check-{uuid.uuid4().hex[:8]}"
    connections.connect(alias=alias, uri=uri)
    try:
        got = Collection(name, using=alias).query("id >= 0", output_fields=["id", "vector"], limit=16384,
                                                  consistency_level="Strong")
        return {int(r["id"]): np.asarray(r["vector"], np.float32) for r in got}
    finally:
        connections.disconnect(alias)


def test_an_empty_collection_is_filled_once_from_the_state(kafka_bootstrap: str, redis_url: str, redis_prefix: str,
                                                           milvus_uri: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A store written before the group used Milvus (hnswlib members), or a new Milvus: the first member on
    Milvus writes every held record to the empty collection at start-up, and the next one writes nothing.
    A member on Milvus keeps the index-only columns of its newest rows only (here 32 of 120): the older
    rows' vectors are rebuilt from their payloads in Redis, the same vectors an encoder gives their rows."""
    import consumer.service.state as service_state
    from consumer.engine.records import parse_record
    from consumer.io.artifacts import build_pipeline

    monkeypatch.setattr(service_state, "RECENT_INDEX_ROWS", 0)  # the ring is then 4 x max_batch rows
    _path, _truth, rows = crm_rows(120, 13, tmp_path)
    topic, events, group = unique_topic("mvb"), unique_topic("events"), unique_topic("g")
    create_topics(kafka_bootstrap, [topic], partitions=2)
    create_topics(kafka_bootstrap, [events])
    store = RedisStateStore(redis_url, redis_prefix)
    with running_service(service_settings(kafka_bootstrap, redis_url, [topic], events, group, redis_prefix)):
        produce_json(kafka_bootstrap, topic, rows, key=_random_key)
        wait_for(lambda: store.record_count() >= len(rows), 90, "records in redis (hnswlib)")
    s = milvus_settings(kafka_bootstrap, redis_url, topic, events, group, redis_prefix, milvus_uri,
                        f"t{uuid.uuid4().hex[:10]}")
    s.service.max_batch = 8
    with running_service(s) as svc:
        wait_for(lambda: http_get(svc.url + "/readyz")[0] == 200, 90, "ready on milvus")
        name, filled = svc.shared_index.name, svc.backfilled
        held = svc.pipe.store.holds(np.arange(len(rows)))
    assert filled == len(rows) and held.sum() == 32, held.sum()
    ids = stored_ids(milvus_uri, name)
    gids = global_ids([r["customer_id"] for r in rows], gid_key(s.encoders.hash_key))
    assert sorted(ids) == sorted(gids.tolist())
    plain = load_settings(env={})
    pipe = build_pipeline(plain, text_encoder=shared_text_encoder())
    expected = pipe.blocker.vectors(pipe.encode([parse_record(r, plain.profile, plain.limits) for r in rows]))
    got = stored_vectors(milvus_uri, name)
    assert np.allclose(np.stack([got[g] for g in gids.tolist()]), expected, atol=1e-6)
    with running_service(s) as again:
        wait_for(lambda: http_get(again.url + "/readyz")[0] == 200, 90, "ready again")
        assert again.backfilled == 0 and not again.shared_index.is_empty()
    assert sorted(stored_ids(milvus_uri, name)) == sorted(ids)


def test_a_new_member_opens_the_collection_before_it_reports_ready(kafka_bootstrap: str, redis_url: str,
                                                                  redis_prefix: str, milvus_uri: str) -> None:
    """An empty store (the group's first start): the collection is created and loaded while the member
    starts, not by its first search, which held that batch for seconds while the other members' batches
    gave up waiting for it (late links instead of joins at decision)."""
    from pymilvus import connections, utility

    topic, events, group = unique_topic("mvo"), unique_topic("events"), unique_topic("g")
    create_topics(kafka_bootstrap, [topic], partitions=1)
    create_topics(kafka_bootstrap, [events])
    s = milvus_settings(kafka_bootstrap, redis_url, topic, events, group, redis_prefix, milvus_uri,
                        f"t{uuid.uuid4().hex[:10]}")
    with running_service(s) as svc:
        wait_for(lambda: http_get(svc.url + "/readyz")[0] == 200, 90, "ready on milvus")
        assert svc.pipe is not None and len(svc.pipe.store) == 0 and svc.backfilled == 0
        name = svc.shared_index.name
        alias = f"t-{uuid.uuid4().hex[:8]}"
        connections.connect(alias=alias, uri=milvus_uri)
        try:
            assert utility.has_collection(name, using=alias)
            assert utility.load_state(name, using=alias).name == "Loaded"
        finally:
            connections.disconnect(alias)
