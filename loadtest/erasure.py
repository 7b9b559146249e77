"""Acceptance run for erasure (issue 23): forget people everywhere, mid-stream, in a group with a crash.

    python loadtest/erasure.py --records 10000 --topic-erasures 200 --api-erasures 50 --members 3

Every member is a real `dedup run` process with its own snapshot folder. Records are produced with random
keys at --rate. Once --erase-at of them are stored, --topic-erasures stored ids are erased through the
erasure topic and --api-erasures through `DELETE /v1/records/{id}`; then member 0 is SIGKILLed and started
again (it must start from its snapshot). After the stream and the bound (--bound seconds,
service.erasure_bound_seconds), the members are stopped with SIGTERM (each writes its replica as a final
snapshot) and everything is scanned for the erased ids and their signatures: every Redis key and value
(lists and stored events included) and every snapshot file (state, HNSW graph). Then: every other record
in exactly one cluster, pairwise F1 against `dedup batch` on the file without the erased records, the
changelog trimmed. Last, erasure throughput through the topic: --throughput-ids ids produced at once, timed
until Redis has erased them and until every `record.erased` event is out. Prints one JSON object (with
`lscpu`'s model name); exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
from common import ROOT, crm_file, hk, hr, producer, read_rows
from scaleout import ready, wait
from stream_vs_batch import batch_baseline

FAST = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500", "max.poll.interval.ms": "30000"}


def start_member(args: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = hk.free_port()
    argv = [sys.executable, "-m", "consumer.cli", "--log-level", "INFO", "run", *args, "--http-host", "127.0.0.1",
            "--http-port", str(port), "--insecure-default-key", "--no-auth",  # loopback only
            *[a for k, v in FAST.items() for a in ("--kafka-property", f"{k}={v}")]]
    with open(log, "ab") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **env})
    return proc, port


def delete(port: int, rid: str) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/records/{rid}", method="DELETE")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def needles_of(store: Any, ids: list[str]) -> dict[str, list[bytes]]:
    """Per record: its id, the tail of its compressed payload and its raw vector rows."""
    from consumer.store.record_state import decode_payload, register_layout

    for lid, layout in store.client.hgetall(store.key("layouts")).items():
        register_layout(int(lid), layout)
    out: dict[str, list[bytes]] = {}
    for rid in ids:
        payload = store.stored_payload(rid)
        cols, _c, _r = decode_payload(payload)
        out[rid] = [rid.encode(), payload[-48:], *(v.tobytes() for v in cols.values()
                                                   if v.dtype.kind == "f" and v.nbytes >= 64)]
    return out


def unique_needles(store: Any, needles: dict[str, list[bytes]]) -> dict[str, list[bytes]]:
    """Leave out vectors a remaining record shares (generated twins may be exact copies)."""
    from consumer.store.record_state import decode_payload

    shared: set[bytes] = set()
    for state in store.load_states():
        shared.update(v.tobytes() for v in decode_payload(state.payload)[0].values())
    return {rid: [x for x in sig if x not in shared] for rid, sig in needles.items()}


def redis_blobs(store: Any) -> list[bytes]:
    """Every key and value under the prefix (and a Redis Cluster store's payloads and events in their
    records' own slots), lists and decompressed stored events included."""
    from consumer.store.event_codec import unpack_events

    c, out = store.client, []
    events = [(store.prefix + kind).encode() for kind in ("ev:", "ea:")]  # beside the record, or in its slot
    keys = [k for pattern in (store.prefix + "*", "{*}:" + store.prefix + "*")
            for k in c.scan_iter(match=pattern, count=1000)]
    for key in keys:
        out.append(key)
        kind = c.type(key)
        if kind == b"hash":
            for k, v in c.hgetall(key).items():
                out += [k, v]
        elif kind == b"set":
            out += list(c.smembers(key))
        elif kind == b"list":
            out += c.lrange(key, 0, -1)
        elif kind == b"string":
            raw = c.get(key)
            out.append(raw)
            if raw is not None and any(key.startswith(e) or b"}:" + e in key for e in events):
                out += [orjson.dumps(e) for e in unpack_events(raw)]
    return out


def hits(blobs: list[bytes], needles: dict[str, list[bytes]]) -> list[str]:
    return sorted(rid for rid, sig in needles.items() if any(x in b for b in blobs for x in sig))


def model_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return "unknown"
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "")


def main() -> int:  # noqa: C901 - one scenario, in order
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=41)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--topic-erasures", type=int, default=200)
    ap.add_argument("--api-erasures", type=int, default=50)
    ap.add_argument("--erase-at", type=float, default=0.4, help="fraction of the stream stored before erasing")
    ap.add_argument("--bound", type=float, default=60.0,
                    help="service.erasure_bound_seconds for the run (snapshots every 10 s: at least 2 x 10 s + margin)")
    ap.add_argument("--throughput-ids", type=int, default=2000)
    ap.add_argument("--tolerance", type=float, default=0.01)
    ap.add_argument("--workdir")
    args = ap.parse_args()

    from consumer.evaluation.evaluate import cluster_scores, load_truth
    from consumer.store.redis import RedisStateStore

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="dedup-erasure-"))
    workdir.mkdir(parents=True, exist_ok=True)
    data, truth_path = crm_file(args.records, args.seed, workdir)
    truth = load_truth(truth_path)
    rows = read_rows(data)
    report: dict[str, Any] = {"records": len(rows), "members": args.members, "cpu": model_name(),
                              "bound_seconds": args.bound}
    procs: list[tuple[subprocess.Popen[bytes], int]] = []
    redis_server = hr.OwnedRedis(data_dir=workdir / "redis", appendonly=False)
    (workdir / "redis").mkdir(exist_ok=True)
    ok = True
    with hk.kafka_bootstrap(log_dir=workdir) as bootstrap:
        redis_server.start()
        try:
            tag = uuid.uuid4().hex[:8]
            topic, events, erasures = f"er-{tag}", f"er-{tag}-events", f"er-{tag}-erase"
            group, prefix = f"er-{tag}", f"er-{tag}:"
            hk.create_topics(bootstrap, [topic], partitions=args.partitions)
            hk.create_topics(bootstrap, [events, erasures])
            base = ["--kafka", bootstrap, "--redis", redis_server.url, "--input-topic", topic, "--events-topic",
                    events, "--group", group, "--redis-prefix", prefix]

            def env(i: int) -> dict[str, str]:
                return {"DEDUP_SERVICE__ERASURE_TOPIC": erasures,
                        "DEDUP_SERVICE__ERASURE_BOUND_SECONDS": str(args.bound),
                        "DEDUP_SERVICE__SNAPSHOT_DIR": str(workdir / f"snapshots-{i}"),
                        "DEDUP_SERVICE__SNAPSHOT_INTERVAL_SECONDS": "10"}

            for i in range(args.members):
                procs.append(start_member(base, env(i), workdir / f"member-{i}.log"))
            wait(lambda: all(ready(p) for _, p in procs), 300, "every member ready")
            store = RedisStateStore(redis_server.url, prefix)
            prod = producer(bootstrap)
            erase_i = int(args.erase_at * len(rows))
            gone: list[str] = []
            needles: dict[str, list[bytes]] = {}
            start = stream_start = time.monotonic()
            for i, row in enumerate(rows):
                ahead = start + i / args.rate - time.monotonic()
                if ahead > 0.002:
                    time.sleep(ahead)
                if i == erase_i:
                    prod.flush(60)
                    wait(lambda: store.record_count() >= erase_i, 600, "records before the erasures stored")
                    time.sleep(12)  # every member has a snapshot holding what is about to be erased
                    stored = sorted(dict(store.export_clusters()))
                    import random

                    gone = random.Random(args.seed).sample(stored, args.topic_erasures + args.api_erasures)
                    needles = needles_of(store, gone)
                    for rid in gone[:args.topic_erasures]:
                        prod.produce(erasures, orjson.dumps({"record_id": rid}), rid.encode())
                    prod.flush(60)
                    statuses = [delete(procs[1][1], rid) for rid in gone[args.topic_erasures:]]
                    report["api_statuses"] = {str(s): statuses.count(s) for s in set(statuses)}
                    procs[0][0].send_signal(signal.SIGKILL)
                    procs[0][0].wait(30)
                    t_restart = time.monotonic()
                    procs[0] = start_member(base, env(0), workdir / "member-0.log")
                    wait(lambda: ready(procs[0][1]), 300, "killed member restarted")
                    report["restart_seconds"] = round(time.monotonic() - t_restart, 1)
                    log = (workdir / "member-0.log").read_text(errors="replace").splitlines()
                    loaded = [json.loads(x) for x in log if '"state loaded"' in x]
                    report["restart_source"] = loaded[-1].get("source") if loaded else None
                    start = time.monotonic() - i / args.rate
                prod.produce(topic, orjson.dumps(row), uuid.uuid4().bytes)
                prod.poll(0)
            prod.flush(60)
            wait(lambda: store.record_count() >= len(rows), 1200, "every record in redis")
            # (includes the 12 s wait before the erasures and the killed member's restart)
            report["seconds_stream_until_all_stored"] = round(time.monotonic() - stream_start, 1)
            wait(lambda: not store.existing(gone), 120, "erased ids gone from redis")
            time.sleep(args.bound + 10)  # the bound: snapshots rewritten, the changelog trimmed
            report["changelog"] = {"base": store.log_base(), "head": store.log_length(),
                                   "entries_kept": store.client.llen(store.key("log"))}
            needles = unique_needles(store, needles)
            report["redis_hits"] = hits(redis_blobs(store), needles)[:5]
            problems = store.verify()
            final = dict(store.export_clusters())

            # Throughput through the topic: erase more stored ids at once.
            extra = [r for r in sorted(final) if r not in set(gone)][: args.throughput_ids]
            t0, t0_wall = time.monotonic(), time.time()
            for rid in extra:
                prod.produce(erasures, orjson.dumps({"record_id": rid}), rid.encode())
            prod.flush(60)
            t_produced = time.monotonic() - t0
            wait(lambda: not store.existing(extra), 600, "throughput ids erased in redis")
            t_redis = time.monotonic() - t0
            wait(lambda: sum(1 for e in store.audit_trail(100_000) if e.get("door") == "topic")
                 >= len(extra) + args.topic_erasures, 60, "audit entries")
            report["throughput"] = {"ids": len(extra), "seconds_producing": round(t_produced, 2),
                                    "seconds_until_erased_in_redis": round(t_redis, 2),
                                    "ids_per_second_redis": round(len(extra) / t_redis, 1)}
            # SIGTERM: each member writes its replica as a final snapshot; those are scanned too.
            for p, _port in procs:
                p.terminate()
            for p, _port in procs:
                p.wait(120)
            snap_files = [p.read_bytes() for i in range(args.members) for p in (workdir / f"snapshots-{i}").rglob("*")
                          if p.is_file()]
            report["snapshot_files"] = len(snap_files)
            report["snapshot_hits"] = hits(snap_files, needles)[:5]
        finally:
            for p, _port in procs:
                if p.poll() is None:
                    p.kill()
        all_events = [orjson.loads(m.value) for m in hk.consume_all(bootstrap, events, timeout=60)
                      if m.value is not None]
        redis_server.stop()
    erased_events = {e["record_id"] for e in all_events if e["event_type"] == "record.erased"}
    t_events = None
    if all_events:
        times = sorted(e["event_time"] for e in all_events if e["event_type"] == "record.erased"
                       and e["record_id"] in set(extra))
        report["throughput"]["record_erased_events"] = len(times)
        t_events = times
    kept = [r for r in rows if r["customer_id"] not in set(gone)]
    without = workdir / "without.csv"
    with open(without, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(kept)
    truth_kept = {k: v for k, v in truth.items() if k not in set(gone)}
    batch, _secs = batch_baseline(without, truth_kept, workdir)
    stream = cluster_scores(final, truth_kept)
    report.update({
        "erased": len(gone), "record_erased_events_for_them": len(erased_events & set(gone)),
        "verify_problems": problems[:5], "records_in_clusters": len(final),
        "expected_in_clusters": len(kept), "batch_f1_without": round(batch.f1, 4), "stream_f1": round(stream.f1, 4),
        "f1_gap": round(abs(batch.f1 - stream.f1), 4)})
    if t_events:  # end to end: produced -> erased in Redis -> forgotten by every replica -> event out
        from datetime import datetime

        last = datetime.fromisoformat(t_events[-1].replace("Z", "+00:00")).timestamp()
        report["throughput"]["seconds_until_last_record_erased_event"] = round(last - t0_wall, 2)
        report["throughput"]["ids_per_second_end_to_end"] = round(len(t_events) / max(last - t0_wall, 1e-3), 1)
    ok = (not report["redis_hits"] and not report["snapshot_hits"] and not problems and len(final) == len(kept)
          and report["f1_gap"] <= args.tolerance and report["restart_source"] == "snapshot"
          and report["changelog"]["base"] > 0
          and report["throughput"].get("ids_per_second_end_to_end", 0) >= 500)
    report["ok"] = ok
    print(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
