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
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ServiceRun, hk, own_children, paced_produce, proc_usage, producer, reading_events, scrape, servers

HIST = "dedup_end_to_end_latency_seconds_bucket"
STAGE_SUM = "dedup_stage_seconds_sum"
STAGE_COUNT = "dedup_stage_seconds_count"


def quantiles(values: list[float], qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> dict[str, float]:
    v = sorted(values)
    return {f"p{round(q * 100)}": round(v[min(int(q * len(v)), len(v) - 1)] * 1000, 1) for q in qs} if v else {}


def scrape_buckets(url: str) -> dict[float, float]:
    return {float(labels["le"]): value for name, labels, value in scrape(url) if name == HIST}


def scrape_stage_seconds(url: str) -> dict[str, float]:
    """Seconds the service spent per stage so far (sums of its per-batch stage histogram)."""
    return {labels["stage"]: value for name, labels, value in scrape(url) if name == STAGE_SUM}


def scrape_batches(url: str) -> float:
    """Micro-batches the service decided so far (the count of its per-batch "cluster" stage)."""
    return max((value for name, labels, value in scrape(url) if name == STAGE_COUNT and labels["stage"] == "cluster"),
               default=0.0)


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


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, every core, from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


def cpu_now(service_pid: int) -> dict[str, float]:
    """CPU seconds so far of the service, the broker(s) this run started, this driver, and the machine."""
    brokers = own_children("tansu")
    busy, total = machine_busy()
    return {"service": proc_usage(service_pid)[0], "broker": sum(proc_usage(p)[0] for p in brokers),
            "driver": sum(os.times()[:2]), "machine_busy": busy, "machine_total": total,
            "brokers": float(len(brokers))}


def cores_used(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, Any]:
    """Cores each process kept busy over `seconds` (the broker's only when this run started it). Why: the
    harness's broker, driver and Redis share the service's cores; tansu's in-memory store costs more per
    fetch as its log grows (docs/benchmarks.md), so a latency figure is read with the broker's share beside it."""
    out: dict[str, Any] = {k: round((after[k] - before[k]) / seconds, 3) for k in ("service", "driver")}
    out["broker"] = round((after["broker"] - before["broker"]) / seconds, 3) if after["brokers"] else None
    out["machine_busy_share"] = round((after["machine_busy"] - before["machine_busy"])
                                      / max(after["machine_total"] - before["machine_total"], 1e-9), 3)
    return out


def by_window(seen: dict[str, tuple[float, float]], window: float) -> list[dict[str, float]]:
    """Latency quantiles per `window` seconds of input time: whether a run's tail is a drift (a backlog
    building up) or a few stalls."""
    rows = sorted(seen.values())
    buckets: dict[int, list[float]] = {}
    for stamped, at in rows:
        buckets.setdefault(int((stamped - rows[0][0]) // window), []).append(at - stamped)
    return [{"from_s": k * window, "records": len(v), **quantiles(v)} for k, v in sorted(buckets.items())]


def generate(n: int, seed: int) -> list[dict[str, Any]]:
    from consumer.generate import generate_crm

    rows, _truth = generate_crm(n, seed)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20_000, help="phase 1 (max rate) records")
    ap.add_argument("--rate", type=float, default=500.0, help="phase 2 records/s")
    ap.add_argument("--seconds", type=float, default=30.0, help="phase 2 duration")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--linger-ms", type=int, default=2,
                    help="phase 2 producer's linger: longer stores fewer batches in the broker's log (tansu's "
                         "in-memory store scans them on every fetch) and is inside every latency")
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

            wanted = {str(r["customer_id"]) for r in second}
            with reading_events(bootstrap, svc.events, wanted) as seen:
                before = scrape_buckets(url)
                stages_before = scrape_stage_seconds(url)
                batches_before = scrape_batches(url)
                # Connect and get the idempotent producer id before the clock starts: records stamped while
                # the load generator itself is still starting would charge its start-up to the service.
                prod, warm_topic = producer(bootstrap, args.linger_ms), f"{topic}.warmup"
                hk.create_topics(bootstrap, [warm_topic])
                prod.produce(warm_topic, b"{}")
                prod.flush(30)
                cpu_before, t_cpu = cpu_now(svc.proc.pid), time.monotonic()
                sent = paced_produce(prod, topic, second, [i / args.rate for i in range(len(second))])
                cores = cores_used(cpu_before, cpu_now(svc.proc.pid), time.monotonic() - t_cpu)
                achieved = len(sent.sent_at) / sent.seconds
                deadline = time.monotonic() + 120
                while len(seen) < len(second) and time.monotonic() < deadline:
                    time.sleep(0.2)
            latencies = [at - stamped for stamped, at in seen.values()]  # in the order the events arrived
            after = scrape_buckets(url)
            stages_2 = _delta(stages_before, scrape_stage_seconds(url))
            batches = scrape_batches(url) - batches_before
    warm = latencies[int(args.rate * 2):]  # steady state: without the first fetch after the idle period
    print(json.dumps({
        "max_rate": {"records": args.records, "records_per_second": round(max_rate, 1),
                     "service_stage_seconds": _delta({}, stages_1)},
        "paced": {"target_rate": args.rate, "achieved_input_rate": round(achieved, 1), "records": len(second),
                  "events_seen": len(latencies),
                  "end_to_end_ms_at_consumer": quantiles(latencies),
                  "end_to_end_ms_at_consumer_after_first_2s": quantiles(warm),
                  "end_to_end_ms_by_5s_of_input": by_window(seen, 5.0),
                  "cores_used_while_producing": cores,
                  "end_to_end_ms_service_histogram": histogram_quantiles(before, after),
                  "service_stage_seconds": stages_2,
                  # Latency at a paced rate is mostly the cycle of a small batch (the one a record waits
                  # behind, then its own), so the fixed cost per batch matters as much as the cost per record.
                  "batches": int(batches), "records_per_batch": round(len(second) / max(batches, 1), 1),
                  "stage_ms_per_batch": {k: round(v * 1000 / max(batches, 1), 2) for k, v in stages_2.items()}},
        "service_log": str(svc.log),
    }, indent=2))
    return 0 if len(latencies) == len(second) else 1


if __name__ == "__main__":
    sys.exit(main())
