"""Erasure (issue 23): forget a person everywhere within a stated bound, and a changelog that stays bounded.

Why: GDPR Art. 17. A record lives in Redis (record, payload, stored events, membership), in the
changelog, in every member's replica and HNSW graph, and in snapshots on disk. Three doors (the erasure
topic, `DELETE /v1/records/{id}`, `dedup erase`) must remove it from all of them, re-check the cluster it
left, tell subscribers (`record.erased`, `cluster.split`), and leave everything else as `dedup batch` on
the file without it would. Real tansu broker, real Redis, real member processes (one SIGKILLed).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from harness.kafka import consume_all, create_topics, produce_json, unique_topic
from harness.service import (
    ServiceProcess,
    batch_f1_in_order,
    check_events,
    crm_rows,
    http_get,
    redis_dump,
    running_service,
    service_settings,
    wait_for,
)

from consumer.evaluation.evaluate import cluster_scores
from consumer.store.erasure import ChangelogTrimmed, id_hash
from consumer.store.record_state import LAYOUTS, decode_payload, register_layout
from consumer.store.redis import RedisStateStore, unpack_events

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]


def _delete(url: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, method="DELETE")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def _signature_needles(store: RedisStateStore, ids: list[str]) -> dict[str, list[bytes]]:
    """Per record, byte strings only it holds: its compressed payload and its raw vector rows (what a
    snapshot's columns or an HNSW file would hold verbatim)."""
    for lid, layout in store.client.hgetall(store.key("layouts")).items():
        register_layout(int(lid), layout)
    out: dict[str, list[bytes]] = {}
    for rid in ids:
        payload = store.stored_payload(rid)
        assert payload is not None, rid
        cols, _c, _r = decode_payload(payload)
        vecs = [v.tobytes() for v in cols.values() if v.dtype.kind == "f" and v.nbytes >= 64]
        out[rid] = [payload[-48:], *vecs]
    assert LAYOUTS
    return out


def _unique(store: RedisStateStore, needles: dict[str, list[bytes]]) -> dict[str, list[bytes]]:
    """The needles no remaining record shares (generated twins can carry identical vectors)."""
    shared: set[bytes] = set()
    for state in store.load_states():
        cols, _c, _r = decode_payload(state.payload)
        shared.update(v.tobytes() for v in cols.values())
    return {rid: [x for x in sig if x not in shared] for rid, sig in needles.items()}


def _redis_blobs(store: RedisStateStore) -> list[bytes]:
    """Every key and value under the prefix: hashes, sets, strings, lists (the changelog, the audit
    trail), stored events decompressed."""
    out = redis_dump(store.client, store.prefix)
    for key in store.client.scan_iter(match=store.prefix + "*", count=1000):
        kind = store.client.type(key)
        if kind == b"list":
            out += store.client.lrange(key, 0, -1)
        elif kind == b"string" and key.startswith(store.key("ev", "").encode()):
            raw = store.client.get(key)
            if raw is not None:
                out += [orjson.dumps(e) for e in unpack_events(raw)]
    return out


def _files(root: Path) -> list[bytes]:
    return [p.read_bytes() for p in root.rglob("*") if p.is_file()]


def _found(blobs: list[bytes], needles: dict[str, list[bytes]]) -> list[str]:
    """Ids whose id bytes or signature bytes occur in any blob."""
    hit = []
    for rid, sig in needles.items():
        if any(rid.encode() in b or any(s in b for s in sig) for b in blobs):
            hit.append(rid)
    return hit


def test_erasure_doors_one_member(kafka_bootstrap: str, redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    """Topic, API and CLI doors; unknown ids, malformed messages, idempotence, re-sent ids, events."""
    n = 300
    _path, _truth, rows = crm_rows(n, 23, tmp_path)
    topic, events, erasures, group = unique_topic("crm"), unique_topic("ev"), unique_topic("erase"), unique_topic("g")
    create_topics(kafka_bootstrap, [topic, events, erasures])
    store = RedisStateStore(redis_url, redis_prefix)
    s = service_settings(kafka_bootstrap, redis_url, [topic], events, group, redis_prefix, erasure_topic=erasures,
                         dlq_topic=erasures + ".dlq", api=True)
    with running_service(s) as svc:
        wait_for(lambda: http_get(svc.url + "/readyz")[0] == 200, 60, "ready")
        produce_json(kafka_bootstrap, topic, rows, key="customer_id")
        wait_for(lambda: store.record_count() >= n, 60, "records in redis")
        final = dict(store.export_clusters())
        sizes: dict[str, int] = {}
        for c in final.values():
            sizes[c] = sizes.get(c, 0) + 1
        # Founders and members of multi-record clusters (the interesting cases) plus singletons.
        multi = [r for r, c in final.items() if sizes[c] > 1]
        single = [r for r, c in final.items() if sizes[c] == 1]
        via_topic, via_api, via_cli = multi[:6] + single[:4], multi[6:9] + single[4:6], multi[9:11]
        gone = via_topic + via_api + via_cli
        needles = _signature_needles(store, gone)
        produce_json(kafka_bootstrap, erasures, [{"record_id": r} for r in via_topic[:5]] + [b"{not json", b"[1,2]"]
                     + [orjson.dumps(r) for r in via_topic[5:]] + [{"record_id": "no-such-id"}])
        for rid in via_api:
            status, body = _delete(f"{svc.url}/v1/records/{rid}")
            assert status == 200 and body == {"record_id": rid, "erased": True}
        assert _delete(f"{svc.url}/v1/records/no-such-id")[0] == 404
        assert _delete(f"{svc.url}/v1/records/{via_api[0]}")[0] == 404  # idempotent: gone already
        cli = subprocess.run([sys.executable, "-m", "consumer.cli", "erase", *via_cli, "unknown-1", "--redis",
                              redis_url, "--redis-prefix", redis_prefix],
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert cli.returncode == 0, cli.stderr
        assert orjson.loads(cli.stdout)["erased"] == len(via_cli) and "not found: unknown-1" in cli.stderr
        wait_for(lambda: not (store.existing(gone)), 30, "erased in redis")
        wait_for(lambda: svc.pipe is not None and not any(r in svc.pipe.store.row_of for r in gone), 30,
                 "erased in the replica")
        assert not any(r in svc.pipe.assignments() for r in gone)
        # An erased id sent again is a new record, decided afresh (not a replay of the old one).
        again = next(r for r in rows if r["customer_id"] == via_topic[0])
        produce_json(kafka_bootstrap, topic, [again], key="customer_id")
        wait_for(lambda: store.existing([via_topic[0]]), 30, "the re-sent id stored again")
        values = [m.value for m in consume_all(kafka_bootstrap, events, timeout=20, min_messages=n)
                  if m.value is not None]
        # Nothing of an erased record in Redis (but the re-sent one, stored again) once the log is trimmed.
        left = {r: v for r, v in needles.items() if r != via_topic[0]}
        # The log is trimmed on the service's own schedule: allow a loaded CI machine a minute.
        wait_for(lambda: _found(_redis_blobs(store), left) == [], 60, "erased ids gone from every key and the log")
    check_events(values, reborn={via_topic[0]})
    evs = [orjson.loads(v) for v in values]
    erased_events = [e for e in evs if e["event_type"] == "record.erased"]
    assert {e["record_id"] for e in erased_events} == set(gone)
    assert all(e["source"]["topic"] == "dedup.erasure" for e in erased_events)
    clustered = [e for e in evs if e["event_type"] == "record.clustered" and e["record_id"] == via_topic[0]]
    assert len(clustered) == 2  # first arrival, and again after its erasure
    dead = consume_all(kafka_bootstrap, erasures + ".dlq", timeout=10, min_messages=2)
    assert sorted(m.value for m in dead) == [b"[1,2]", b"{not json"]
    assert store.verify() == []
    assert _found(_redis_blobs(store), left) == []  # and it stays so after the member left
    trail = store.audit_trail()
    hashes = {id_hash(s.encoders.hash_key, r) for r in gone}
    assert hashes <= {e["h"] for e in trail if "h" in e}
    assert not any(r.encode() in orjson.dumps(trail) for r in gone)


def test_trimmed_position_raises_and_positions_hold_the_log(redis_url: str, redis_prefix: str) -> None:
    """Positions are absolute; trimming stops at the oldest live member or fresh snapshot; a trimmed
    position is an error the member turns into a rebuild."""
    store = RedisStateStore(redis_url, redis_prefix)
    store.client.rpush(store.key("log"), *[f"r{i}" for i in range(10)])
    now = int(time.time() * 1000)
    store.publish_position("members", "a", 4, now)
    store.publish_position("snapshots", "/s/snap-1", 6, now)
    store.publish_position("members", "dead", 1, now - 120_000)
    assert store.trim_log(now, 60_000, 60_000) == (0, 4, 10)
    assert store.log_base() == 4 and store.log_length() == 10
    assert store.read_log(4, 2) == ["r4", "r5"]
    with pytest.raises(ChangelogTrimmed):
        store.read_log(3)
    store.publish_position("members", "a", 10, now)
    assert store.trim_log(now, 60_000, 60_000) == (4, 6, 10)  # the snapshot still needs 6
    store.withdraw_position("snapshots", "/s/snap-1")
    assert store.trim_log(now, 60_000, 60_000) == (6, 10, 10)
    assert store.read_log(10) == [] and store.log_length() == 10


def _batch_without(rows: list[dict[str, str]], gone: set[str], tmp_path: Path, truth: dict[str, str]) -> float:
    kept = [r["customer_id"] for r in rows if r["customer_id"] not in gone]
    return batch_f1_in_order(rows, kept, {k: v for k, v in truth.items() if k not in gone}, tmp_path)


def test_three_members_erase_mid_stream_with_kill_and_snapshot_restart(
        kafka_bootstrap: str, redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    """The acceptance scenario, bounded: 3 members (one a real process, SIGKILLed and restarted from a
    snapshot), 900 records, 40 erased through the topic and 10 through the API mid-stream. Afterwards no
    Redis key/value, snapshot file or replica holds an erased id or signature, every other record is in
    exactly one cluster, F1 close to `dedup batch` on the file without them, the changelog trimmed."""
    n, bound = 900, 8.0
    _path, truth, rows = crm_rows(n, 31, tmp_path)
    topic, events, erasures, group = unique_topic("crm"), unique_topic("ev"), unique_topic("erase"), unique_topic("g")
    create_topics(kafka_bootstrap, [topic], partitions=4)
    create_topics(kafka_bootstrap, [events, erasures])
    snaps = tmp_path / "snapshots"
    store = RedisStateStore(redis_url, redis_prefix)
    extra = {"erasure_topic": erasures, "snapshot_dir": str(snaps), "snapshot_interval_seconds": 3.0,
             "erasure_bound_seconds": bound, "api": True}
    s = [service_settings(kafka_bootstrap, redis_url, [topic], events, group, redis_prefix, **extra) for _ in range(2)]
    args = ["--kafka", kafka_bootstrap, "--redis", redis_url, "--input-topic", topic, "--events-topic", events,
            "--group", group, "--redis-prefix", redis_prefix]
    env = {"DEDUP_SERVICE__ERASURE_TOPIC": erasures, "DEDUP_SERVICE__SNAPSHOT_DIR": str(snaps),
           "DEDUP_SERVICE__SNAPSHOT_INTERVAL_SECONDS": "3", "DEDUP_SERVICE__ERASURE_BOUND_SECONDS": str(bound)}
    proc = ServiceProcess(args, tmp_path / "proc.log", env).start()
    gone: list[str] = []
    needles: dict[str, list[bytes]] = {}
    try:
        with contextlib.ExitStack() as stack:
            a = stack.enter_context(running_service(s[0]))
            b = stack.enter_context(running_service(s[1]))
            wait_for(lambda: http_get(proc.url + "/readyz")[0] == 200, 90, "process ready (" + proc.log_tail(3) + ")")
            wait_for(lambda: all(http_get(m.url + "/readyz")[0] == 200 for m in (a, b)), 60, "all ready")
            produce_json(kafka_bootstrap, topic, rows[:500], key=lambda _r: uuid.uuid4().bytes)
            wait_for(lambda: store.record_count() >= 500, 90, "500 records in redis")
            time.sleep(4)  # a snapshot of the process member holding records about to be erased
            stored = list(dict(store.export_clusters()))
            rng = np.random.default_rng(7)
            pick = [stored[i] for i in rng.choice(len(stored), 50, replace=False)]
            needles = _signature_needles(store, pick)
            gone = pick
            produce_json(kafka_bootstrap, erasures, [{"record_id": r} for r in pick[:40]])
            proc.signal(signal.SIGKILL)
            proc.wait(30)
            for rid in pick[40:]:
                assert _delete(f"{a.url}/v1/records/{rid}")[0] == 200
            produce_json(kafka_bootstrap, topic, rows[500:], key=lambda _r: uuid.uuid4().bytes)
            proc = ServiceProcess(args, tmp_path / "proc2.log", env).start()
            wait_for(lambda: http_get(proc.url + "/readyz")[0] == 200, 90, "restarted (" + proc.log_tail(3) + ")")
            assert '"source": "snapshot"' in proc.log_tail(200) or '"source":"snapshot"' in proc.log_tail(200)
            wait_for(lambda: store.record_count() >= n, 120, f"{n} records in redis")
            wait_for(lambda: not store.existing(gone), 30, "erased in redis")
            replicas_clean = lambda: all(m.pipe is not None and not any(r in m.pipe.store.row_of for r in gone)  # noqa: E731
                                         for m in (a, b))
            wait_for(replicas_clean, 60, "erased in the in-process replicas")
            time.sleep(bound + 6)  # the bound: snapshots rewritten, the changelog trimmed past the erasures
            for m in (a, b):
                held = set(m.pipe.store.record_ids)
                assert not held & set(gone)
            blobs = _redis_blobs(store)
            where = [(rid, rid.encode() in b, [i for i, x in enumerate(needles[rid]) if x in b], b[:80])
                     for rid in _found(blobs, needles) for b in blobs
                     if rid.encode() in b or any(x in b for x in needles[rid])]
            assert _found(blobs, needles) == [], (where[:5], store.log_base(), store.log_length(),
                                                  store.client.hgetall(store.key("members")),
                                                  store.client.hgetall(store.key("snapshots")))
            needles = _unique(store, needles)
            files = {str(p.relative_to(snaps)): p.read_bytes() for p in snaps.rglob("*") if p.is_file()}
            hits = [(rid, name, rid.encode() in b, [i for i, x in enumerate(needles[rid]) if x in b])
                    for rid in gone for name, b in files.items()
                    if rid.encode() in b or any(x in b for x in needles[rid])]
            assert not hits, hits[:5]
            assert store.log_base() > 0, "changelog never trimmed"
    finally:
        proc.stop()
    assert store.verify() == []
    final = dict(store.export_clusters())
    assert set(final) == {r["customer_id"] for r in rows} - set(gone)
    stream_f1 = cluster_scores(final, {k: v for k, v in truth.items() if k not in gone}).f1
    batch_f1 = _batch_without(rows, set(gone), tmp_path, truth)
    values = [m.value for m in consume_all(kafka_bootstrap, events, timeout=20) if m.value is not None]
    check_events(values, late_link_races=True)
    erased_ev = {orjson.loads(v)["record_id"] for v in values if b'"record.erased"' in v}
    print(f"erasure scenario: F1 stream {stream_f1:.4f} batch-without {batch_f1:.4f}, "
          f"record.erased {len(erased_ev)}/{len(gone)}, log base {store.log_base()} head {store.log_length()}")
    assert erased_ev == set(gone)
    assert abs(stream_f1 - batch_f1) <= 0.02, (stream_f1, batch_f1)
