"""Start-up time of a `dedup run` member on N records of state: rebuilt from Redis vs snapshot + changelog tail.

    python benchmarks/startup.py --records 100000

Decides N generated CRM records with the pipeline, writes their state to a Redis owned by the run (as the
service does), then starts members in child processes (clean memory figures) that only load state, as
`Service.run` does before joining the group (`Service._load_state`: readiness waits for exactly this):

1. no snapshot: the whole replica rebuilt from Redis (payloads decoded, HNSW graph re-inserted), after which
   the member writes a snapshot (timed too);
2. from that snapshot plus a changelog tail of --tail records written after it.

Prints one JSON object: seconds, source, records, resident memory (RSS) before/after and per record.
`--synthetic K`: decide only K real records and repeat their signatures under new ids with a little noise
on the vectors up to N (for 1M, where deciding 1M records first would take most of an hour on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from harness import redis as hr  # noqa: E402


def child(redis_url: str, prefix: str, snapshot_dir: str, write_snapshot: bool) -> None:
    from consumer.config import load_settings
    from consumer.service.runner import Service
    from consumer.service.snapshot import rss_bytes

    s = load_settings(env={})
    s.service.redis, s.service.redis_prefix, s.service.snapshot_dir = redis_url, prefix, snapshot_dir
    s.service.insecure_default_key, s.service.http_port = True, 0
    svc = Service(s)
    svc._new_pipeline().close()  # load the model files first: not part of the state load
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    svc._load_state()
    took = time.perf_counter() - t0
    rss1 = rss_bytes()
    assert svc.pipe is not None
    out = {"source": svc.state_source, "records": len(svc.pipe.store), "seconds": round(took, 2),
           "rss_mb_before": round(rss0 / 2**20), "rss_mb_after": round(rss1 / 2**20),
           "rss_bytes_per_record": round((rss1 - rss0) / max(len(svc.pipe.store), 1))}
    if write_snapshot:
        t0 = time.perf_counter()
        svc._maybe_snapshot(force=True)
        out["snapshot_write_seconds"] = round(time.perf_counter() - t0, 2)
        out["snapshot_mb"] = round(sum(p.stat().st_size for p in Path(snapshot_dir).rglob("*")
                                       if p.is_file()) / 2**20)
    print(json.dumps(out))


def build(n: int, synthetic: int, seed: int, redis_url: str, prefix: str, work: Path, start: int = 0) -> float:
    """Decide records and write their state as the service would; returns seconds spent deciding."""
    import numpy as np

    from consumer.config import load_settings
    from consumer.engine.records import Record
    from consumer.generate import write_crm
    from consumer.io.artifacts import build_pipeline
    from consumer.io.batch import iter_records
    from consumer.store.record_state import RecordState, decode_payload, encode_rows
    from consumer.store.redis import BatchWrite, RedisStateStore

    real = min(n, synthetic or n)
    write_crm(work / "crm.csv", work / "truth.csv", real, seed)
    s = load_settings(env={})
    recs = [r for _, r in iter_records(work / "crm.csv", s) if isinstance(r, Record)]
    pipe = build_pipeline(s, encode_in_background=True)
    store = RedisStateStore(redis_url, prefix)
    t0 = time.perf_counter()
    for _batch, _d in pipe.process_stream(recs[i: i + 500] for i in range(0, len(recs), 500)):
        pass
    decide_s = time.perf_counter() - t0
    states = pipe.snapshot(range(len(pipe.store)))
    rng = np.random.default_rng(seed)
    written = 0
    copy = 0
    while written < n:
        chunk = states[: min(len(states), n - written)]
        if copy:  # the same signatures under new ids, vectors nudged so the graph is not degenerate
            decoded = [decode_payload(st.payload) for st in chunk]
            cols = {k: np.stack([d[0][k] for d in decoded]) for k in decoded[0][0]}
            for k, v in cols.items():
                if v.dtype.kind == "f":
                    cols[k] = (v + rng.normal(0, 0.02, v.shape)).astype(v.dtype)
            payloads = encode_rows(cols, np.array([d[1] for d in decoded], np.float32),
                                   np.array([d[2] for d in decoded]))
            chunk = [RecordState(f"{st.record_id}~{copy}", st.seq, f"{st.founder_id}~{copy}", p)
                     for st, p in zip(chunk, payloads)]
        for i in range(0, len(chunk), 2000):
            w = BatchWrite(f"bench-{start}-{copy}-{i}")
            for st in chunk[i: i + 2000]:
                w.add_record(st, st.cluster_id, [b"{}"])
            store.write_batch(w, "2026-01-01T00:00:00.000Z")
        written += len(chunk)
        copy += 1
    pipe.close()
    return decide_s


def direct_snapshot(n: int, base: int, seed: int, snapshot_dir: str, work: Path) -> dict[str, float]:
    """A snapshot of n records written straight from memory (no Redis rebuild first): `base` decided real
    records repeated under new ids with noise on the vectors. The HNSW graph of this *synthetic* state is
    built with 2 threads and ef_construction 40 (its file has the same size and layout as a real one, M
    decides that; only the time to build it here is cut). For the 1M figure, where a rebuild from Redis is
    the slow path this benchmark is meant to avoid."""
    import numpy as np

    from consumer.config import load_settings
    from consumer.engine.records import Record
    from consumer.generate import write_crm
    from consumer.io.artifacts import build_pipeline
    from consumer.io.batch import iter_records
    from consumer.service.snapshot import save_snapshot

    write_crm(work / "crm.csv", work / "truth.csv", base, seed)
    s = load_settings(env={})
    recs = [r for _, r in iter_records(work / "crm.csv", s) if isinstance(r, Record)]
    src = build_pipeline(s, encode_in_background=True)
    for _b, _d in src.process_stream(recs[i: i + 500] for i in range(0, len(recs), 500)):
        pass
    m = len(src.store)
    names = src.store.column_names()
    dst = build_pipeline(s, text_encoder=src.text)
    rng = np.random.default_rng(seed)
    base_cluster = np.array([src.clusters.cluster_of[r] for r in range(m)], np.int64)
    t0 = time.perf_counter()
    cluster_of: list[int] = []
    done = 0
    copy = 0
    while done < n:
        k = min(m, n - done)
        cols = {}
        for name in names:
            v = src.store.column(name)[:k]
            cols[name] = (v + rng.normal(0, 0.02, v.shape)).astype(v.dtype) if v.dtype.kind == "f" else v.copy()
        dst.store.append([f"{rid}~{copy}" for rid in src.store.record_ids[:k]], cols,
                         src.store.completeness[:k], src.store.recency[:k])
        founders = base_cluster[:k]
        cluster_of.extend((np.where(founders < k, founders, np.arange(k)) + done).tolist())
        dst.frequencies.observe(cols)
        done += k
        copy += 1
    cl = dst.clusters
    for row, c in enumerate(cluster_of):
        cl.cluster_of[row] = c
        cl.members.setdefault(c, []).append(row)
    for c in cl.members:
        dst.canonical[c] = c
    fill_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = dst.blocker.index
    hn = index._index
    hn.resize_index(max(n, 16))
    hn.set_ef(40)
    vecs = dst.blocker.vectors({name: dst.store.column(name) for name in names})
    for i in range(0, n, 50_000):
        hn.add_items(np.ascontiguousarray(vecs[i: i + 50_000], np.float32), np.arange(i, min(i + 50_000, n)),
                     num_threads=2)
    graph_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    save_snapshot(dst, 0, snapshot_dir, {"config_version": dst.config_version,
                                         "key_id": key_id_default(), "redis_prefix": "bench:",
                                         "model_version": dst.model_version})
    return {"fill_seconds": round(fill_s, 1), "graph_build_seconds": round(graph_s, 1),
            "snapshot_write_seconds": round(time.perf_counter() - t0, 1)}


def key_id_default() -> str:
    from consumer.config import key_id, load_settings

    return key_id(load_settings(env={}).encoders.hash_key)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--synthetic", type=int, default=0, help="decide only this many real records (see doc)")
    ap.add_argument("--tail", type=int, default=1000, help="records written after the snapshot")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--direct", type=int, default=0,
                    help="skip the Redis rebuild: write a snapshot of --records straight from this many decided "
                         "records (see direct_snapshot), then time snapshot + tail")
    ap.add_argument("--child", nargs=4, metavar=("REDIS", "PREFIX", "SNAPDIR", "WRITE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2], args.child[3] == "1")
        return 0
    work = Path(tempfile.mkdtemp(prefix="dedup-startup-"))
    (work / "redis").mkdir()
    server = hr.OwnedRedis(data_dir=work / "redis", appendonly=False).start()
    prefix, snaps = "bench:", str(work / "snapshots")
    try:
        if args.direct:
            made = direct_snapshot(args.records, args.direct, args.seed, snaps, work)
            tail_dir = work / "tail"
            tail_dir.mkdir()
            build(args.tail, 0, args.seed + 1, server.url, prefix, tail_dir, start=1)
            out = subprocess.run([sys.executable, __file__, "--child", server.url, prefix, snaps, "0"], check=True,
                                 capture_output=True, text=True, cwd=ROOT)
            print(json.dumps({"records": args.records, "synthetic_base": args.direct, "built": made,
                              "tail_records": args.tail,
                              "from_snapshot_plus_tail": json.loads(out.stdout.strip().splitlines()[-1])}, indent=2))
            return 0
        decide_s = build(args.records, args.synthetic, args.seed, server.url, prefix, work)
        client = server.client()
        used = int(client.info("memory")["used_memory"])

        def run_child(write: bool) -> dict[str, object]:
            out = subprocess.run([sys.executable, __file__, "--child", server.url, prefix, snaps,
                                  "1" if write else "0"], check=True, capture_output=True, text=True, cwd=ROOT)
            return json.loads(out.stdout.strip().splitlines()[-1])

        from_redis = run_child(True)
        tail_dir = work / "tail"
        tail_dir.mkdir()
        build(args.tail, 0, args.seed + 1, server.url, prefix, tail_dir, start=1)
        from_snapshot = run_child(False)
        print(json.dumps({"records": args.records, "synthetic_base": args.synthetic or None,
                          "decide_seconds": round(decide_s, 1), "redis_used_memory_mb": round(used / 2**20),
                          "from_redis": from_redis, "tail_records": args.tail,
                          "from_snapshot_plus_tail": from_snapshot}, indent=2))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
