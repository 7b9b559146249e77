"""The load test's figures: load profiles, per-window statistics, the highest rate that kept p99 under a
bound, and the plot. Pure functions over what `loadtest.py` recorded, so they are easy to check by hand.

Windows are fixed slices of `width` seconds from the moment the first measured record was produced. A
record's latency (Kafka timestamp -> its `record.clustered` event seen by the load test) counts in the
window it was *produced* in, so a window's p99 says how the service answered the load offered then;
throughput counts events in the window they were *seen* in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Segment", "parse_profile", "send_offsets", "Scrape", "window_stats", "max_rate_under", "summary",
           "plot"]


@dataclass(frozen=True)
class Segment:
    """Rate going linearly from `start` to `end` records/s over `seconds` (start == end: a constant step)."""

    start: float
    end: float
    seconds: float


def parse_profile(rate: float | None, ramp: str | None, steps: str | None, seconds: float | None) -> list[Segment]:
    """--rate R --seconds S | --ramp A:B --seconds S | --steps R1:S1,R2:S2,... -> segments (ValueError if bad)."""
    if steps:
        out = []
        for part in steps.split(","):
            r, _, s = part.partition(":")
            out.append(Segment(float(r), float(r), float(s)))
    elif ramp:
        a, _, b = ramp.partition(":")
        out = [Segment(float(a), float(b), float(seconds or 0))]
    else:
        out = [Segment(float(rate or 0), float(rate or 0), float(seconds or 0))]
    if not out or any(s.seconds <= 0 or min(s.start, s.end) < 0 or max(s.start, s.end) <= 0 for s in out):
        raise ValueError("every profile part needs a positive duration and a positive rate")
    return out


def send_offsets(profile: Sequence[Segment], limit: int) -> list[float]:
    """When (s from the start) each record is due: record k goes out when the profile's cumulative count
    reaches k, solving a*t + (b-a)/(2T)*t^2 = k within a segment. At most `limit` records."""
    out: list[float] = []
    t0, done, k = 0.0, 0.0, 0  # segment start time, records due before it, next record
    for seg in profile:
        a, slope = seg.start, (seg.end - seg.start) / seg.seconds
        total = (seg.start + seg.end) / 2 * seg.seconds
        while len(out) < limit and k - done < total:
            need = k - done
            t = need / a if slope == 0 else (-a + math.sqrt(max(a * a + 2 * slope * need, 0.0))) / slope
            out.append(t0 + min(t, seg.seconds))
            k += 1
        t0, done = t0 + seg.seconds, done + total
    return out


@dataclass(frozen=True)
class Scrape:
    """One /metrics reading: wall-clock time and the figures the report uses (counters are running totals)."""

    at: float
    lag: float
    records: float
    dead_letters: float
    stages: dict[str, float]


def _quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile in ms, rounded (None for no values)."""
    if not values:
        return None
    v = sorted(values)
    return round(v[min(int(q * len(v)), len(v) - 1)] * 1000, 1)


def _delta(scrapes: Sequence[Scrape], lo: float, hi: float) -> tuple[Scrape, Scrape] | None:
    """(reading at or before `lo`, last reading before `hi`) for counter deltas over [lo, hi)."""
    before = [s for s in scrapes if s.at <= lo] or scrapes[:1]
    inside = [s for s in scrapes if s.at < hi]
    if not before or not inside or inside[-1].at <= before[-1].at:
        return None
    return before[-1], inside[-1]


def window_stats(start: float, width: float, sent_at: Sequence[float], failed: Sequence[int],
                 latency: Sequence[float | None], seen_at: Sequence[float], scrapes: Sequence[Scrape],
                 end: float) -> list[dict[str, Any]]:
    """Per-window figures. `latency[i]` is record i's latency in seconds (None: never seen); `seen_at` are
    the wall-clock times its events arrived; `end` is when the run stopped measuring."""
    n = max(1, math.ceil((end - start) / width))
    produce_end = sent_at[-1] if sent_at else start
    failed_set = set(failed)
    out = []
    for k in range(n):
        lo, hi = start + k * width, start + (k + 1) * width
        idx = [i for i, t in enumerate(sent_at) if lo <= t < hi or (k == n - 1 and t >= hi)]
        lats = [latency[i] for i in idx if latency[i] is not None]
        span = max(min(hi, produce_end) - lo, 1e-3) if idx else width
        w: dict[str, Any] = {
            "t": round(k * width, 3), "produced": len(idx), "offered_per_s": round(len(idx) / span, 1),
            "events": sum(lo <= t < hi for t in seen_at),
            "p50_ms": _quantile(lats, 0.5), "p95_ms": _quantile(lats, 0.95), "p99_ms": _quantile(lats, 0.99),
            "unseen": sum(latency[i] is None for i in idx), "produce_errors": sum(i in failed_set for i in idx),
            "lag": None, "service_records_per_s": None, "dead_letters": 0, "stage_seconds": {},
        }
        w["throughput_per_s"] = round(w["events"] / width, 1)
        lag = [s.lag for s in scrapes if lo <= s.at < hi]
        w["lag"] = max(lag) if lag else None
        pair = _delta(scrapes, lo, hi)
        if pair is not None:
            a, b = pair
            w["service_records_per_s"] = round((b.records - a.records) / (b.at - a.at), 1)
            w["dead_letters"] = int(b.dead_letters - a.dead_letters)
            w["stage_seconds"] = {st: round(v - a.stages.get(st, 0.0), 3) for st, v in b.stages.items()
                                  if v - a.stages.get(st, 0.0) > 0}
        w["errors"] = w["produce_errors"] + w["dead_letters"]
        out.append(w)
    return out


def max_rate_under(windows: Sequence[dict[str, Any]], bound_ms: float) -> float | None:
    """The highest offered rate R such that every window offered at most R kept p99 <= bound_ms with no
    record lost or failed (None when even the lowest-rate window missed). Windows without load are skipped."""
    best = None
    for w in sorted((w for w in windows if w["produced"]), key=lambda w: w["offered_per_s"]):
        if w["p99_ms"] is None or w["p99_ms"] > bound_ms or w["unseen"] or w["errors"]:
            break
        best = w["offered_per_s"]
    return best


def summary(latency: Sequence[float | None], seconds: float, windows: Sequence[dict[str, Any]],
            failed: int, dead_letters: int, bound_ms: float) -> dict[str, Any]:
    """Whole-run figures for the report and the printed line."""
    lats = [x for x in latency if x is not None]
    lags = [w["lag"] for w in windows if w["lag"] is not None]
    return {
        "produced": len(latency), "seen": len(lats), "unseen": len(latency) - len(lats),
        "produce_errors": failed, "dead_letters": dead_letters, "seconds": round(seconds, 2),
        "throughput_per_s": round(len(lats) / seconds, 1) if seconds > 0 else None,
        "p50_ms": _quantile(lats, 0.5), "p95_ms": _quantile(lats, 0.95), "p99_ms": _quantile(lats, 0.99),
        "max_lag": max(lags) if lags else None, "p99_bound_ms": bound_ms,
        "max_rate_under_bound": max_rate_under(windows, bound_ms),
    }


def plot(report: dict[str, Any], path: Path) -> None:
    """Offered rate, throughput and consumer lag (top), end-to-end p50/p95/p99 and the bound (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ws, width = report["windows"], report["config"]["window_seconds"]
    x = [w["t"] + width / 2 for w in ws]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    top.plot(x, [w["offered_per_s"] if w["produced"] else 0 for w in ws], label="offered", color="tab:gray")
    top.plot(x, [w["throughput_per_s"] for w in ws], label="throughput (events seen)", color="tab:blue")
    done = [(xi, w["service_records_per_s"]) for xi, w in zip(x, ws) if w["service_records_per_s"] is not None]
    if done:
        top.plot(*zip(*done), label="service records/s (/metrics)", color="tab:cyan", linewidth=0.8)
    top.set_ylabel("records/s")
    lag = [(xi, w["lag"]) for xi, w in zip(x, ws) if w["lag"] is not None]
    if lag:
        twin = top.twinx()
        twin.plot(*zip(*lag), color="tab:orange", linestyle="--", label="consumer lag")
        twin.set_ylabel("consumer lag (records)")
        twin.legend(loc="upper right")
    top.legend(loc="upper left")
    for q, color in (("p50", "tab:green"), ("p95", "tab:purple"), ("p99", "tab:red")):
        pts = [(xi, w[f"{q}_ms"]) for xi, w in zip(x, ws) if w[f"{q}_ms"] is not None]
        if pts:
            bottom.plot(*zip(*pts), marker=".", color=color, label=q)
    s = report["summary"]
    if (s["p99_ms"] or 0) > 20 * s["p99_bound_ms"]:
        bottom.set_yscale("log")  # a backlog's seconds would flatten everything under the bound
    bottom.axhline(s["p99_bound_ms"], color="black", linestyle=":", label=f"bound {s['p99_bound_ms']:g} ms")
    bottom.set_ylabel("end-to-end latency (ms)")
    bottom.set_xlabel(f"seconds since the first measured record ({width:g} s windows, by produce time)")
    bottom.legend(loc="best")
    best = s["max_rate_under_bound"]
    fig.suptitle(f"dedup load test: {s['produced']} records, max rate with p99 <= {s['p99_bound_ms']:g} ms: "
                 + (f"{best:g} records/s" if best is not None else "none"))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
