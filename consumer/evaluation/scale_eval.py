"""`dedup eval --sizes 10k,100k,1M`: match quality as the file grows, on final clusters.

Generated files of each size (the `default` generator or the held-out `heldout` variant, which must only
ever be measured, never tuned on) go through the engine in arrival order; the *final* clusters (every
merge applied, `Pipeline.assignments`) are scored against the truth: pairwise and B-cubed precision /
recall / F1, the largest predicted and the largest true cluster (the chaining symptom), candidate recall
(true pairs that reached scoring) and records per second (the threaded path of `dedup batch`). Rows go to
a CSV, and optionally to a plot of the curves for the README.
"""

from __future__ import annotations

import csv
import re
import resource
from collections import Counter
from pathlib import Path
from typing import Any

from consumer.config import Settings

__all__ = ["parse_sizes", "evaluate_sizes", "plot_sizes"]

_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000}


def parse_sizes(text: str) -> list[int]:
    """'10k,100k,1M' -> [10000, 100000, 1000000]; a bad item is a ValueError (the CLI prints it)."""
    out = []
    for item in text.split(","):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", item)
        if not m:
            raise ValueError(f"--sizes: {item!r} is not a size like 10k, 250000 or 1M")
        n = int(float(m.group(1)) * _SUFFIX[m.group(2).lower()])
        if n < 2:
            raise ValueError(f"--sizes: {item!r} is too small")
        out.append(n)
    return out


def evaluate_sizes(sizes: list[int], settings: Settings, *, seed: int = 1, variant: str = "default",
                   workdir: str | Path = ".", candidate_recall: bool = True) -> list[dict[str, Any]]:
    """One row of figures per size; generated files are kept in `workdir` and reused when present."""
    from consumer.engine.records import Record
    from consumer.evaluation.evaluate import cluster_scores, load_truth
    from consumer.evaluation.report import run_engine
    from consumer.generate import write_crm
    from consumer.io.artifacts import load_text_encoder
    from consumer.io.batch import iter_records
    from consumer.learn.train import candidate_recall as cand_recall

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    text = load_text_encoder(settings)
    rows: list[dict[str, Any]] = []
    for n in sizes:
        data, truth_path = work / f"crm-{variant}-s{seed}-{n}.csv", work / f"crm-{variant}-s{seed}-{n}.truth.csv"
        if not (data.exists() and truth_path.exists()):
            write_crm(data, truth_path, n, seed, variant)
        records = [r for _, r in iter_records(data, settings) if isinstance(r, Record)]
        truth = load_truth(truth_path, settings.profile.id_field)
        truth = {r.record_id: truth[r.record_id] for r in records if r.record_id in truth}
        pipe, seconds = run_engine([r for r in records if r.record_id in truth], settings, text,
                                   log_pairs=candidate_recall, stream=True)
        s = cluster_scores(pipe.assignments(), truth)
        row: dict[str, Any] = {"records": len(truth), "variant": variant, "seed": seed, **s.row(),
                               "largest_true_cluster": max(Counter(truth.values()).values(), default=0),
                               "seconds": round(seconds, 1), "records_per_second": round(len(truth) / seconds, 1),
                               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
        if candidate_recall:
            recall, _hit, _total = cand_recall(pipe, truth)
            row["candidate_recall"] = round(recall, 5)
        pipe.close()
        rows.append(row)
        print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return rows


def write_rows(path: str | Path, rows: list[dict[str, Any]]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def plot_sizes(rows: list[dict[str, Any]], path: str | Path) -> bool:
    """F1 / B-cubed F1 / precision against records (log x), and the largest cluster against the largest
    true one; False when matplotlib is not installed (the CSV still has every figure)."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    for variant in dict.fromkeys(r["variant"] for r in rows):
        rs = sorted((r for r in rows if r["variant"] == variant), key=lambda r: r["records"])
        x = [r["records"] for r in rs]
        ax.plot(x, [r["f1"] for r in rs], marker="o", label=f"pairwise F1 ({variant})")
        ax.plot(x, [r["bcubed_f1"] for r in rs], marker="s", linestyle="--", label=f"B-cubed F1 ({variant})")
        ax.plot(x, [r["precision"] for r in rs], marker=".", linestyle=":", label=f"precision ({variant})")
        bx.plot(x, [r["largest_cluster"] for r in rs], marker="o", label=f"largest cluster ({variant})")
        bx.plot(x, [r["largest_true_cluster"] for r in rs], marker="x", linestyle=":",
                label=f"largest true cluster ({variant})")
    for a in (ax, bx):
        a.set_xscale("log")
        a.set_xlabel("records in the file")
        a.legend(loc="lower left", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_title("match quality on final clusters")
    bx.set_title("chaining: largest cluster")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
