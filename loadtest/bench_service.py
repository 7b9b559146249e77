"""Benchmark `dedup run` through a real broker and Redis: sustained records/s, then end-to-end latency at a
paced rate.

    python loadtest/bench_service.py --records 20000 --rate 500 --seconds 30

Phase 1 (max rate): `--records` CRM rows are put on the input topic first, then the service (a real
`dedup run` process) drains them; the rate is measured from 10 % to 100 % committed, so model loading and
the group join are not counted. Phase 2 (latency): the same service, now holding phase 1's records in its
index, gets `--rate` records/s for `--seconds`; for every record, latency = the moment its
`record.clustered` event reaches this script's consumer minus the input record's Kafka timestamp (an upper
bound of the service's own "timestamp -> event acknowledged", which /metrics also reports; both printed).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from common import ServiceRun, hk, servers

HIST = "dedup_end_to_end_latency_seconds_bucket"
STAGE_SUM = "dedup_stage_seconds_sum"


def quantiles(values: list[float], qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> dict[str, float]:
    v = sorted(values)
    return {f"p{round(q * 100)}": round(v[min(int(q * len(v)), len(v) - 1)] * 1000, 1) for q in qs} if v else {}


def scrape_buckets(url: str) -> dict[float, float]:
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    out: dict[float, float] = {}
    for le, value in re.findall(HIST + r'\{le="([^"]+)"\} ([0-9.e+]+)', text):
        out[float("inf") if le == "+Inf" else float(le)] = float(value)
    return out


def scrape_stage_seconds(url: str) -> dict[str, float]:
    """Seconds the service spent per stage so far (sums of its per-batch stage histogram)."""
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    return {stage: float(v) for stage, v in re.findall(STAGE_SUM + r'\{stage="([^"]+)"\} ([0-9.e+]+)', text)}


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(v - before.get(k, 0.0), 2) for k, v in sorted(after.items(), key=lambda kv: -kv[1])}


def histogram_quantiles(before: dict[float, float], after: dict[float, float]) -> dict[str, float]:
    """p50/p95/p99 (ms) of the service's own histogram over the phase, interpolated within buckets."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0
    out: dict[str, float] = {}
    for q in (0.5, 0.95, 0.99):
        target, lo, prev = q * total, 0.0, 0.0
        for b, c in zip(bounds, counts):
            if c >= target and total:
                hi = b if b != float("inf") else lo
                out[f"p{round(q * 100)}"] = round((lo + (hi - lo) * (target - prev) / max(c - prev, 1e-9)) * 1000, 1)
                break
            lo, prev = b, c
    return out


def generate(n: int, seed: int) -> list[dict[str, Any]]:
    from consumer.generate import generate_crm

    rows, _truth = generate_crm(n, seed)
    return rows


def paced_produce(bootstrap: str, topic: str, rows: list[dict[str, Any]], rate: float) -> float:
    """Produce at `rate` records/s with one producer; returns the achieved rate."""
    from confluent_kafka import Producer

    producer = Producer(hk.client_config(bootstrap, {"enable.idempotence": True, "acks": "all", "linger.ms": 2}))
    # Connect and get the idempotent producer id before the clock starts: records stamped while the load
    # generator itself is still starting would charge its start-up to the service.
    warm = f"{topic}.warmup"
    hk.create_topics(bootstrap, [warm])
    producer.produce(warm, b"{}")
    producer.flush(30)
    t0 = time.monotonic()
    for i, row in enumerate(rows):
        ahead = t0 + i / rate - time.monotonic()
        if ahead > 0.002:
            time.sleep(ahead)
        producer.produce(topic, orjson.dumps(row), str(row["customer_id"]).encode())
        producer.poll(0)
    producer.flush(30)
    return len(rows) / (time.monotonic() - t0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20_000, help="phase 1 (max rate) records")
    ap.add_argument("--rate", type=float, default=500.0, help="phase 2 records/s")
    ap.add_argument("--seconds", type=float, default=30.0, help="phase 2 duration")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--service-arg", action="append", default=[], help="extra `dedup run` flag, repeatable")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="dedup-bench-"))
    n2 = int(args.rate * args.seconds)
    rows = generate(args.records + n2, args.seed)
    first, second = rows[: args.records], rows[args.records:]
    with servers(workdir) as (bootstrap, redis_url):
        topic = hk.unique_topic("bench")
        hk.create_topics(bootstrap, [topic])
        hk.produce_json(bootstrap, topic, first, key="customer_id", timeout=120)
        with ServiceRun(bootstrap, redis_url, topic, workdir, *args.service_arg) as svc:
            t_start = svc.wait_committed(int(args.records * 0.1), timeout=600, interval=0.2)
            t_end = svc.wait_committed(args.records, timeout=3600, interval=0.2)
            max_rate = args.records * 0.9 / (t_end - t_start)
            url = f"http://127.0.0.1:{svc.port}"
            stages_1 = scrape_stage_seconds(url)

            latencies: list[float] = []
            wanted = {str(r["customer_id"]) for r in second}
            stop = threading.Event()
            ready = threading.Event()
            reader = threading.Thread(target=read_events, args=(bootstrap, svc.events, wanted, latencies, stop,
                                                                ready), daemon=True)
            reader.start()
            ready.wait(30)
            before = scrape_buckets(url)
            stages_before = scrape_stage_seconds(url)
            achieved = paced_produce(bootstrap, topic, second, args.rate)
            deadline = time.monotonic() + 120
            while len(latencies) < len(second) and time.monotonic() < deadline:
                time.sleep(0.2)
            stop.set()
            reader.join(10)
            after = scrape_buckets(url)
            stages_2 = _delta(stages_before, scrape_stage_seconds(url))
    warm = latencies[int(args.rate * 2):]  # steady state: without the first fetch after the idle period
    print(json.dumps({
        "max_rate": {"records": args.records, "records_per_second": round(max_rate, 1),
                     "service_stage_seconds": _delta({}, stages_1)},
        "paced": {"target_rate": args.rate, "achieved_input_rate": round(achieved, 1), "records": len(second),
                  "events_seen": len(latencies),
                  "end_to_end_ms_at_consumer": quantiles(latencies),
                  "end_to_end_ms_at_consumer_after_first_2s": quantiles(warm),
                  "end_to_end_ms_service_histogram": histogram_quantiles(before, after),
                  "service_stage_seconds": stages_2},
        "service_log": str(svc.log),
    }, indent=2))
    return 0 if len(latencies) == len(second) else 1


def read_events(bootstrap: str, topic: str, wanted: set[str], out: list[float], stop: threading.Event,
                ready: threading.Event) -> None:
    """Latency of each wanted record's `record.clustered` event, as seen by a subscriber."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(hk.client_config(bootstrap, {"group.id": f"bench-reader-{time.time_ns()}",
                                                     "enable.auto.commit": False, "fetch.wait.max.ms": 10}))
    # An explicit start offset: OFFSET_END would be resolved only at the first fetch, which can come after
    # the first events of the phase and skip them.
    _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.assign([TopicPartition(topic, 0, high)])
    seen: set[str] = set()
    try:
        while not stop.is_set():
            for msg in consumer.consume(500, 0.05):
                ready.set()
                if msg.error() is not None:
                    continue
                now = time.time()
                e = orjson.loads(msg.value())
                rid = e["record_id"]
                if e["event_type"] != "record.clustered" or rid not in wanted or rid in seen:
                    continue
                seen.add(rid)
                sent = datetime.fromisoformat(e["record_time"].replace("Z", "+00:00")).timestamp()
                out.append(now - sent)
            ready.set()
    finally:
        consumer.close()


if __name__ == "__main__":
    sys.exit(main())
