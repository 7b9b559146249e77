"""Acceptance run for scale-out (issue 12): several `dedup run` members in one group against `dedup batch`.

    python loadtest/scaleout.py --records 6400 --rate 500 --members 3 --partitions 6
    python loadtest/scaleout.py ... --redis-cluster 3    # the state in a 3-master Redis Cluster (issue 39)
    python loadtest/scaleout.py ... --index-backend milvus  # one shared Milvus collection (issue 39)
    python loadtest/scaleout.py ... --profile listing       # generated listings with photos (base64 in the message)

Every member is a real `dedup run` process (own health port), all ready before the first record; records
are produced with *random* keys at --rate, so a person's accounts land on different members. At
--kill-at (fraction of the stream) one member is killed with SIGKILL, at --add-at a new member joins. At the
end: pairwise F1 of the final cluster table (Redis, `export-clusters`) against `dedup batch` on the same
file, every record in exactly one cluster (`verify`), no cluster absorbed by two merge events, throughput,
each member's cost of absorbing the others' records, the new member's start-up time, and Redis bytes per
record (`INFO memory` of a Redis owned by this run; summed over the masters with --redis-cluster N, and the
largest master's: the one owning the store's slot, which bounds a cluster store).
With --index-backend milvus the members share one collection (a Milvus standalone server started here from
the `milvus` wheel, or --milvus-uri), and the run also checks that it holds every record exactly once.
Prints one JSON object; exit 1 when the F1 gap is over --tolerance or a check fails.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from common import ROOT, crm_file, hk, hr, listing_file, proc_usage, producer, read_rows, scrape
from harness import redis_cluster as hrc
from stream_vs_batch import batch_baseline

FAST = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500", "max.poll.interval.ms": "30000"}


def start_member(bootstrap: str, redis_url: str, topic: str, events: str, group: str, prefix: str,
                 workdir: Path, n: int, snapshot_dir: str | None,
                 index_env: dict[str, str] | None = None,
                 profile: str = "crm-signup") -> tuple[subprocess.Popen[bytes], int]:
    port = hk.free_port()
    argv = [sys.executable, "-m", "consumer.cli", "--log-level", "INFO", "run", "--profile", profile,
            "--kafka", bootstrap, "--redis", redis_url, "--input-topic", topic, "--events-topic", events,
            "--group", group, "--redis-prefix", prefix, "--http-host", "127.0.0.1", "--http-port", str(port),
            "--insecure-default-key", *[a for k, v in FAST.items() for a in ("--kafka-property", f"{k}={v}")]]
    env = {**os.environ, **(index_env or {})}
    if snapshot_dir:
        env["DEDUP_SERVICE__SNAPSHOT_DIR"] = snapshot_dir
        env["DEDUP_SERVICE__SNAPSHOT_INTERVAL_SECONDS"] = "5"
    with open(workdir / f"member-{n}.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    return proc, port


def milvus_env(uri: str | None, workdir: Path, tag: str) -> dict[str, str]:
    """The members' settings for one shared collection of a fresh prefix: at `uri`, or in a Milvus standalone
    server started here from the `milvus` wheel (stopped at exit)."""
    if not uri:
        from harness.milvus import OwnedMilvus

        # MILVUS_CONFIG: server settings as JSON by dotted milvus.yaml key, over the recommended ones (experiments)
        config = json.loads(os.environ.get("MILVUS_CONFIG", "{}"))
        owned = OwnedMilvus(data_dir=workdir / "milvus", config=config).start()
        atexit.register(owned.close)
        uri = owned.uri
    return {"DEDUP_INDEX__BACKEND": "milvus", "DEDUP_INDEX__MILVUS_URI": uri,
            "DEDUP_INDEX__MILVUS_COLLECTION_PREFIX": f"{tag}_{uuid.uuid4().hex[:8]}"}


def ready(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.25)


def metric(port: int, name: str) -> float:
    try:
        return sum(v for n, _labels, v in scrape(f"http://127.0.0.1:{port}") if n == name)
    except OSError:
        return float("nan")


def histogram_summary(samples: list[tuple[str, dict[str, str], float]], name: str) -> dict[str, float]:
    """Count, mean and ~p50/p99 (histogram bucket upper bounds) of histogram `name` in scraped samples."""
    total = sum(v for n, _l, v in samples if n == f"{name}_sum")
    count = sum(v for n, _l, v in samples if n == f"{name}_count")
    buckets = sorted((float(lab["le"]), v) for n, lab, v in samples if n == f"{name}_bucket")
    out = {"count": count, "mean_ms": round(1000 * total / count, 1) if count else float("nan")}
    for q in (0.5, 0.99):
        out[f"p{int(q * 100)}_ms_at_most"] = next((1000 * le for le, c in buckets if c >= q * count), float("nan"))
    return out


def replica_lag(port: int) -> dict[str, float]:
    """The member's consistency window (`dedup_replica_lag_seconds`)."""
    try:
        return histogram_summary(scrape(f"http://127.0.0.1:{port}"), "dedup_replica_lag_seconds")
    except OSError:
        return {}


def freshness_waits(port: int) -> dict[str, object]:
    """How the member's batches waited for the group's earlier batches in flight (by result), and how long
    the ones that waited took (`dedup_freshness_wait_seconds`)."""
    try:
        samples = scrape(f"http://127.0.0.1:{port}")
    except OSError:
        return {}
    return {"batches": {lab["result"]: v for n, lab, v in samples if n == "dedup_freshness_waits_total"},
            "wait": histogram_summary(samples, "dedup_freshness_wait_seconds")}


class RedisForRun:
    """The run's own Redis: one server, or a Redis Cluster of `masters` masters (tests/harness); the
    members get its URL (`redis+cluster://` for a cluster) and memory is `used_memory` per master (summed, and
    the largest: a cluster store's slot bounds it, docs/scale-out.md)."""

    def __init__(self, masters: int, workdir: Path) -> None:
        self.masters = masters
        (workdir / "redis").mkdir(exist_ok=True)
        self.server = (hrc.OwnedRedisCluster(masters) if masters > 0
                       else hr.OwnedRedis(data_dir=workdir / "redis", appendonly=False))

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.server.start()

    def used_memory(self) -> list[int]:
        """`used_memory` of each master (one entry for a single Redis), in a fixed order."""
        clients = self.server.master_clients() if self.masters > 0 else [self.server.client()]
        try:
            return [int(c.info("memory")["used_memory"]) for c in clients]
        finally:
            for c in clients:
                c.close()

    def stop(self) -> None:
        if self.masters > 0:
            self.server.close()
        else:
            self.server.stop()


def milvus_rows(uri: str, settings_env: dict[str, str], prefix: str,
                profile: str = "crm-signup") -> tuple[list[int], str]:
    """Every primary key of the group's collection (Strong read), and the collection's name."""
    from pymilvus import Collection, connections, utility

    from consumer.config import load_settings
    from consumer.io.milvus_index import collection_name
    from consumer.io.milvus_shared import shared_collection_prefix

    settings = load_settings(env=settings_env, profile=profile)
    alias = f"scaleout-{uuid.uuid4().hex[:8]}"
    connections.connect(alias=alias, uri=uri)
    try:
        stem = collection_name(shared_collection_prefix(settings, prefix), settings.profile.name,
                               settings.encoders.hash_key, 0)[:-1]
        names = [c for c in utility.list_collections(using=alias) if c.startswith(stem)]
        if len(names) != 1:
            return [], ",".join(names)
        coll = Collection(names[0], using=alias)

        def ids_in(lo: int, hi: int) -> list[int]:
            """Ids in [lo, hi): one query returns at most 16,384 rows, so a full answer is split in two."""
            got = coll.query(f"id >= {lo} and id < {hi}", output_fields=["id"], limit=16384,
                             consistency_level="Strong")
            if len(got) < 16384 or hi - lo < 2:
                return [int(r["id"]) for r in got]
            mid = (lo + hi) // 2
            return ids_in(lo, mid) + ids_in(mid, hi)

        return ids_in(0, 2 ** 63 - 1), names[0]  # global ids are non-negative
    finally:
        connections.disconnect(alias)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=6400)
    ap.add_argument("--seed", type=int, default=31)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--kill-at", type=float, default=0.4, help="fraction of the stream; <0: no kill")
    ap.add_argument("--add-at", type=float, default=0.6, help="fraction of the stream; <0: no new member")
    ap.add_argument("--snapshots", action="store_true", help="members share a snapshot folder (5 s interval)")
    ap.add_argument("--tolerance", type=float, default=0.01)
    ap.add_argument("--workdir")
    ap.add_argument("--redis-cluster", type=int, default=0, metavar="N",
                    help="keep the state in a Redis Cluster of N masters started here (0: one Redis)")
    ap.add_argument("--index-backend", choices=["hnswlib", "milvus"], default="hnswlib",
                    help="milvus: the members share one collection (a standalone server started here)")
    ap.add_argument("--milvus-uri", default="", help="a running Milvus instead of starting one")
    ap.add_argument("--profile", choices=["crm-signup", "listing"], default="crm-signup",
                    help="listing: generated listings with photos instead of CRM signups")
    ap.add_argument("--rss-at", type=int, default=0, metavar="N",
                    help="also sample every member's RSS once N records are stored (memory as the data grows)")
    args = ap.parse_args()

    from consumer.config import load_settings
    from consumer.evaluation.evaluate import cluster_scores, load_truth
    from consumer.store.redis import RedisStateStore

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="dedup-scaleout-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.profile == "listing":
        data, truth_path, rows = listing_file(args.records, args.seed, workdir)
        truth = load_truth(truth_path, "listing_id")
    else:
        data, truth_path = crm_file(args.records, args.seed, workdir)
        truth, rows = load_truth(truth_path), read_rows(data)
    batch, batch_seconds = batch_baseline(data, truth, workdir, ["--profile", args.profile])

    procs: list[tuple[subprocess.Popen[bytes], int]] = []
    redis_server = RedisForRun(args.redis_cluster, workdir)
    atexit.register(redis_server.stop)  # also after an error: a cluster is three processes
    index_env = milvus_env(args.milvus_uri, workdir, "so") if args.index_backend == "milvus" else {}
    with hk.kafka_bootstrap(log_dir=workdir) as bootstrap:
        redis_server.start()
        try:
            base_mem = redis_server.used_memory()
            tag = uuid.uuid4().hex[:8]
            topic, events, group, prefix = f"so-{tag}", f"so-{tag}-events", f"so-{tag}", f"so-{tag}:"
            hk.create_topics(bootstrap, [topic], partitions=args.partitions)
            hk.create_topics(bootstrap, [events])
            snap = str(workdir / "snapshots") if args.snapshots else None
            for i in range(args.members):
                procs.append(start_member(bootstrap, redis_server.url, topic, events, group, prefix, workdir, i, snap,
                                          index_env, args.profile))
            wait(lambda: all(ready(p) for _, p in procs), 300, "every member ready (assigned, index loaded)")
            # CPU each member spent before its first record (imports, models, state load, the group join):
            # paid once per process whatever the stream, so reported apart from the stream's work.
            cpu_at_ready = {p.pid: proc_usage(p.pid)[0] for p, _ in procs}
            store = RedisStateStore(redis_server.url, prefix)
            prod = producer(bootstrap)
            kill_i = int(args.kill_at * len(rows)) if args.kill_at >= 0 else -1
            add_i = int(args.add_at * len(rows)) if args.add_at >= 0 else -1
            added: dict[str, Any] = {}
            cpu_of_killed = 0.0

            def add_member() -> None:
                t = time.monotonic()
                proc, port = start_member(bootstrap, redis_server.url, topic, events, group, prefix, workdir,
                                          len(procs), snap, index_env, args.profile)
                procs.append((proc, port))
                wait(lambda: ready(port), 300, "new member ready")
                cpu_at_ready[proc.pid] = proc_usage(proc.pid)[0]
                added["ready_seconds"] = round(time.monotonic() - t, 2)

            adder: threading.Thread | None = None
            rss_at: dict[str, Any] = {}

            def sample_rss() -> None:  # each member's RSS once --rss-at records are stored
                while store.record_count() < args.rss_at:
                    time.sleep(0.25)
                rss_at.update({"records": store.record_count(), "rss_mb": {
                    str(port): round(proc_usage(p.pid)[1], 1) for p, port in procs if p.poll() is None}})

            if args.rss_at > 0:
                threading.Thread(target=sample_rss, daemon=True).start()
            start = time.monotonic()
            for i, row in enumerate(rows):
                ahead = start + i / args.rate - time.monotonic()
                if ahead > 0.002:
                    time.sleep(ahead)
                if i == kill_i:
                    cpu_of_killed = proc_usage(procs[0][0].pid)[0]  # its CPU so far: /proc forgets it
                    procs[0][0].send_signal(signal.SIGKILL)
                if i == add_i:
                    adder = threading.Thread(target=add_member, daemon=True)
                    adder.start()
                prod.produce(topic, orjson.dumps(row), uuid.uuid4().bytes)
                prod.poll(0)
            prod.flush(60)
            produced_s = time.monotonic() - start
            wait(lambda: store.record_count() >= len(rows), 900, "every record in redis")
            done_s = time.monotonic() - start
            if adder is not None:
                adder.join(300)
            time.sleep(3.0)  # the last syncs (late links) settle
            grown = [after - before for after, before in zip(redis_server.used_memory(), base_mem)]
            used = sum(grown)
            alive = [(p, port) for p, port in procs if p.poll() is None]
            usage = {port: proc_usage(p.pid) for p, port in alive}
            members_cpu = cpu_of_killed + sum(cpu for cpu, _rss in usage.values())
            startup_cpu = sum(cpu_at_ready.values())
            per_member = [{"port": port, "rss_mb": round(usage[port][1], 1),
                           "cpu_seconds": round(usage[port][0], 1),
                           "absorbed": metric(port, "dedup_replica_records_total"),
                           "absorb_seconds": round(metric(port, "dedup_replica_seconds_total"), 2),
                           "decided": metric(port, "dedup_records_total"),
                           "startup_seconds": round(metric(port, "dedup_startup_seconds"), 2),
                           "replica_lag": replica_lag(port), "freshness": freshness_waits(port)}
                          for p, port in alive]
            problems = store.verify()
            final = dict(store.export_clusters())
            milvus: dict[str, Any] = {}
            if index_env:  # the collection holds every record once: written by its decider only
                from consumer.io.milvus_shared import gid_key, global_ids

                ids, name = milvus_rows(index_env["DEDUP_INDEX__MILVUS_URI"], index_env, prefix, args.profile)
                want = global_ids(list(final), gid_key(load_settings(env=index_env).encoders.hash_key))
                milvus = {"collection": name, "rows": len(ids), "distinct": len(set(ids)),
                          "each_record_once": sorted(ids) == sorted(want.tolist())}
        finally:
            for p, _port in procs:
                if p.poll() is None:
                    p.terminate()
            for p, _port in procs:
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
        merge_events: dict[str, set[str]] = {}
        # A split piece founded by a record takes that record's cluster id again, one absorbed long ago
        # included (consumer/store/lua.py, split_piece): its next absorption is a new announcement.
        refounded: dict[str, set[str]] = {}
        merge_detail: dict[str, list[dict[str, Any]]] = {}  # what each event said: to tell a repeat's cause
        for m in hk.consume_all(bootstrap, events, timeout=60):
            e = orjson.loads(m.value or b"{}")
            named = [(c, merge_events) for c in e.get("merged_cluster_ids", [])]
            named += [(p["cluster_id"], refounded) for p in e.get("pieces", []) if isinstance(p, dict)]
            for c, seen in named:
                seen.setdefault(c, set()).add(e["event_id"])
                merge_detail.setdefault(c, []).append({
                    k: e.get(k) for k in ("event_id", "event_type", "record_id", "cluster_id", "merged_cluster_ids",
                                          "split_cluster_id", "source", "event_time", "outcome",
                                          "surviving_cluster_id")})
        redis_server.stop()
    stream = cluster_scores(final, truth)
    twice = sorted(c for c, ids in merge_events.items() if len(ids) > 1 + len(refounded.get(c, ())))
    gap = batch.f1 - stream.f1
    ok = (gap <= args.tolerance and len(final) == len(rows) and not problems and not twice
          and (not index_env or milvus.get("each_record_once", False)))
    print(json.dumps({
        "records": len(rows), "profile": args.profile, "seed": args.seed, "rate": args.rate, "members": args.members,
        "partitions": args.partitions, "redis_cluster_masters": args.redis_cluster,
        "index_backend": args.index_backend, "milvus": milvus,
        "killed_at": kill_i, "added_at": add_i,
        "batch": {"f1": round(batch.f1, 4), "precision": round(batch.precision, 4),
                  "recall": round(batch.recall, 4), "seconds": round(batch_seconds, 1)},
        "stream": {"f1": round(stream.f1, 4), "precision": round(stream.precision, 4),
                   "recall": round(stream.recall, 4), "records_in_clusters": len(final)},
        "f1_gap": round(gap, 4), "tolerance": args.tolerance,
        "verify_problems": problems[:5], "clusters_merged_by_two_events": twice[:5],
        "twice_events": {c: merge_detail[c] for c in twice[:3]},
        "clusters_refounded_by_splits": len(refounded),
        "seconds_producing": round(produced_s, 1), "seconds_until_all_stored": round(done_s, 1),
        "throughput_records_per_s": round(len(rows) / done_s, 1),
        "members_cpu_seconds": round(members_cpu, 1),
        "members_cpu_ms_per_record": round(1000 * members_cpu / len(rows), 2),
        "members_startup_cpu_seconds": round(startup_cpu, 1),
        "members_stream_cpu_ms_per_record": round(1000 * (members_cpu - startup_cpu) / len(rows), 2),
        "redis_bytes_per_record": round(used / len(rows)), "new_member": added, "members_at_end": per_member,
        "redis_bytes_per_record_largest_master": round(max(grown) / len(rows)),
        "rss_at": rss_at,
        "ok": ok,
    }, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
