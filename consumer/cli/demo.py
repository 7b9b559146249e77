"""What `dedup demo` prints: the run summary, accuracy against the generated truth, example clusters.

The demo data is synthetic, so showing its names is fine here; the product's own outputs (decision
files, events, logs) carry ids and scores only.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from consumer.evaluation.evaluate import Scores


def show_demo(data: Path, decisions: Path, summary: dict[str, Any], scores: Scores, examples: int = 3,
              threshold: float = 0.5) -> None:
    """`threshold`: the match threshold the run used (the model's operating point), shown beside each link."""
    print(f"   records: {summary['records']}  rejected: {summary['rejected']}  clusters: {summary['clusters']}"
          f"  largest: {summary['largest_cluster']}  speed: {summary['records_per_second']} records/s")
    print(f"   vs ground truth: pairwise precision {scores.precision:.3f} recall {scores.recall:.3f} "
          f"F1 {scores.f1:.3f} | B-cubed F1 {scores.bcubed_f1:.3f}")
    with open(data, encoding="utf-8", newline="") as fh:
        names = {row["customer_id"]: (row["name"], row["city"]) for row in csv.DictReader(fh)}
    clusters: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with open(decisions, "rb") as fh:
        for line in fh:
            d = orjson.loads(line)
            clusters[d["cluster_id"]].append(d)
    print(f"   a pair is a duplicate when the model's probability p(duplicate) reaches {threshold:.2f}, its "
          "operating point (docs/benchmarks.md: Accuracy)")
    shown = 0
    for cid, members in clusters.items():
        if len(members) < 3 or shown >= examples:
            continue
        shown += 1
        print(f"\n   cluster {cid} (canonical {members[-1]['canonical_id'][:8]}…):")
        for d in members:
            name, city = names.get(d["record_id"], ("?", "?"))
            best = next((m for m in d["matches"] if m["decision"] == "match"), None)
            why = ""
            if best:
                mods = ", ".join(f"{k} {v:.2f}" for k, v in best["scores"].items() if v is not None)
                why = f"  <- {d['outcome']} (p(duplicate) {best['fused']:.2f} >= {threshold:.2f}: {mods})"
            print(f"     {d['record_id'][:8]}  {name!r:28} {city!r:20}{why}")
    print(f"\n   decisions: {decisions}  (one JSON line per record; see README 'What a decision looks like')")
