"""Benchmark `dedup batch` end to end: records/s, time per stage, bytes of memory per indexed record.

    python benchmarks/bench_batch.py --records 100000

Generates a CRM file (cached under .bench/), then runs the same path as `dedup batch` (read, validate,
encode, block, compare, fuse, cluster, write) and prints one JSON object. Memory per record is the growth
of the process's resident set over the run divided by records, next to the pipeline's own accounting of
its arrays (signature store + HNSW index).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--fusion", choices=["rule", "learned"], default="learned")
    ap.add_argument("--text-backend", choices=["auto", "transformer", "static"], default=None,
                    help="text model (default: the setting, i.e. auto)")
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    args = ap.parse_args()

    from consumer.config import load_settings
    from consumer.engine.stages import DECIDE_STAGES
    from consumer.generate import write_crm
    from consumer.io.artifacts import build_pipeline
    from consumer.io.batch import run_batch

    cache = ROOT / ".bench"
    cache.mkdir(exist_ok=True)
    data = cache / f"crm-{args.records}-{args.seed}.csv"
    if not data.exists():
        write_crm(data, data.with_suffix(".truth.csv"), args.records, args.seed)
    settings = load_settings()  # DEDUP_* variables apply, so settings can be compared
    settings.fusion.mode = args.fusion
    settings.encoders.threads = args.threads
    if args.text_backend:
        settings.encoders.text_backend = args.text_backend
    pipe = build_pipeline(settings, encode_in_background=True)  # as run_batch builds it
    pipe.text.encode(["warm up"])  # load the model outside the timed run
    before = rss_bytes()
    t0 = time.perf_counter()
    summary, pipe = run_batch(data, cache / "out.jsonl", settings, progress=False, pipeline=pipe)
    seconds = time.perf_counter() - t0
    after = rss_bytes()
    stages = dict(sorted(summary.stage_seconds.items(), key=lambda kv: -kv[1]))
    # Three threads: the encoder (encode_*), the index inserts and searches run ahead (index_add,
    # index_search) and the deciding thread, which
    # runs candidates/compare/fuse/cluster and, between them, reads, validates, writes and waits.
    decide = sum(stages.get(k, 0.0) for k in DECIDE_STAGES)
    encode = sum(stages.get(k, 0.0) for k in pipe.encode_stages)
    print(json.dumps({
        "records": summary.records,
        "seconds": round(seconds, 2),
        "records_per_second": round(summary.records / seconds, 1),
        "stage_seconds": {k: round(v, 2) for k, v in stages.items()},
        "thread_seconds": {"encoder": round(encode, 2), "index_add": round(stages.get("index_add", 0.0), 2),
                           "index_search (ahead, on the index_add thread)": round(stages.get("index_search", 0.0), 2),
                           "decide": round(decide, 2),
                           "decide_thread_other (io, validation, waits)": round(seconds - decide, 2)},
        "rss_growth_bytes_per_record": round((after - before) / max(summary.records, 1)),
        "pipeline_bytes_per_record": round(pipe.memory_bytes() / max(summary.records, 1)),
        "clusters": summary.clusters,
        "largest_cluster": summary.largest_cluster,
        "fusion": args.fusion,
        "text_encoder": type(pipe.text).__name__,
        "cores": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
