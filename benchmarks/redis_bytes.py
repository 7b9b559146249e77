"""Redis bytes per record of the service's state, measured with `INFO memory` on a Redis owned by the run.

    python benchmarks/redis_bytes.py --records 5000

Decides a generated CRM file with the pipeline and writes each micro-batch exactly as `dedup run` does
(`service_batch.assemble` -> `RedisStateStore.write_batch`: record hashes, payloads, stored events, member
sets, cluster metadata, the changelog), then reports used_memory growth / records and a per-kind breakdown
(`MEMORY USAGE` of sampled keys), and the same once the stored events have expired
(service.replay_events_ttl_seconds; the run deletes the ev:<id> keys, which is what their expiry does).
The changelog is trimmed as a live member trims it (issue 23: it publishes its position after each batch);
`--no-trim` keeps every entry, as before.
No broker needed: the Kafka messages are stand-ins with the same
topic/partition/offset/timestamp a real one carries.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from harness import redis as hr  # noqa: E402
from harness.kafka import FakeMessage  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--no-trim", action="store_true",
                    help="leave the changelog untrimmed (before issue 23); by default one member publishes its "
                         "position after every batch and trims the log, as `dedup run` members do")
    ap.add_argument("--events-ttl", type=int, default=86400,
                    help="service.replay_events_ttl_seconds the writes use (0 = stored events never expire)")
    ap.add_argument("--redis-cluster", type=int, default=0, metavar="N",
                    help="write to a Redis Cluster of N masters the run starts, and report each master's bytes "
                         "per record (the store's slot holds all but payloads and events, which spread: issue 39)")
    args = ap.parse_args()

    from consumer.config import load_settings
    from consumer.engine.records import Record
    from consumer.generate import write_crm
    from consumer.io.artifacts import build_pipeline
    from consumer.io.batch import iter_records
    from consumer.store.redis import RedisStateStore

    work = Path(tempfile.mkdtemp(prefix="redis-bytes-"))
    write_crm(work / "crm.csv", work / "truth.csv", args.records, args.seed)
    settings = load_settings(env={})
    recs = [r for _, r in iter_records(work / "crm.csv", settings) if isinstance(r, Record)]
    pipe = build_pipeline(settings)
    if args.redis_cluster:
        return on_cluster(args, recs, pipe)
    server = hr.OwnedRedis(data_dir=work / "redis", appendonly=False)
    (work / "redis").mkdir()
    server.start()
    try:
        client = server.client()
        store = RedisStateStore(server.url, "dedup", events_ttl=args.events_ttl)
        base = int(client.info("memory")["used_memory"])
        fill(store, recs, pipe, args)
        used = int(client.info("memory")["used_memory"]) - base
        kinds: dict[str, list[int]] = defaultdict(list)
        for n, key in enumerate(client.scan_iter(match="dedup:*", count=1000)):
            kind = key.decode().split(":")[1]
            if len(kinds[kind]) < 300 or n % 10 == 0:
                kinds[kind].append(int(client.memory_usage(key, samples=0) or 0))
        counts: dict[str, int] = defaultdict(int)
        for key in client.scan_iter(match="dedup:*", count=1000):
            counts[key.decode().split(":")[1]] += 1
        n = len(recs)
        breakdown = {k: {"keys": counts[k], "mean_bytes": round(sum(v) / len(v)),
                         "per_record": round(counts[k] * sum(v) / len(v) / n)} for k, v in sorted(kinds.items())}
        sample = client.hgetall(next(client.scan_iter(match="dedup:rec:*", count=10)))
        fields = {k.decode(): len(v) for k, v in sample.items()}
        ev_keys = list(client.scan_iter(match="dedup:ev:*", count=1000))
        for i in range(0, len(ev_keys), 1000):
            client.delete(*ev_keys[i: i + 1000])
        after = int(client.info("memory")["used_memory"]) - base
        print(json.dumps({"records": n, "events_ttl_seconds": args.events_ttl, "used_memory_bytes": used,
                          "bytes_per_record": round(used / n),
                          "bytes_per_record_after_events_expire": round(after / n),
                          "changelog_trimmed": not args.no_trim, "changelog_entries_left": client.llen("dedup:log"),
                          "changelog_head": store.log_length(),
                          "by_key_kind": breakdown, "one_record_hash_field_bytes": fields}, indent=2))
    finally:
        server.stop()
    return 0


def fill(store: Any, recs: list[Any], pipe: Any, args: argparse.Namespace) -> None:
    """Decide `recs` in micro-batches and write each as `dedup run` does (trimming the log unless --no-trim)."""
    from consumer.service.batch import Batch, assemble

    offset = 0
    for i in range(0, len(recs), args.batch):
        chunk = recs[i: i + args.batch]
        batch = Batch([FakeMessage(offset + j) for j in range(len(chunk))])  # type: ignore[arg-type]
        offset += len(chunk)
        batch.good = list(zip(batch.messages, chunk))  # type: ignore[arg-type]
        # one fingerprint per record, as the service computes them (a spread payload's key names it)
        batch.fps = [f"{offset - len(chunk) + j:032x}" for j in range(len(chunk))]
        batch.decisions = pipe.process(chunk)
        assemble(batch, pipe, time.time())
        assert batch.write is not None
        store.write_batch(batch.write, "2026-01-01T00:00:00.000Z")
        if not args.no_trim:  # a live member that has applied everything, as `dedup run` publishes it
            now_ms = int(time.time() * 1000)
            store.publish_position("members", "bench", store.log_length(), now_ms)
            store.trim_log(now_ms, 60_000, 60_000)


def on_cluster(args: argparse.Namespace, recs: list[Any], pipe: Any) -> int:
    """The same writes on a Redis Cluster of `--redis-cluster` masters: each master's used_memory growth per
    record, with the stored events kept and once they expired, and the share of the largest master (what
    bounds one store: the master owning the store's slot; payloads and events spread over every master)."""
    from harness.redis_cluster import OwnedRedisCluster

    from consumer.store.redis import RedisStateStore

    cluster = OwnedRedisCluster(args.redis_cluster).start()
    try:
        store = RedisStateStore(cluster.url, "dedup", events_ttl=args.events_ttl)
        masters = {n.name: store.client.get_redis_connection(n) for n in store.client.get_primaries()}

        def used() -> dict[str, int]:
            return {name: int(m.info("memory")["used_memory"]) for name, m in masters.items()}

        base = used()
        fill(store, recs, pipe, args)
        n = len(recs)
        with_events = {k: round((v - base[k]) / n) for k, v in used().items()}
        payloads = {name: sum(1 for _ in m.scan_iter(match="{*}:{dedup}:pl:*", count=1000))
                    for name, m in masters.items()}
        slot_master = store.client.get_node_from_key(store.key("log")).name
        for m in masters.values():  # what the events' expiry does (in the store's slot, or the records' own)
            keys = [k for pattern in ("{dedup}:ev:*", "{*}:{dedup}:e[va]:*")
                    for k in m.scan_iter(match=pattern, count=1000)]
            for k in keys:
                m.delete(k)
        after = {k: round((v - base[k]) / n) for k, v in used().items()}
        print(json.dumps({
            "records": n, "masters": args.redis_cluster, "events_ttl_seconds": args.events_ttl,
            "store_slot_master": slot_master, "bytes_per_record_by_master": with_events,
            "bytes_per_record_by_master_after_events_expire": after, "payload_keys_by_master": payloads,
            "bytes_per_record_all_masters": sum(with_events.values()),
            "bytes_per_record_all_masters_after_events_expire": sum(after.values()),
            "largest_master_bytes_per_record": max(with_events.values()),
            "largest_master_bytes_per_record_after_events_expire": max(after.values())}, indent=2))
    finally:
        cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
