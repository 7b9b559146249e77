"""Load test for `dedup run`: offered rate over time -> throughput, end-to-end latency, lag and errors.

    python loadtest/loadtest.py --local --steps 200:10,400:10,600:10 --out loadtest-out
    python loadtest/loadtest.py --bootstrap kafka:9092 --input-topic signups --events-topic duplicate-events \\
        --metrics-url http://dedup:8000 --ramp 100:800 --seconds 40

Produces generated CRM signups (consumer.generate, ids tagged per run) at a fixed rate, a ramp or steps,
reads the events topic and matches each record to its `record.clustered` event (latency = the record's
Kafka timestamp -> event seen here), scrapes /metrics every --scrape-interval, and writes report.json and
report.png to --out. Prints a line per window and the highest offered rate whose windows kept p99 under
--p99-bound-ms. `--local` starts its own stack on loopback (tansu, Redis per tests/harness, `dedup run`),
as loadtest/bench_service.py does. Exit: 0 all records seen without errors, 1 otherwise, 2 set-up failed
(no traceback). Options: docs/loadtest.md.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from common import ServiceRun, hk, paced_produce, producer, reading_events, scrape, servers
from confluent_kafka import KafkaException
from windows import Scrape, parse_profile, plot, send_offsets, summary, window_stats


class SetupError(Exception):
    """Something the user can fix (unreachable broker or metrics, missing topic, bad options): one line."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = ap.add_argument_group("target (--local, or a running deployment)")
    target.add_argument("--local", action="store_true", help="start tansu + Redis + `dedup run` on loopback")
    target.add_argument("--bootstrap", help="bootstrap.servers of the deployment's Kafka (DEDUP_KAFKA_* apply)")
    target.add_argument("--input-topic", help="topic `dedup run` consumes")
    target.add_argument("--events-topic", help="topic `dedup run` produces events to")
    target.add_argument("--metrics-url", help="base URL of the service's /metrics (optional; lag and errors)")
    target.add_argument("--service-arg", action="append", default=[], help="--local: extra `dedup run` flag")
    load = ap.add_argument_group("load profile (one of)")
    load.add_argument("--rate", type=float, help="fixed records/s for --seconds")
    load.add_argument("--ramp", metavar="START:END", help="records/s rising linearly over --seconds")
    load.add_argument("--steps", metavar="R:S,R:S", help="R records/s for S seconds, then the next")
    load.add_argument("--seconds", type=float, help="duration of --rate or --ramp")
    bound = ap.add_argument_group("bounds and report")
    bound.add_argument("--max-records", type=int, default=100_000, help="hard cap on records produced")
    bound.add_argument("--max-seconds", type=float, default=600.0,
                       help="hard cap on the measured run (producing + waiting for events)")
    bound.add_argument("--drain-seconds", type=float, default=30.0, help="wait for late events after the load")
    bound.add_argument("--warmup-records", type=int, default=50, help="sent and awaited first, not measured")
    bound.add_argument("--window", type=float, default=1.0, help="seconds per report window")
    bound.add_argument("--scrape-interval", type=float, default=1.0, help="seconds between /metrics scrapes")
    bound.add_argument("--p99-bound-ms", type=float, default=250.0, help="latency bound for the max rate")
    bound.add_argument("--seed", type=int, default=7, help="generator seed")
    bound.add_argument("--out", default="loadtest-out", help="directory for report.json and report.png")
    args = ap.parse_args(argv)
    if args.local == bool(args.bootstrap):
        ap.error("give either --local or --bootstrap (with --input-topic and --events-topic)")
    if args.bootstrap and not (args.input_topic and args.events_topic):
        ap.error("--bootstrap needs --input-topic and --events-topic")
    if sum(x is not None for x in (args.rate, args.ramp, args.steps)) != 1:
        ap.error("give one load profile: --rate R --seconds S, --ramp A:B --seconds S, or --steps R:S,...")
    if not args.steps and not args.seconds:
        ap.error("--rate and --ramp need --seconds")
    try:
        args.profile = parse_profile(args.rate, args.ramp, args.steps, args.seconds)
    except ValueError as exc:
        ap.error(f"bad load profile: {exc}")
    if min(args.max_records, args.max_seconds, args.window, args.scrape_interval) <= 0:
        ap.error("--max-records, --max-seconds, --window and --scrape-interval must be positive")
    return args


def _loopback(host: str) -> bool:
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def local_stack(args: argparse.Namespace, workdir: Path) -> Iterator[tuple[str, str, str, str]]:
    """(bootstrap, input topic, events topic, metrics url) of a loopback stack, torn down on exit."""
    with servers(workdir) as (bootstrap, redis_url):
        hosts = [b.rsplit(":", 1)[0] for b in bootstrap.split(",")] + [urlparse(redis_url).hostname or ""]
        if not all(_loopback(h) for h in hosts):
            raise SetupError("--local runs on loopback only; unset KAFKA_BOOTSTRAP/REDIS_URL or point them at "
                             "127.0.0.1")
        props = [a for k, v in hk.FAST_GROUP_CONFIG.items() for a in ("--kafka-property", f"{k}={v}")]
        with ServiceRun(bootstrap, redis_url, hk.unique_topic("loadtest"), workdir, *props,
                        *args.service_arg) as svc:
            url = f"http://127.0.0.1:{svc.port}"
            deadline = time.monotonic() + 180
            while not _ready(url):
                if svc.proc is not None and svc.proc.poll() is not None:
                    raise SetupError(f"`dedup run` exited with {svc.proc.returncode}; see {svc.log}")
                if time.monotonic() > deadline:
                    raise SetupError(f"`dedup run` not ready within 180 s; see {svc.log}")
                time.sleep(0.3)
            yield bootstrap, svc.topic, svc.events, url


def _ready(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def check_remote(bootstrap: str, topics: list[str], metrics_url: str | None) -> None:
    """Fail with one clear line when the broker, a topic or the metrics endpoint is not there."""
    from confluent_kafka.admin import AdminClient

    try:
        meta = AdminClient(hk.client_config(bootstrap)).list_topics(timeout=10)
    except KafkaException as exc:
        raise SetupError(f"Kafka at {bootstrap} unreachable: {exc.args[0].str()}") from None
    missing = [t for t in topics if t not in meta.topics or meta.topics[t].error is not None]
    if missing:
        raise SetupError(f"topic(s) {', '.join(missing)} not found at {bootstrap}")
    if metrics_url:
        try:
            scrape(metrics_url)
        except (OSError, ValueError) as exc:
            raise SetupError(f"metrics at {metrics_url}/metrics unreachable: {exc}") from None


class Scraper(threading.Thread):
    """Reads /metrics every `interval` s into `scrapes` (lag summed over the input topic's partitions)."""

    def __init__(self, url: str, topic: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.url, self.topic, self.interval = url, topic, interval
        self.scrapes: list[Scrape] = []
        self.failures = 0
        self.stop = threading.Event()

    def read(self) -> Scrape:
        samples = scrape(self.url)
        stages: dict[str, float] = {}
        for name, labels, value in samples:
            if name == "dedup_stage_seconds_sum":
                stages[labels["stage"]] = stages.get(labels["stage"], 0.0) + value
        return Scrape(at=time.time(), stages=stages,
                      lag=sum(v for n, lb, v in samples if n == "dedup_consumer_lag" and lb["topic"] == self.topic),
                      records=sum(v for n, _lb, v in samples if n == "dedup_records_total"),
                      dead_letters=sum(v for n, _lb, v in samples if n == "dedup_dead_letters_total"))

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.scrapes.append(self.read())
            except (OSError, ValueError):
                self.failures += 1
            self.stop.wait(self.interval)


def generate_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """Generated signups with ids unique to this run (a deployment may hold an earlier run's records)."""
    from consumer.generate import generate_crm

    tag = uuid.uuid4().hex[:8]
    rows, _truth = generate_crm(n, seed)
    return [{**row, "customer_id": f"lt-{tag}-{row['customer_id']}"} for row in rows]


def measure(args: argparse.Namespace, bootstrap: str, topic: str, events: str, url: str | None) -> dict[str, Any]:
    """Warm up, run the profile, wait for the events, and build the report."""
    offsets = send_offsets(args.profile, args.max_records)
    offsets = [t for t in offsets if t < args.max_seconds]
    rows = generate_rows(args.warmup_records + len(offsets), args.seed)
    warm, rows = rows[: args.warmup_records], rows[args.warmup_records:]
    ids = [r["customer_id"] for r in rows]
    prod = producer(bootstrap)
    scraper = Scraper(url, topic, args.scrape_interval) if url else None
    with reading_events(bootstrap, events, {r["customer_id"] for r in warm} | set(ids)) as seen:
        paced_produce(prod, topic, warm, [0.0] * len(warm))
        deadline = time.monotonic() + 120
        while len(seen) < len(warm):
            if time.monotonic() > deadline:
                raise SetupError(f"only {len(seen)} of {len(warm)} warm-up records reached {events} within "
                                 f"120 s: is the service consuming {topic}?")
            time.sleep(0.1)
        if scraper:
            scraper.scrapes.append(scraper.read())  # the baseline of every counter delta
            scraper.start()
        t0 = time.monotonic()
        sent = paced_produce(prod, topic, rows, offsets, stop=lambda: time.monotonic() - t0 > args.max_seconds)
        stop_at = min(time.monotonic() + args.drain_seconds, t0 + args.max_seconds)
        while time.monotonic() < stop_at and sum(i in seen for i in ids[: len(sent.sent_at)]) < len(sent.sent_at):
            time.sleep(0.2)
        end = time.time()
        if scraper:
            scraper.stop.set()
            scraper.join(10)
        got = dict(seen)
    ids = ids[: len(sent.sent_at)]
    latency = [got[i][1] - got[i][0] if i in got else None for i in ids]
    seen_at = [got[i][1] for i in ids if i in got]
    start = sent.sent_at[0] if sent.sent_at else end
    scrapes = scraper.scrapes if scraper else []
    windows = window_stats(start, args.window, sent.sent_at, sent.failed, latency, seen_at, scrapes, end)
    dead = int(scrapes[-1].dead_letters - scrapes[0].dead_letters) if len(scrapes) > 1 else 0
    return {
        "config": {"profile": [vars(s) for s in args.profile], "window_seconds": args.window,
                   "max_records": args.max_records, "max_seconds": args.max_seconds, "seed": args.seed,
                   "warmup_records": len(warm), "input_topic": topic, "events_topic": events,
                   "metrics_url": url, "local": args.local},
        "summary": {**summary(latency, end - start, windows, len(sent.failed), dead, args.p99_bound_ms),
                    "scrapes": len(scrapes), "scrape_failures": scraper.failures if scraper else 0},
        "windows": windows,
    }


def print_report(report: dict[str, Any], out: Path) -> None:
    print(f"{'t(s)':>6} {'offered/s':>9} {'events/s':>9} {'p50ms':>7} {'p95ms':>7} {'p99ms':>7} {'lag':>6} "
          f"{'errors':>6} {'unseen':>6}")
    for w in report["windows"]:
        cells = [w["offered_per_s"] if w["produced"] else "-", w["throughput_per_s"],
                 *(w[k] if w[k] is not None else "-" for k in ("p50_ms", "p95_ms", "p99_ms", "lag")),
                 w["errors"], w["unseen"]]
        print(f"{w['t']:>6g} " + " ".join(f"{c!s:>{n}}" for c, n in zip(cells, (9, 9, 7, 7, 7, 6, 6, 6))))
    s = report["summary"]
    print(f"records {s['produced']} produced, {s['seen']} seen, {s['unseen']} unseen, {s['produce_errors']} "
          f"produce errors, {s['dead_letters']} dead letters; {s['throughput_per_s']} records/s over "
          f"{s['seconds']} s; p50/p95/p99 {s['p50_ms']}/{s['p95_ms']}/{s['p99_ms']} ms; max lag {s['max_lag']}")
    best = s["max_rate_under_bound"]
    print(f"max offered rate with p99 <= {s['p99_bound_ms']:g} ms: "
          + (f"{best:g} records/s" if best is not None else "none (the lowest-rate window missed the bound)"))
    print(f"report: {out / 'report.json'}  plot: {out / 'report.png'}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("harness.rdkafka").setLevel(logging.CRITICAL)  # failures are reported as one line below
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        if args.local:
            with local_stack(args, Path(tempfile.mkdtemp(prefix="stack-", dir=out))) as (bootstrap, topic,
                                                                                         events, url):
                report = measure(args, bootstrap, topic, events, url)
        else:
            check_remote(args.bootstrap, [args.input_topic, args.events_topic], args.metrics_url)
            report = measure(args, args.bootstrap, args.input_topic, args.events_topic, args.metrics_url)
    except SetupError as exc:
        print(f"loadtest: error: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, TimeoutError, FileNotFoundError, urllib.error.URLError, KafkaException) as exc:
        print(f"loadtest: error: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loadtest: interrupted; nothing written", file=sys.stderr)
        return 130
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    plot(report, out / "report.png")
    print_report(report, out)
    s = report["summary"]
    return 0 if not (s["unseen"] or s["produce_errors"] or s["dead_letters"]) else 1


if __name__ == "__main__":
    sys.exit(main())
