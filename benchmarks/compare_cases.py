"""The cases `benchmarks/bench_compare.py` runs on both sides: what each one starts, and which figures it reads.

Every case runs the side's code in a child process (the same interpreter for both sides, `PYTHONPATH` set
to the side's tree, the side's tree as working directory), so the only thing that differs between base and
head is the code. Inputs are made once, by head's generator, and shared: a difference in the file would
otherwise be measured as a difference in the code.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CASE_NAMES", "DEFAULT_CASES", "build_cases", "Case", "Child", "Context", "Metric", "Side", "last_json",
           "run_child"]

#: The peer's one-liner: Splink 5 as `benchmarks/peers.py` configures it, timed as a whole process (as ours is).
SPLINK_SNIPPET = """\
import csv, json, sys
from peers import splink_clusters
with open(sys.argv[1], encoding="utf-8", newline="") as fh:
    rows = list(csv.DictReader(fh))
got = splink_clusters(rows, sys.argv[2], "person")
print(json.dumps({"records": len(got), "clusters": len(set(got.values()))}))
"""

GENERATE_PERSON_SNIPPET = """\
import json, sys
from pathlib import Path
from person_fit_cost import make_file
truth = make_file(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
Path(sys.argv[1]).with_suffix(".truth.json").write_text(json.dumps(truth))
"""


@dataclass(frozen=True)
class Side:
    """One of the two trees compared: its name ("base" / "head"), checkout and commit."""

    name: str
    root: Path
    commit: str

    def env(self) -> dict[str, str]:
        """The child's environment: the side's tree first on the import path, and a fixed hash key (both
        sides alike; the public default's warning is noise, and a key changes no timing)."""
        env = {**os.environ, "PYTHONPATH": str(self.root)}
        env.setdefault("DEDUP_ENCODERS__HASH_KEY", "bench-compare")
        return env


@dataclass
class Context:
    """What every case shares: the interpreter both sides run, the peer interpreter (Splink, the person
    generator), the work folder for shared inputs and outputs, head's tree and the parsed options."""

    python: str
    peer_python: str
    work: Path
    head: Side
    opts: argparse.Namespace


@dataclass(frozen=True)
class Metric:
    """One figure a case reports; `higher_is_better` tells the reader which way a ratio is good."""

    key: str
    unit: str
    higher_is_better: bool


@dataclass
class Child:
    """A finished child process: exit status, wall seconds, peak resident set (KiB) and its output."""

    rc: int
    wall: float
    maxrss_kb: int
    stdout: str
    stderr: str


def run_child(argv: Sequence[str], *, env: dict[str, str], cwd: Path, timeout: float) -> Child:
    """Run `argv` to the end; its own rusage (wait4) gives the peak RSS without /usr/bin/time's parsing.
    Output goes to files, not pipes, so a chatty child cannot block on a full pipe while we wait."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdout=out, stderr=err)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Child(proc.returncode, wall, usage.ru_maxrss, out.read().decode(errors="replace"),
                     err.read().decode(errors="replace"))


def last_json(text: str) -> dict[str, Any]:
    """The last JSON object a child printed: one line (`dedup batch`) or indented (bench_service.py)."""
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("{"):
            try:
                return json.loads("\n".join(lines[i:]))
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON object in the child's output")


def checked(child: Child, what: str) -> Child:
    if child.rc != 0:
        tail = "\n".join(child.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"{what} exited with {child.rc}: {tail}")
    return child


@dataclass
class Case:
    """A named benchmark. `prepare` makes shared inputs once; `run` measures one side once; `peer` runs a
    peer (not part of base or head) once per round and returns its figures, or None."""

    name: str
    metrics: tuple[Metric, ...]
    peer_metrics: tuple[Metric, ...] = field(default=())

    def prepare(self, ctx: Context) -> None:
        """Nothing to prepare by default."""

    def run(self, side: Side, ctx: Context) -> dict[str, float]:
        raise NotImplementedError

    def peer(self, ctx: Context) -> dict[str, float] | None:
        return None


def _dedup(side: Side, ctx: Context, *args: str) -> Child:
    extra = ctx.opts.dedup_arg if args[0] == "batch" else []  # the same flags on both sides
    return run_child([ctx.python, "-m", "consumer.cli", *args, *extra], env=side.env(), cwd=side.root,
                     timeout=ctx.opts.timeout)


def _batch_figures(child: Child, records_hint: int) -> dict[str, float]:
    """Figures of a `dedup batch` child: end to end (process start to exit) and the summary's own."""
    summary = last_json(child.stdout)
    records = int(summary.get("records", records_hint))
    out = {"seconds": round(child.wall, 3), "records_per_second": round(records / child.wall, 1),
           "peak_rss_mb": round(child.maxrss_kb / 1024, 1),
           "rss_bytes_per_record": round(child.maxrss_kb * 1024 / max(records, 1))}
    if "records_per_second" in summary:
        out["run_records_per_second"] = float(summary["records_per_second"])
    return out


BATCH_METRICS = (Metric("records_per_second", "records/s end to end", True),
                 Metric("run_records_per_second", "records/s, the summary's (after start-up)", True),
                 Metric("seconds", "s end to end", False),
                 Metric("peak_rss_mb", "MiB peak RSS", False),
                 Metric("rss_bytes_per_record", "B peak RSS per record", False))


@dataclass
class CrmBatch(Case):
    """`dedup batch` on a generated CRM file of `records` rows (crm-signup profile, learned fusion)."""

    records: int = 100_000

    def path(self, ctx: Context) -> Path:
        return ctx.work / f"crm-{self.records}-{ctx.opts.seed}.csv"

    def prepare(self, ctx: Context) -> None:
        if not self.path(ctx).exists():
            checked(_dedup(ctx.head, ctx, "generate", str(self.path(ctx)), "-n", str(self.records),
                           "--seed", str(ctx.opts.seed)), "dedup generate")

    def run(self, side: Side, ctx: Context) -> dict[str, float]:
        out = ctx.work / f"out-{self.name}-{side.name}.jsonl"
        child = checked(_dedup(side, ctx, "batch", str(self.path(ctx)), "--out", str(out), "-q"), "dedup batch")
        return _batch_figures(child, self.records)


@dataclass
class Listings(Case):
    """`dedup batch --profile listing` on generated listings with photos: decode and image encoder included."""

    records: int = 6000

    def path(self, ctx: Context) -> Path:
        if ctx.opts.listing_file:
            return Path(ctx.opts.listing_file).resolve()
        return ctx.work / f"listings-{self.records}-{ctx.opts.seed}.csv"

    def prepare(self, ctx: Context) -> None:
        if ctx.opts.listing_file:  # someone's own file: its rows, not --listing-records, are the count
            with self.path(ctx).open(encoding="utf-8", newline="") as fh:
                self.records = sum(1 for _ in csv.DictReader(fh))
        elif not self.path(ctx).exists():
            checked(_dedup(ctx.head, ctx, "generate", str(self.path(ctx)), "--profile", "listing", "-n",
                           str(self.records), "--seed", str(ctx.opts.seed)), "dedup generate --profile listing")

    def run(self, side: Side, ctx: Context) -> dict[str, float]:
        out = ctx.work / f"out-{self.name}-{side.name}.jsonl"
        child = checked(_dedup(side, ctx, "batch", str(self.path(ctx)), "--profile", "listing", "--out", str(out),
                               "-q"), "dedup batch --profile listing")
        figures = _batch_figures(child, self.records)
        summary = last_json(child.stdout)
        # The image encoder on its own: the pass that encoded every photo. Since the run replays a whole-file
        # fit's columns (consumer.engine.replay) that is the fit's pass; before, the run's own.
        fitted = (summary.get("model") or {}).get("fit_stage_seconds") or {}
        image = fitted.get("encode_image") or summary.get("stage_seconds", {}).get("encode_image")
        if image:
            figures["image_encode_records_per_second"] = round(self.records / float(image), 1)
        return figures


@dataclass
class Person(Case):
    """`dedup batch` with the person profile end to end (its fit to the file included, as a user runs it),
    and Splink 5 on the same file once per round; `ratio_to_splink` is each run over that round's Splink."""

    def path(self, ctx: Context) -> Path:
        o = ctx.opts
        if o.person_generate:
            return ctx.work / f"people-gen-{o.person_generate}-{o.seed}.csv"
        src = Path(o.person_file)
        return ctx.work / f"{src.stem}-first-{o.person_rows}.csv" if o.person_rows else src

    def prepare(self, ctx: Context) -> None:
        o, path = ctx.opts, self.path(ctx)
        (ctx.work / "person.toml").write_text(f'[profile]\nname = "person"\nid_field = "{o.person_id_field}"\n')
        if path.exists():
            return
        if o.person_generate:  # FEBRL's name lists: needs recordlinkage in the peer interpreter
            env = {**os.environ, "PYTHONPATH": str(ctx.head.root / "benchmarks")}
            checked(run_child([ctx.peer_python, "-c", GENERATE_PERSON_SNIPPET, str(path), str(o.person_generate),
                               str(o.seed)], env=env, cwd=ctx.head.root, timeout=o.timeout),
                    "person generator (benchmarks/person_fit_cost.py; pip install recordlinkage)")
        else:
            with open(o.person_file, encoding="utf-8", newline="") as src, \
                    path.open("w", encoding="utf-8", newline="") as dst:
                for i, line in enumerate(src):
                    if i > o.person_rows:
                        break
                    dst.write(line)

    def run(self, side: Side, ctx: Context) -> dict[str, float]:
        out = ctx.work / f"out-{self.name}-{side.name}.jsonl"
        child = checked(_dedup(side, ctx, "batch", str(self.path(ctx)), "--config", str(ctx.work / "person.toml"),
                               "--out", str(out), "-q"), "dedup batch (person profile)")
        return _batch_figures(child, 0)

    def peer(self, ctx: Context) -> dict[str, float] | None:
        if ctx.opts.no_splink:
            return None
        env = {**os.environ, "PYTHONPATH": str(ctx.head.root / "benchmarks")}
        child = checked(run_child([ctx.peer_python, "-c", SPLINK_SNIPPET, str(self.path(ctx)),
                                   ctx.opts.person_id_field], env=env, cwd=ctx.work, timeout=ctx.opts.timeout),
                        "Splink (benchmarks/peers.py; pip install 'splink>=5' or --peer-python)")
        got = last_json(child.stdout)
        return {"splink_seconds": round(child.wall, 3), "splink_clusters": float(got["clusters"])}


@dataclass
class Service(Case):
    """`loadtest/bench_service.py` in the side's tree (head's copy unless `--service-driver own`; it starts a broker,
    Redis and `dedup run` of that tree): the
    max rate over a pre-filled topic, then end-to-end latency at a paced rate (steady state: its first
    2 s dropped, the figure it reports for that)."""

    def run(self, side: Side, ctx: Context) -> dict[str, float]:
        o = ctx.opts
        script = side.root / "loadtest" / "bench_service.py"
        if not script.exists():
            raise RuntimeError(f"{side.name} has no loadtest/bench_service.py")
        argv = [ctx.python, str(script), "--records", str(o.service_records), "--rate", str(o.service_rate),
                "--seconds", str(o.service_seconds), *(f"--service-arg={a}" for a in o.service_arg),
                *([] if o.service_linger_ms is None else ["--linger-ms", str(o.service_linger_ms)])]
        child = run_child(argv, env=side.env(), cwd=side.root, timeout=o.timeout)
        got = last_json(child.stdout) if "{" in child.stdout else {}
        if not got:
            checked(child, "loadtest/bench_service.py")
        paced = got["paced"]
        steady = paced.get("end_to_end_ms_at_consumer_after_first_2s") or paced["end_to_end_ms_at_consumer"]
        figures = {"max_rate": float(got["max_rate"]["records_per_second"]),
                   **{k: float(v) for k, v in steady.items()},
                   "achieved_input_rate": float(paced["achieved_input_rate"]),
                   "events_missing": float(paced["records"] - paced["events_seen"])}
        hist = paced.get("end_to_end_ms_service_histogram", {})
        if "p99" in hist:
            figures["service_histogram_p99"] = float(hist["p99"])
        # The cores each process kept busy at the paced rate (a driver that reports them): a latency ratio is
        # read with the test broker's share beside it, which grows with its log (docs/benchmarks.md).
        cores = paced.get("cores_used_while_producing") or {}
        figures.update({f"{k}_cores": float(cores[k]) for k in ("service", "broker") if cores.get(k) is not None})
        return figures


PERSON_METRICS = (Metric("seconds", "s end to end (fit + run)", False),
                  Metric("ratio_to_splink", "ours / Splink, same round", False),
                  Metric("records_per_second", "records/s end to end", True),
                  Metric("peak_rss_mb", "MiB peak RSS", False))
SERVICE_METRICS = (Metric("max_rate", "records/s drained", True),
                   Metric("p50", "ms at the paced rate", False), Metric("p95", "ms at the paced rate", False),
                   Metric("p99", "ms at the paced rate", False),
                   Metric("service_histogram_p99", "ms, the service's own histogram", False),
                   Metric("achieved_input_rate", "records/s offered", True),
                   Metric("events_missing", "events never seen", False),
                   Metric("service_cores", "cores the service kept busy, paced", False),
                   Metric("broker_cores", "cores the test broker kept busy, paced", False))

#: What runs without --cases: the cases that take a minute or two a run, not the long ones.
DEFAULT_CASES = ["service", "batch-crm", "person"]
CASE_NAMES = [*DEFAULT_CASES, "listings-photos", "batch-1m"]


def build_cases(opts: argparse.Namespace) -> dict[str, Case]:
    """Every case by name, sized by the options (`--crm-records`, `--listing-records`)."""
    listing = (*BATCH_METRICS[:3], Metric("image_encode_records_per_second", "images/s, encoder stage", True))
    cases: list[Case] = [
        Service("service", SERVICE_METRICS),
        CrmBatch("batch-crm", BATCH_METRICS, records=opts.crm_records),
        Person("person", PERSON_METRICS, (Metric("splink_seconds", "s end to end", False),)),
        Listings("listings-photos", listing, records=opts.listing_records),
        CrmBatch("batch-1m", BATCH_METRICS, records=1_000_000),
    ]
    return {c.name: c for c in cases}


if __name__ == "__main__":  # pragma: no cover - a library of bench_compare.py
    sys.exit("run benchmarks/bench_compare.py")
