"""Replay the clustering under other guard settings, without re-running the rest of the engine (issue 11).

Candidates and their fused scores do not depend on the clustering, so one run of a generated file with the
pair log on gives every record's scored candidates; the clustering is then replayed in arrival order for
each setting (`clustering.*` and the learned thresholds), members scored on demand by the same pipeline,
and the final clusters are scored against the truth. On-demand scores use the value counts of the whole
file (the engine uses those counted so far), so confirm a chosen setting with `dedup eval --sizes`.

Tune on the default generator with seeds the README does not report (never on the `heldout` variant):

    PYTHONPATH=$PWD .venv/bin/python benchmarks/cluster_sweep.py --n 200000 --seed 21 \
        --grid join_support=0.8,1.0 merge_margin=0.2,0.3 learned_match=0.45,0.5
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recall_loss import file_args, logged_run  # noqa: E402 - the sibling benchmark's run


def main() -> None:
    ap = argparse.ArgumentParser()
    file_args(ap)
    ap.add_argument("--grid", nargs="*", default=[],
                    help="NAME=V1,V2 for join_support, merge_margin, merge_support, link_members, split, "
                         "learned_match, learned_possible")
    args = ap.parse_args()

    from consumer.engine.clustering import ClusterState, Guards
    from consumer.evaluation.evaluate import cluster_scores

    t0 = time.perf_counter()
    settings, truth, pipe, log = logged_run(args)
    print(json.dumps({"engine": cluster_scores(pipe.assignments(), truth).row(),
                      "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    ids = pipe.store.record_ids
    cl = settings.clustering
    base = {"join_support": cl.join_support, "merge_margin": cl.merge_margin, "merge_support": cl.merge_support,
            "link_members": cl.link_members, "split": cl.split, "learned_match": pipe.fuser.match_threshold,
            "learned_possible": pipe.fuser.possible_threshold}
    axes = []
    for item in args.grid:
        name, values = item.split("=", 1)
        cast = type(base[name]) if not isinstance(base[name], bool) else (lambda v: v.lower() == "true")
        axes.append([(name, cast(v)) for v in values.split(",")])
    cache: dict[tuple[int, int], float] = {}

    def scorer(left, right) -> np.ndarray:
        keys = list(zip(left, right))
        todo = [k for k in keys if k not in cache]
        if todo:
            got = pipe.score_pairs([k[0] for k in todo], [k[1] for k in todo])
            cache.update(zip(todo, got.tolist()))
        return np.array([cache[k] for k in keys], np.float32)

    for combo in itertools.product(*axes) if axes else [()]:
        p = {**base, **dict(combo)}
        g = Guards(p["learned_match"], p["merge_margin"], p["join_support"], p["link_members"], p["merge_support"],
                   p["split"])
        state = ClusterState()
        t0 = time.perf_counter()
        for row, cands, fused in log:
            labels = np.where(fused >= p["learned_match"], 2, np.where(fused >= p["learned_possible"], 1, 0))
            state.assign(row, cands, fused, labels, g, scorer=scorer)
        final = {ids[r]: ids[c] for r, c in state.cluster_of.items()}
        s = cluster_scores(final, truth)
        print(json.dumps({**dict(combo), "f1": round(s.f1, 4), "precision": round(s.precision, 4),
                          "recall": round(s.recall, 4), "bcubed_f1": round(s.bcubed_f1, 4),
                          "largest": s.largest_cluster, "seconds": round(time.perf_counter() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
