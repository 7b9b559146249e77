"""Where does recall go at scale (issue 11)? Attribute every missed true pair of the *final* clusters.

Runs a generated file through the threaded engine with the pair log on, then, for each true duplicate
pair that does not end in one final cluster, says why, in pipeline order:

- ``never_scored``: the pair never reached scoring (candidate generation missed it in both directions);
- ``below_possible`` / ``possible``: it was scored, under the review band / inside it (a pair decision);
- ``match_refused``: it was scored as a match, yet the clustering kept the two apart (the average-linkage
  join test, the merge margin or support, or a split).

It also reports the recall that plain connected components over the engine's match edges would give
(an upper bound of what the chaining guards cost, and a lower bound of what they buy in precision), and
for true entities split into pieces, the strongest scored link between pieces. Use generator seeds that
the evaluation never reports (README: default 1 and 2, heldout 11 and 12).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/recall_loss.py --n 200000 --seed 21 --workdir /tmp/ev
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np


def file_args(ap: argparse.ArgumentParser) -> None:
    """The generated file both scripts run (`cluster_sweep.py` shares these options and `logged_run`)."""
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--variant", default="default")
    ap.add_argument("--workdir", default="/tmp/ev")


def logged_run(args: argparse.Namespace) -> tuple[Any, dict[str, str], Any, list[tuple[int, np.ndarray, np.ndarray]]]:
    """Generate (or reuse) the file, run it through the threaded engine with the pair log on, and return
    (settings, truth, pipeline, [(row, candidate rows, fused scores)] in arrival order). The fusion runs
    once over every logged pair: per-row calls cost more than what the callers do with the scores."""
    from consumer.config import load_settings
    from consumer.engine.records import Record
    from consumer.evaluation.evaluate import load_truth
    from consumer.evaluation.report import run_engine
    from consumer.generate import write_crm
    from consumer.io.artifacts import load_text_encoder
    from consumer.io.batch import iter_records

    settings = load_settings(None)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    stem = f"crm-{args.variant}-s{args.seed}-{args.n}"
    data, truth_path = work / f"{stem}.csv", work / f"{stem}.truth.csv"
    if not (data.exists() and truth_path.exists()):
        write_crm(data, truth_path, args.n, args.seed, args.variant)
    records = [r for _, r in iter_records(data, settings) if isinstance(r, Record)]
    truth = load_truth(truth_path, settings.profile.id_field)
    records = [r for r in records if r.record_id in truth]
    pipe, _ = run_engine(records, settings, load_text_encoder(settings), log_pairs=True, stream=True)
    assert pipe.pair_log is not None
    fused_all = pipe.fuser.score(np.concatenate([f for _, _, f in pipe.pair_log]))[0]
    ends = np.cumsum([len(c) for _, c, _ in pipe.pair_log])
    log = [(row, cands, fused) for (row, cands, _), fused in zip(pipe.pair_log, np.split(fused_all, ends[:-1]))]
    return settings, truth, pipe, log


def main() -> None:
    ap = argparse.ArgumentParser()
    file_args(ap)
    args = ap.parse_args()

    from consumer.evaluation.evaluate import cluster_scores, true_pairs

    t0 = time.perf_counter()
    settings, truth, pipe, log = logged_run(args)
    final = pipe.assignments()
    scores = cluster_scores(final, truth)
    ids = pipe.store.record_ids
    thr_match, thr_poss = pipe.fuser.match_threshold, pipe.fuser.possible_threshold

    best: dict[tuple[str, str], float] = {}
    for row, cands, fused in log:
        a = ids[row]
        for c, s in zip(cands.tolist(), fused.tolist()):
            b = ids[c]
            key = (a, b) if a < b else (b, a)
            if s > best.get(key, -1.0):
                best[key] = s

    gold = true_pairs(truth)
    why: Counter[str] = Counter()
    for a, b in gold:
        if final[a] == final[b]:
            why["kept"] += 1
            continue
        s = best.get((a, b) if a < b else (b, a))
        why["never_scored" if s is None else "match_refused" if s >= thr_match else
            "possible" if s >= thr_poss else "below_possible"] += 1

    # Plain connected components over match edges: what single-link clustering would have given.
    parent = {r: r for r in truth}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for (a, b), s in best.items():
        if s >= thr_match:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[ra] = rb
    single = cluster_scores({r: find(r) for r in truth}, truth)

    # Split entities: for each pair of final pieces of one true entity, the strongest scored link.
    pieces: dict[str, set[str]] = defaultdict(set)
    for r, e in truth.items():
        pieces[e].add(final[r])
    piece_link: Counter[str] = Counter()
    for (a, b) in gold:
        if final[a] != final[b]:
            s = best.get((a, b) if a < b else (b, a))
            piece_link["none" if s is None else f"{min(int(s * 10), 9) / 10:.1f}"] += 1
    missed = sum(v for k, v in why.items() if k != "kept")
    out = {"records": len(truth), "true_pairs": len(gold), "seconds": round(time.perf_counter() - t0, 1),
           "final": scores.row(), "single_link_over_matches": single.row(),
           "missed_pairs": missed, "why_missed": {k: (v, round(v / max(missed, 1), 3)) for k, v in why.items()
                                                   if k != "kept"},
           "missed_by_best_score": dict(sorted(piece_link.items())),
           "entities_split": sum(1 for p in pieces.values() if len(p) > 1)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
