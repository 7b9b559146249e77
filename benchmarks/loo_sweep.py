"""Choose a setting by leaving one file out: the rule every threshold of a quality change is chosen by.

    python benchmarks/loo_sweep.py --setting clustering.join_support=0.8,0.5,0.3 --files fake-1000,rldata10000,...

Runs the suite's files (`benchmarks/real_data.py`, dedup-stream only) once per value of one setting
(`DEDUP_<SECTION>__<KEY>`, as a user sets it), then for each file picks the value that is best on the
*other* files (mean F1) and reports the file's F1 at that value: an estimate of how the setting does on a
file it was not chosen on. Why: a threshold read off the file it is reported on says nothing about the
next file (issue 37: the last round's settings raised every file in view and lowered files out of sight).
The last line says which value the whole suite prefers and whether every leave-one-out choice agrees.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from suite_verdict import ours  # noqa: E402


def env_name(setting: str) -> str:
    section, _, key = setting.partition(".")
    if not key:
        raise SystemExit(f"--setting wants SECTION.KEY=v1,v2 (got {setting!r})")
    return f"DEDUP_{section.upper()}__{key.upper()}"


def run(files: str, env: dict[str, str], out: Path, extra: list[str]) -> dict[str, float]:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "real_data.py"), "--no-splink", "--no-tfidf",
           "--json", str(out), *extra, *(["--files", files] if files else [])]
    subprocess.run(cmd, env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL)
    return ours(json.loads(out.read_text()))


def loo(table: dict[str, dict[str, float]]) -> tuple[dict[str, tuple[str, float]], str]:
    """{file: (value chosen without it, its F1 there)}, and the value best on all files together."""
    values = list(table)
    files = sorted(set.intersection(*(set(t) for t in table.values())))

    def mean(v: str, leave: str | None) -> float:
        kept = [f for f in files if f != leave]
        return sum(table[v][f] for f in kept) / max(len(kept), 1)

    chosen = {}
    for f in files:
        v = max(values, key=lambda v: (mean(v, f), -values.index(v)))
        chosen[f] = (v, table[v][f])
    return chosen, max(values, key=lambda v: (mean(v, None), -values.index(v)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", required=True, help="SECTION.KEY=v1,v2,... (the first value is the default)")
    ap.add_argument("--files", default="", help="comma-separated suite files (default: all)")
    ap.add_argument("--dedup-arg", action="append", default=[])
    ap.add_argument("--json", help="write the table and the choices")
    args = ap.parse_args(argv)
    name, _, raw = args.setting.partition("=")
    values = raw.split(",")
    extra = [a for x in args.dedup_arg for a in ("--dedup-arg", x)]
    table: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for v in values:
            table[v] = run(args.files, {env_name(name): v}, Path(tmp) / f"{v}.json", extra)
            print(f"{name}={v}: " + ", ".join(f"{f} {x:.4f}" for f, x in table[v].items()), flush=True)
    chosen, overall = loo(table)
    print(f"{'file':24s} " + " ".join(f"{v:>8s}" for v in values) + "   chosen without it -> F1")
    for f, (v, x) in chosen.items():
        print(f"{f:24s} " + " ".join(f"{table[w][f]:8.4f}" for w in values) + f"   {v:>8s} -> {x:.4f}")
    agree = len({v for v, _ in chosen.values()}) == 1
    base = values[0]
    loo_mean = sum(x for _, x in chosen.values()) / len(chosen)
    base_mean = sum(table[base][f] for f in chosen) / len(chosen)
    print(f"best over all files: {name}={overall}; leave-one-out choices {'agree' if agree else 'differ'}; "
          f"mean F1 at the leave-one-out choices {loo_mean:.4f} against {base_mean:.4f} at {base}")
    if args.json:
        Path(args.json).write_text(json.dumps({"setting": name, "table": table, "chosen": chosen}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
