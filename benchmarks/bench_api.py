"""Benchmark `POST /v1/score` over real HTTP: latency per request and requests/s, sequential and concurrent.

    python benchmarks/bench_api.py --requests 300 --clients 4

Starts the API in-process on a free port (the same Falcon app and threaded WSGI server `dedup serve`
uses, scoring-only: no Redis), scores generated CRM pairs (true duplicates and random pairs alike) and
prints one JSON object. Bounded by --requests; each request opens a connection (HTTP/1.0, as the
standard library server speaks), which is part of what is measured.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients in the second round")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()

    from prometheus_client import CollectorRegistry

    from consumer.api.app import ApiContext, api_routes
    from consumer.api.health import HealthServer, HealthState
    from consumer.config import load_settings
    from consumer.generate import write_crm
    from consumer.io.artifacts import build_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "crm.csv"
        write_crm(path, Path(tmp) / "truth.csv", 1000, args.seed)
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    rng = random.Random(args.seed)
    bodies = [json.dumps({"a": rng.choice(rows), "b": rng.choice(rows)}).encode() for _ in range(args.requests)]
    settings = load_settings()
    pipe = build_pipeline(settings)
    health = HealthState(float("inf"))
    ctx = ApiContext(settings, lambda: pipe)
    with HealthServer(health, CollectorRegistry(), routes=[api_routes(ctx)]) as server:
        url = server.url + "/v1/score"

        def one(body: bytes) -> float:
            t0 = time.perf_counter()
            req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                resp.read()
                assert resp.status == 200
            return time.perf_counter() - t0

        for body in bodies[:10]:  # warm-up: caches, OpenMP pools
            one(body)
        out: dict[str, object] = {"requests": args.requests}
        for label, clients in (("sequential", 1), (f"concurrent_{args.clients}", args.clients)):
            t0 = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                lat = sorted(pool.map(one, bodies))
            wall = time.perf_counter() - t0
            out[label] = {"requests_per_s": round(len(lat) / wall, 1),
                          "p50_ms": round(statistics.median(lat) * 1000, 2),
                          "p95_ms": round(lat[int(0.95 * (len(lat) - 1))] * 1000, 2),
                          "p99_ms": round(lat[int(0.99 * (len(lat) - 1))] * 1000, 2),
                          "max_ms": round(lat[-1] * 1000, 2)}
    pipe.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
