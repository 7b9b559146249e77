"""Freshness acceptance (issue 39): twins produced to two members within 50 ms of each other end in one
cluster, and mostly without waiting for a late link.

    python loadtest/freshness.py --pairs 200 --index-backend milvus --redis-cluster 3
    python loadtest/freshness.py --pairs 200 --index-backend hnswlib          # the same, embedded index

Two real `dedup run` members in one group on a topic of 2 partitions (one each, checked by a warm-up that
both must decide), the harness's broker, a Redis (or a Redis Cluster of N masters) and, with `milvus`, the
bundled standalone Milvus server (the members share one collection: Bounded searches plus the in-memory
fresh window, docs/scale-out.md). Each pair is a generated CRM signup and a copy of it under a new id with
a trivial edit (none, the name upper-cased, or its words spaced twice: all folded away by normalisation),
so the engine certainly matches them once it sees both; `dedup batch` over the same stream confirms it,
and pairs batch does not link are left out of the shares. The original goes to partition 0 and the twin
to partition 1, 0..--max-gap-ms later (uniform, less 1 ms for the producer loop's sleep), while unique
signups (one per generated person, never a twin's) arrive at --background-rate on both partitions so both
members are busy.

Which pairs needed the late-link rule is read from the **events topic**, not from the
`dedup_late_links_total` counter: a late link is announced as `clusters.merged` with `source.topic =
"dedup.changelog"` whose subject is one twin and whose match is the other, and a pair joined by the
decision itself shows as the later twin's `record.clustered` (`joined`/`merged`) with the other twin
among its `match` candidates (a pair in one cluster that neither names, e.g. through a third record, is
"neither"). Both name the pair, so each pair is classified on its own; the counter is per member and
counts every late link, background signups' included, so it can only cross-check the total (reported as
`late_link_metric`). Late-link events are not stored for replays, so a crash or rebalance in
the measured window could lose one; the run has neither (members_at_end shows one partition each).

Prints one JSON object; exit 1 when fewer than --min-one-cluster of the pairs end in one cluster, fewer
than --min-at-decision were joined at decision time, or the store fails `verify`.
"""

from __future__ import annotations

import argparse
import atexit
import csv
import json
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from common import ROOT, crm_file, hk, producer, read_rows, scrape
from scaleout import RedisForRun, freshness_waits, metric, milvus_env, ready, replica_lag, start_member, wait
from stream_vs_batch import clusters

#: The trivial edits a twin gets, in turn: normalisation folds each away, so only seeing decides.
EDITS = ("copy", "upper", "spaced")


def twin_of(row: dict[str, str], edit: str) -> dict[str, str]:
    """A copy of `row` under a new id with one trivial edit (the name's case or spacing, or none)."""
    out = dict(row, customer_id=str(uuid.uuid4()))
    if edit == "upper":
        out["name"] = row["name"].upper()
    elif edit == "spaced":
        out["name"] = "  ".join(row["name"].split())
    return out


def people(n: int, seed: int, workdir: Path) -> list[dict[str, str]]:
    """`n` signups of `n` different generated people (the first record of each): no two are duplicates by
    construction, so the only true pairs of the run are the twins."""
    from consumer.evaluation.evaluate import load_truth

    size = max(2 * n, 400)
    while True:
        data, truth_path = crm_file(size, seed, workdir)
        truth, seen, out = load_truth(truth_path), set(), []
        for row in read_rows(data):
            if truth[row["customer_id"]] not in seen:
                seen.add(truth[row["customer_id"]])
                out.append(row)
        if len(out) >= n:
            return out[:n]
        size *= 2


def batch_linked(rows: list[dict[str, str]], pairs: list[tuple[str, str]], workdir: Path) -> list[bool]:
    """Per pair: does `dedup batch`, reading the stream in its order, put both twins in one cluster?"""
    path = workdir / "stream.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    subprocess.run([sys.executable, "-m", "consumer.cli", "batch", str(path), "--out", str(workdir / "batch.jsonl"),
                    "-q"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    got = clusters(workdir / "batch.jsonl")
    return [got.get(a) is not None and got.get(a) == got.get(b) for a, b in pairs]


def schedule(pairs: int, interval: float, bg_rate: float, max_gap_ms: float,
             seed: int) -> list[tuple[float, str, int]]:
    """(seconds from start, what, index): pair i's original at i*interval + 0.25 s, its twin up to max_gap
    later; background signups at bg_rate, in time order."""
    rng = random.Random(seed)
    out: list[tuple[float, str, int]] = []
    for i in range(pairs):
        t = 0.25 + i * interval
        # 1 ms under the bound: the producer loop's sleep overshoots by well under that.
        out += [(t, "original", i), (t + rng.uniform(0, max(max_gap_ms - 1, 0)) / 1000.0, "twin", i)]
    duration = 0.5 + pairs * interval
    out += [(k / bg_rate, "background", k) for k in range(int(duration * bg_rate))] if bg_rate > 0 else []
    return sorted(out, key=lambda e: (e[0], e[1] != "original"))


def classify(events: list[dict[str, Any]], pairs: list[tuple[str, str]]) -> list[str]:
    """Per pair, from the events: "decision" (the later twin's decision matched the other), "late" (a
    late-link `clusters.merged` names both), else "neither"."""
    decided: set[tuple[str, str]] = set()
    late: set[tuple[str, str]] = set()
    for e in events:
        matched = {m["record_id"] for m in e.get("matches", []) if m.get("decision") == "match"}
        if e["event_type"] == "record.clustered" and e.get("outcome") in ("joined", "merged"):
            decided.update((e["record_id"], m) for m in matched)
        elif e["event_type"] == "clusters.merged" and e["source"]["topic"] == "dedup.changelog":
            late.update((e["record_id"], m) for m in matched)
    out = []
    for a, b in pairs:
        if (a, b) in decided or (b, a) in decided:
            out.append("decision")
        elif (a, b) in late or (b, a) in late:
            out.append("late")
        else:
            out.append("neither")
    return out


def split_for_ms(events: list[dict[str, Any]], pair: tuple[str, str]) -> float:
    """How long a late-linked pair stayed in two clusters: its late-link event's time minus the later of its
    two `record.clustered` events (both stamped by the members, one host's clock)."""
    def at(e: dict[str, Any]) -> float:
        return datetime.fromisoformat(e["event_time"].replace("Z", "+00:00")).timestamp()

    mine = [e for e in events if e.get("record_id") in pair]
    decided = max(at(e) for e in mine if e["event_type"] == "record.clustered")
    linked = min(at(e) for e in mine if e["event_type"] == "clusters.merged"
                 and e["source"]["topic"] == "dedup.changelog")
    return 1000 * (linked - decided)


def late_link_totals(port: int) -> dict[str, float]:
    """The member's `dedup_late_links_total` by result (NaN when its /metrics does not answer)."""
    try:
        samples = scrape(f"http://127.0.0.1:{port}")
    except OSError:
        return {"applied": float("nan"), "already_merged": float("nan")}
    return {r: sum(v for n, lab, v in samples if n == "dedup_late_links_total" and lab.get("result") == r)
            for r in ("applied", "already_merged")}


def partitions_of(port: int, topic: str) -> list[int]:
    """The input partitions a member holds now (its `dedup_consumer_lag` series, refreshed every second)."""
    try:
        return sorted(int(lab["partition"]) for n, lab, _v in scrape(f"http://127.0.0.1:{port}")
                      if n == "dedup_consumer_lag" and lab.get("topic") == topic)
    except OSError:
        return []


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 2) if s else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=41)
    ap.add_argument("--max-gap-ms", type=float, default=50.0, help="the twin follows its original by 0..this")
    ap.add_argument("--pair-interval", type=float, default=0.15, help="seconds between pairs")
    ap.add_argument("--background-rate", type=float, default=40.0, help="unique signups per second")
    ap.add_argument("--redis-cluster", type=int, default=0, metavar="N", help="a Redis Cluster of N masters")
    ap.add_argument("--index-backend", choices=["hnswlib", "milvus"], default="milvus")
    ap.add_argument("--milvus-uri", default="", help="a running Milvus instead of starting one")
    ap.add_argument("--min-one-cluster", type=float, default=0.99)
    ap.add_argument("--min-at-decision", type=float, default=0.95)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds for each wait (start, drain)")
    ap.add_argument("--workdir")
    args = ap.parse_args()

    from consumer.store.redis import RedisStateStore

    t_start = time.monotonic()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="dedup-freshness-"))
    workdir.mkdir(parents=True, exist_ok=True)
    plan = schedule(args.pairs, args.pair_interval, args.background_rate, args.max_gap_ms, args.seed)
    n_bg = sum(kind == "background" for _t, kind, _i in plan)
    warmup = 40
    pool = people(args.pairs + n_bg + warmup, args.seed, workdir)
    originals, background = pool[:args.pairs], pool[args.pairs:args.pairs + n_bg]
    warm = pool[args.pairs + n_bg:]
    twins = [twin_of(r, EDITS[i % len(EDITS)]) for i, r in enumerate(originals)]
    ids = [(o["customer_id"], t["customer_id"]) for o, t in zip(originals, twins)]
    row_of = {"original": originals, "twin": twins, "background": background}
    stream = warm + [row_of[kind][i] for _t, kind, i in plan]
    linked = batch_linked(stream, ids, workdir)

    procs: list[tuple[subprocess.Popen[bytes], int]] = []
    redis_server = RedisForRun(args.redis_cluster, workdir)
    atexit.register(redis_server.stop)
    index_env = milvus_env(args.milvus_uri, workdir, "fr") if args.index_backend == "milvus" else {}
    sent: dict[tuple[str, int], float] = {}
    failed: list[str] = []
    with hk.kafka_bootstrap(log_dir=workdir) as bootstrap:
        redis_server.start()
        try:
            tag = uuid.uuid4().hex[:8]
            topic, events, group, prefix = f"fr-{tag}", f"fr-{tag}-events", f"fr-{tag}", f"fr-{tag}:"
            hk.create_topics(bootstrap, [topic], partitions=2)
            hk.create_topics(bootstrap, [events])
            for n in range(2):
                procs.append(start_member(bootstrap, redis_server.url, topic, events, group, prefix, workdir, n,
                                          None, index_env))
            wait(lambda: all(ready(p) for _, p in procs), args.timeout, "both members ready")
            store = RedisStateStore(redis_server.url, prefix)
            prod = producer(bootstrap)

            def send(row: dict[str, str], partition: int) -> None:
                def cb(err: Any, _msg: Any) -> None:
                    if err is not None:
                        failed.append(type(err).__name__)
                prod.produce(topic, orjson.dumps(row), uuid.uuid4().bytes, partition=partition, on_delivery=cb)
                prod.poll(0)

            # Warm-up: each member must decide records of its own partition (one partition each, first
            # batches paid) before the first pair.
            for k, row in enumerate(warm):
                send(row, k % 2)
            prod.flush(30)
            wait(lambda: store.record_count() >= len(warm), args.timeout, "warm-up records stored")
            wait(lambda: all(metric(p, "dedup_records_total") > 0 and len(partitions_of(p, topic)) == 1
                             for _, p in procs), 60, "one partition each, both deciding")
            before = [late_link_totals(p) for _, p in procs]
            t0 = time.monotonic()
            for t, kind, i in plan:
                ahead = t0 + t - time.monotonic()
                if ahead > 0.0005:
                    time.sleep(ahead)
                sent[(kind, i)] = time.monotonic()
                send(row_of[kind][i], 1 if kind == "twin" else 0 if kind == "original" else i % 2)
            prod.flush(60)
            produced_s = time.monotonic() - t0
            wait(lambda: store.record_count() >= len(stream), args.timeout, "every record stored")
            drained_s = time.monotonic() - t0
            time.sleep(3.0)  # the last syncs (late links) settle: idle members sync every loop turn
            after = [late_link_totals(p) for _, p in procs]
            members = [{"port": p, "partitions": partitions_of(p, topic),
                        "decided": metric(p, "dedup_records_total"),
                        "absorbed": metric(p, "dedup_replica_records_total"),
                        "replica_lag": replica_lag(p), "freshness": freshness_waits(p)} for _, p in procs]
            problems = store.verify()
            final = dict(store.export_clusters())
        finally:
            for proc, _port in procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc, _port in procs:
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        evs = [orjson.loads(m.value or b"{}") for m in hk.consume_all(bootstrap, events, timeout=60)]
        redis_server.stop()

    how = classify(evs, ids)
    eligible = [i for i in range(args.pairs) if linked[i]]
    one = [i for i in eligible if final.get(ids[i][0]) is not None and final.get(ids[i][0]) == final.get(ids[i][1])]
    counts = {k: sum(how[i] == k for i in eligible) for k in ("decision", "late", "neither")}
    late_in_one = sum(how[i] == "late" for i in one)
    one_set = set(one)
    gaps = [1000 * (sent[("twin", i)] - sent[("original", i)]) for i in range(args.pairs)]
    by_gap = {f"{lo}-{hi}ms": {"pairs": sum(lo <= gaps[i] < hi for i in eligible),
                               "late": sum(lo <= gaps[i] < hi and how[i] == "late" for i in eligible)}
              for lo, hi in ((0, 10), (10, 25), (25, 10_000))}
    with open(workdir / "pairs.jsonl", "w", encoding="utf-8") as fh:  # ids, timings and outcomes only
        for i, (a, b) in enumerate(ids):
            fh.write(json.dumps({"pair": i, "edit": EDITS[i % len(EDITS)], "gap_ms": round(gaps[i], 2),
                                 "batch_links": linked[i], "one_cluster": i in one_set, "how": how[i],
                                 "ids": [a, b], "events": [e for e in evs if e.get("record_id") in (a, b)]}) + "\n")
    split_ms = [split_for_ms(evs, ids[i]) for i in eligible if how[i] == "late"]
    share_one = len(one) / len(eligible) if eligible else 0.0
    share_decision = counts["decision"] / len(eligible) if eligible else 0.0
    ok = (share_one >= args.min_one_cluster and share_decision >= args.min_at_decision and not problems
          and len(final) == len(stream) and not failed)
    print(json.dumps({
        "pairs": args.pairs, "seed": args.seed, "index_backend": args.index_backend,
        "redis_cluster_masters": args.redis_cluster, "background_records": n_bg, "warmup_records": len(warm),
        "background_rate": args.background_rate, "pair_interval_s": args.pair_interval,
        "pairs_batch_links": len(eligible), "pairs_in_one_cluster": len(one),
        "share_in_one_cluster": round(share_one, 4), "min_one_cluster": args.min_one_cluster,
        "pairs_joined_at_decision": counts["decision"], "pairs_joined_by_late_link": counts["late"],
        "late_links_in_one_cluster": late_in_one, "pairs_neither": counts["neither"],
        "share_joined_at_decision": round(share_decision, 4), "min_at_decision": args.min_at_decision,
        "split_pairs": sorted(set(eligible) - one_set)[:10], "late_links_by_gap": by_gap,
        "gap_ms": {"p50": pct(gaps, 0.5), "p99": pct(gaps, 0.99), "max": round(max(gaps, default=0.0), 2),
                   "over_max_gap": sum(g > args.max_gap_ms for g in gaps)},
        "late_linked_split_ms": {"p50": pct(split_ms, 0.5), "p99": pct(split_ms, 0.99),
                                 "max": round(max(split_ms, default=0.0), 1)},
        "late_link_metric": {r: sum(a[r] - b[r] for a, b in zip(after, before)) for r in ("applied", "already_merged")},
        "records": len(stream), "records_in_clusters": len(final), "produce_failures": len(failed),
        "verify_problems": problems[:5], "seconds_producing": round(produced_s, 1),
        "seconds_until_all_stored": round(drained_s, 1), "seconds_total": round(time.monotonic() - t_start, 1),
        "members_at_end": members, "ok": ok,
    }, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
