"""Side-by-side speed of two commits: the harness every speed claim comes from (issue 38).

    python benchmarks/bench_compare.py --base 28fb1c0                      # default cases, 3 rounds
    python benchmarks/bench_compare.py --base main --cases person,listings-photos --rounds 5 --json cmp.json
    make bench-compare BASE=28fb1c0 [ROUNDS=3] [CASES=service,batch-crm]

On these shared 2-core machines an absolute figure moves by tens of percent with what else runs, so a
figure alone is no evidence of a change: both commits have to be measured in the same session, in turns.
The base ref is checked out in a temporary detached `git worktree` (under `.bench/`); head is the working
tree as it is (uncommitted changes included, and said so). Each case then runs base, head, base, head, ...
for `--rounds` rounds (at least 3; fewer only with `--smoke`, whose output says it is not evidence), with
the same interpreter and `PYTHONPATH` set to the side's tree: only the code differs, and the harness prints
which `consumer` package each side imported to show it. Per case and metric it prints the medians, their
head/base ratio and each side's spread (min-max), with `lscpu`'s model, the core count and the 1-minute load
average before every run (a warning when it exceeds the cores). `--json FILE` keeps every run and the summary.
Cases and what they measure: benchmarks/compare_cases.py; docs/benchmarks.md, "Comparing two commits".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_cases import CASE_NAMES, DEFAULT_CASES, Case, Context, Side, build_cases, run_child  # noqa: E402

__all__ = ["main", "summarise", "quote_lines"]

MIN_ROUNDS = 3
SMOKE_MARK = "smoke: not evidence"


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout.strip()


def machine() -> dict[str, Any]:
    """The CPU as `lscpu` names it and the core count: a closing note quotes them beside the ratios."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        out = ""
    fields = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in out.splitlines())}
    return {"cpu_model": fields.get("Model name", "unknown"), "cpus": os.cpu_count() or 1,
            "lscpu_cpus": fields.get("CPU(s)", "")}


def load_1m() -> float:
    return round(os.getloadavg()[0], 2)


def imported_from(side: Side, python: str) -> str:
    """The `consumer/__init__.py` the side's children import; refuse to compare when it is not the side's own
    (an editable install or a stray path would otherwise measure one tree twice and report a ratio of 1)."""
    child = run_child([python, "-c", "import consumer; print(consumer.__file__)"], env=side.env(), cwd=side.root,
                      timeout=60)
    got = child.stdout.strip()
    if child.rc != 0 or not Path(got).resolve().is_relative_to(side.root.resolve()):
        raise SystemExit(f"{side.name}: `import consumer` gives {got or child.stderr.strip()!r}, not {side.root}")
    return got


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values), "n": len(values)}


def summarise(runs: list[dict[str, Any]], cases: dict[str, Case]) -> dict[str, Any]:
    """Per case and metric: each side's median, spread (min-max) and run count, and head/base of the medians.
    A failed run counts in no median (its error stays in the raw runs)."""
    out: dict[str, Any] = {}
    for name, case in cases.items():
        mine = [r for r in runs if r["case"] == name and r.get("metrics")]
        if not mine:
            continue
        rows: dict[str, Any] = {}
        for metric in (*case.metrics, *case.peer_metrics):
            row: dict[str, Any] = {"unit": metric.unit, "higher_is_better": metric.higher_is_better}
            for side in ("base", "head", "peer"):
                values = [float(r["metrics"][metric.key]) for r in mine
                          if r["side"] == side and metric.key in r["metrics"]]
                if values:
                    row[side] = _stats(values)
            if "base" in row and "head" in row:
                b, h = row["base"]["median"], row["head"]["median"]
                row["ratio"] = round(h / b, 3) if b else None
            if len(row) > 2:
                rows[metric.key] = row
        out[name] = rows
    return out


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}" if abs(x) < 10 else f"{x:,.1f}"


def quote_lines(summary: dict[str, Any], rounds: int, smoke: bool) -> list[str]:
    """One sentence per compared metric, in the words a closing note quotes."""
    lines = []
    for case, rows in summary.items():
        for key, row in rows.items():
            if "peer" in row:
                p = row["peer"]
                lines.append(f"{'[' + SMOKE_MARK + '] ' if smoke else ''}{case} {key} (peer, {row['unit']}, once a "
                             f"round beside base and head): median {_fmt(p['median'])}, spread "
                             f"{_fmt(p['min'])}-{_fmt(p['max'])} ({p['n']} rounds)")
            if "ratio" not in row:
                continue
            b, h = row["base"], row["head"]
            lines.append(f"{'[' + SMOKE_MARK + '] ' if smoke else ''}{case} {key} ({row['unit']}): base median "
                         f"{_fmt(b['median'])}, head median {_fmt(h['median'])}, ratio head/base "
                         f"{row['ratio'] if row['ratio'] is not None else 'n/a (base median 0)'} "
                         f"({min(b['n'], h['n'])} rounds each, alternating"
                         f"{'' if min(b['n'], h['n']) == rounds else f'; of {rounds} asked, the others failed'})")
    return lines


def table(summary: dict[str, Any]) -> list[str]:
    """A plain-text table: medians, ratio and each side's min-max spread (the peer in the base columns)."""
    head = f"{'case':<16} {'metric':<32} {'base median':>12} {'head median':>12} {'head/base':>9}  " \
           f"{'base min-max':<22} {'head min-max':<22} better"
    lines = [head, "-" * len(head)]
    for case, rows in summary.items():
        for key, row in rows.items():
            b, h = row.get("base") or row.get("peer"), row.get("head")
            label = key if "peer" not in row else f"{key} (peer)"
            spread = [f"{_fmt(s['min'])}-{_fmt(s['max'])}" if s else "-" for s in (b, h)]
            lines.append(f"{case:<16} {label:<32} {_fmt(b['median'] if b else None):>12} "
                         f"{_fmt(h['median'] if h else None):>12} {_fmt(row.get('ratio')):>9}  "
                         f"{spread[0]:<22} {spread[1]:<22} {'higher' if row['higher_is_better'] else 'lower'}")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="git ref to compare against (head: this working tree)")
    ap.add_argument("--cases", default=",".join(DEFAULT_CASES),
                    help=f"comma-separated, of {', '.join(CASE_NAMES)} (default: {','.join(DEFAULT_CASES)})")
    ap.add_argument("--rounds", type=int, default=MIN_ROUNDS, help=f"runs per side per case (>= {MIN_ROUNDS})")
    ap.add_argument("--smoke", action="store_true", help="allow fewer rounds; the output says it is not evidence")
    ap.add_argument("--json", help="write every raw run and the summary here")
    ap.add_argument("--work-dir", help="shared inputs and outputs (default: .bench/compare)")
    ap.add_argument("--keep-worktree", action="store_true", help="leave the base worktree in place")
    ap.add_argument("--python", default=sys.executable, help="the interpreter both sides run (default: this one)")
    ap.add_argument("--peer-python", default=os.environ.get("DEDUP_BENCH_PEER_PYTHON", sys.executable),
                    help="interpreter with the bench extra (Splink, recordlinkage) for the peer and the person "
                         "generator (default: $DEDUP_BENCH_PEER_PYTHON or this one)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds one run may take")
    ap.add_argument("--seed", type=int, default=11, help="seed of every generated file")
    ap.add_argument("--crm-records", type=int, default=100_000, help="batch-crm file size")
    ap.add_argument("--listing-records", type=int, default=6000, help="listings-photos generated file size")
    ap.add_argument("--listing-file", help="listings-photos: this listing CSV (photos relative to it) instead")
    ap.add_argument("--dedup-arg", action="append", default=[],
                    help="extra `dedup batch` flag for both sides, repeatable (e.g. --dedup-arg=--text-backend=static)")
    ap.add_argument("--person-file", default=str(ROOT.parent / "shared" / "data" / "real" / "rldata10000" /
                                                 "people.csv"))
    ap.add_argument("--person-id-field", default="id")
    ap.add_argument("--person-rows", type=int, default=0, help="only the first N rows of --person-file")
    ap.add_argument("--person-generate", type=int, default=0, metavar="N",
                    help="a generated person file of N records instead (benchmarks/person_fit_cost.py; "
                         "needs recordlinkage in --peer-python)")
    ap.add_argument("--no-splink", action="store_true", help="person: skip the Splink peer")
    ap.add_argument("--service-records", type=int, default=20_000, help="service: records of the max-rate phase")
    ap.add_argument("--service-rate", type=float, default=500.0, help="service: paced records/s")
    ap.add_argument("--service-seconds", type=float, default=30.0, help="service: paced phase seconds")
    ap.add_argument("--service-arg", action="append", default=[], help="service: extra `dedup run` flag")
    ap.add_argument("--service-linger-ms", type=int, default=None,
                    help="service: the paced producer's linger (bench_service.py --linger-ms; default: that script's). "
                         "25 keeps the test broker's log from growing at 1,000 records/s (docs/benchmarks.md)")
    ap.add_argument("--service-driver", choices=("head", "own"), default="head",
                    help="service: measure both sides with head's driver (loadtest/bench_service.py, "
                         "loadtest/common.py, tests/harness copied into the base worktree: one instrument, only "
                         "the service differs; default), or each side with its own")
    args = ap.parse_args(argv)
    # Absolute, not resolved: a venv's python is a symlink whose target would lose the venv.
    args.python, args.peer_python = (os.path.abspath(p) if os.sep in p else p for p in (args.python, args.peer_python))
    args.case_list = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(args.case_list) - set(CASE_NAMES))
    if unknown or not args.case_list:
        ap.error(f"unknown case(s) {unknown}; choose from {', '.join(CASE_NAMES)}")
    if args.rounds < 1 or (args.rounds < MIN_ROUNDS and not args.smoke):
        ap.error(f"--rounds {args.rounds}: a claim needs >= {MIN_ROUNDS} rounds per side; fewer only with --smoke")
    return args


def _copy_drivers(src: Path, dst: Path, paths: list[str]) -> None:
    """Head's service driver files over the base worktree's (a throwaway checkout)."""
    for rel in paths:
        source, target = src / rel, dst / rel
        if source.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _side_label(side: Side, dirty: bool = False) -> str:
    return f"{side.name} {side.commit[:12]}{' + uncommitted changes' if dirty else ''} ({side.root})"


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    cases = build_cases(opts)
    wanted = {name: cases[name] for name in opts.case_list}
    work = Path(opts.work_dir or ROOT / ".bench" / "compare").resolve()
    work.mkdir(parents=True, exist_ok=True)
    base_commit = _git(ROOT, "rev-parse", "--verify", f"{opts.base}^{{commit}}")
    head = Side("head", ROOT, _git(ROOT, "rev-parse", "HEAD"))
    dirty = bool(_git(ROOT, "status", "--porcelain", "--untracked-files=no"))
    tree = Path(tempfile.mkdtemp(prefix=f"base-{base_commit[:12]}-", dir=work))
    tree.rmdir()  # git worktree add wants to create it
    _git(ROOT, "worktree", "add", "--detach", "--quiet", str(tree), base_commit)
    base = Side("base", tree, base_commit)
    ctx = Context(opts.python, opts.peer_python, work, head, opts)
    info = {"machine": machine(), "python": opts.python, "rounds": opts.rounds, "smoke": opts.smoke,
            "cases": list(wanted), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "base": {"ref": opts.base, "commit": base.commit, "tree": str(base.root)},
            "head": {"commit": head.commit, "uncommitted_changes": dirty, "tree": str(head.root)}}
    runs: list[dict[str, Any]] = []
    try:
        m = info["machine"]
        if opts.smoke:
            print(f"*** {SMOKE_MARK}: {opts.rounds} round(s); no figure below supports a claim ***")
        print(f"# bench-compare, CPU: {m['cpu_model']}, {m['cpus']} cores; python {opts.python}")
        print(f"# {_side_label(base)} (ref {opts.base})\n# {_side_label(head, dirty)}")
        if "service" in wanted:  # the driver puts its own tree first on sys.path: it runs that tree's service
            drivers = ["loadtest/bench_service.py", "loadtest/common.py", "tests/harness"]
            same = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", base_commit, "--", *drivers]).returncode
            info["service_driver_differs"] = same != 0
            info["service_driver"] = opts.service_driver
            if same != 0 and opts.service_driver == "head":
                _copy_drivers(ROOT, tree, drivers)
                print(f"# service: both sides measured by head's {', '.join(drivers)} (copied into the base tree)")
            elif same != 0:
                print(f"# NOTE: {', '.join(drivers)} differ between base and head: each side's service figures come "
                      "from its own driver, so part of a service ratio may be the driver's")
        for side in (base, head):
            info[side.name]["consumer_file"] = imported_from(side, opts.python)
            print(f"# {side.name} imports {info[side.name]['consumer_file']}")
        _run_all(wanted, ctx, (base, head), runs)
    finally:
        if not opts.keep_worktree:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
            shutil.rmtree(tree, ignore_errors=True)
    summary = summarise(runs, wanted)
    print()
    print("\n".join(table(summary)))
    print()
    print("\n".join(quote_lines(summary, opts.rounds, opts.smoke)))
    failed = [r for r in runs if r.get("error")]
    for r in failed:
        print(f"FAILED {r['case']} round {r['round']} {r['side']}: {r['error']}")
    if opts.json:
        Path(opts.json).write_text(json.dumps({**info, "runs": runs, "summary": summary}, indent=2))
        print(f"# raw runs and summary: {opts.json}")
    return 1 if failed else 0


def _run_all(cases: dict[str, Case], ctx: Context, sides: tuple[Side, Side], runs: list[dict[str, Any]]) -> None:
    """Each case in turn: its inputs once, then base, head, base, head, ... and the peer once a round."""
    cores = os.cpu_count() or 1
    for name, case in cases.items():
        print(f"\n## {name}: preparing inputs", flush=True)
        try:
            case.prepare(ctx)
        except Exception as exc:  # noqa: BLE001 - a missing file or peer skips its case, not the others
            runs.append({"case": name, "round": 0, "side": "prepare", "error": f"{type(exc).__name__}: {exc}"})
            print(f"{name}: skipped, {runs[-1]['error']}", flush=True)
            continue
        for rnd in range(1, ctx.opts.rounds + 1):
            this_round: list[dict[str, Any]] = []
            for side in sides:
                load = load_1m()
                warn = f"  WARNING: load {load} > {cores} cores: figures are noisy" if load > cores else ""
                print(f"{name} round {rnd} {side.name}: load 1m {load}{warn}", flush=True)
                run: dict[str, Any] = {"case": name, "round": rnd, "side": side.name, "commit": side.commit,
                                       "load_1m": load, "cores": cores}
                try:
                    run["metrics"] = case.run(side, ctx)
                except Exception as exc:  # noqa: BLE001 - one failed run is reported, the rest still run
                    run["error"] = f"{type(exc).__name__}: {exc}"
                print(f"  -> {json.dumps(run.get('metrics') or run.get('error'))}", flush=True)
                runs.append(run)
                this_round.append(run)
            load = load_1m()
            try:
                peer = case.peer(ctx)
            except Exception as exc:  # noqa: BLE001
                runs.append({"case": name, "round": rnd, "side": "peer", "load_1m": load,
                             "error": f"{type(exc).__name__}: {exc}"})
                print(f"{name} round {rnd} peer: {runs[-1]['error']}", flush=True)
                continue
            if peer is None:
                continue
            print(f"{name} round {rnd} peer: load 1m {load} -> {json.dumps(peer)}", flush=True)
            runs.append({"case": name, "round": rnd, "side": "peer", "load_1m": load, "metrics": peer})
            splink = peer.get("splink_seconds")
            for run in this_round:
                if splink and run.get("metrics") and "seconds" in run["metrics"]:
                    run["metrics"]["ratio_to_splink"] = round(run["metrics"]["seconds"] / splink, 3)


if __name__ == "__main__":
    sys.exit(main())
