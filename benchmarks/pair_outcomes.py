"""Where a suite file's missed and false pairs come from: the score, a conflict, or the clustering.

    python benchmarks/pair_outcomes.py --files sibling-offers-1,cddb [--examples 10] [--json out.json]

Runs each file of the quality suite (`benchmarks/real_data.py`'s files, our generators and the other
authors') through `dedup batch` in process, as the suite configures it, then judges every true pair of the
truth with the run's own pipeline (`Pipeline.judge_pairs`: the fitted model, the population of the whole
file) and sorts the pairs by what the *final* clusters did with them:

- true pairs *found* (one final cluster) and *missed*, the missed ones by the pair's own label (`match`: the
  score said yes and the clustering kept the two apart; `possible`; `no`: the score itself said no);
- *false conflicts*: true pairs the comparisons call two products or two people (`Feature.conflict`: a code
  or attribute clash), by the feature that says so; a conflict keeps two groups apart whatever the scores;
- false pairs of the final clusters, by their own label (`match`: joined on their own score; otherwise
  chained in through other members);
- each feature's mean and missing share over the found pairs scored `match` against the missed ones scored
  `no`: what the score lacks on the pairs it misses.

Why: a quality change aimed at the wrong step changes nothing (removing a quarter of one file's false
conflicts moved its F1 by 0.0000, because those pairs also scored no). This says which step binds before a
change is written. `--examples N` prints N sample missed and false pairs of each file (their titles or
names: benchmark data, never a product log). The shared files are read from `../shared/data/real`.
"""

from __future__ import annotations

import argparse
import collections
import csv
import itertools
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from real_data import FILES, loaded_files  # noqa: E402

LABELS = {2: "match", 1: "possible", 0: "no"}


def _true_pairs(truth: dict[str, str], known: dict[str, int]) -> list[tuple[str, str]]:
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for rid, entity in truth.items():
        if rid in known:
            groups[entity].append(rid)
    return [p for ids in groups.values() for p in itertools.combinations(ids, 2)]


def outcomes(records: Path, config: str, truth: dict[str, str], work: Path, examples: int = 0,
             seed: int = 0) -> dict[str, Any]:
    """The file's pair outcomes (module docstring) as a dict; `examples` sample pairs printed."""
    from consumer.config import load_settings
    from consumer.io.batch import run_batch

    cfg = work / "outcomes.toml"
    cfg.write_text(config)
    clusters_path = work / "outcomes.clusters.csv"
    env = {"DEDUP_ENCODERS__HASH_KEY": "real-data-bench", **os.environ}  # the suite's key unless one is set
    _, pipe = run_batch(records, os.devnull, load_settings(cfg, env=env), progress=False, clusters_path=clusters_path,
                        rejects_path=os.devnull)
    with clusters_path.open(encoding="utf-8", newline="") as fh:
        cluster = {r["record_id"]: r["cluster_id"] for r in csv.DictReader(fh)}
    row = pipe.store.row_of
    pairs = _true_pairs(truth, row)
    members: dict[str, list[str]] = collections.defaultdict(list)
    for rid, cid in cluster.items():
        members[cid].append(rid)
    false = [(a, b) for ids in members.values() for a, b in itertools.combinations(ids, 2)
             if a in truth and b in truth and truth[a] != truth[b]]
    names = list(pipe.comparator.features)

    def judge(ps: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not ps:
            return np.zeros(0, int), np.zeros(0, bool), np.zeros((0, len(names)), np.float32), np.zeros(0, bool)
        later = np.array([max(row[a], row[b]) for a, b in ps])  # scored as the later record against the earlier
        earlier = np.array([min(row[a], row[b]) for a, b in ps])
        scores, conflict, _ = pipe.judge_pairs(later, earlier)
        same = np.array([cluster[a] == cluster[b] for a, b in ps])
        conf = np.zeros(len(ps), bool) if conflict is None else np.asarray(conflict, bool)
        return pipe.fuser.label(scores), conf, pipe.compare_pairs(later, earlier), same

    lab, conf, feats, found = judge(pairs)
    f_lab, _, _, _ = judge(false)
    by_feature: collections.Counter[str] = collections.Counter()
    for j, value in getattr(pipe.comparator, "conflict_columns", ()):
        by_feature[names[j]] = int((conf & (feats[:, j] == value)).sum())
    good, lost = found & (lab == 2), ~found & (lab == 0)
    with warnings.catch_warnings():  # a feature no pair of one kind has: its mean is None
        warnings.simplefilter("ignore", RuntimeWarning)
        features = {n: {"found_mean": _round(np.nanmean(feats[good, j])),
                        "missed_mean": _round(np.nanmean(feats[lost, j])),
                        "found_missing": _round(np.isnan(feats[good, j]).mean()),
                        "missed_missing": _round(np.isnan(feats[lost, j]).mean())}
                    for j, n in enumerate(names) if not np.isnan(feats[:, j]).all()}
    out = {"true_pairs": len(pairs), "found": int(found.sum()),
           "missed_by_label": {LABELS[k]: int(((~found) & (lab == k)).sum()) for k in (2, 1, 0)},
           "found_by_label": {LABELS[k]: int((found & (lab == k)).sum()) for k in (2, 1, 0)},
           "false_conflicts": int(conf.sum()), "false_conflicts_missed": int((conf & ~found).sum()),
           "false_conflicts_by_feature": dict(by_feature),
           "false_pairs": len(false), "false_pairs_by_label": {LABELS[k]: int((f_lab == k).sum()) for k in (2, 1, 0)},
           "features": features}
    if examples:
        _print_examples(records, pairs, false, ~found & (lab == 0), conf, examples, seed)
    return out


def _round(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x), 3)


def _print_examples(records: Path, pairs: list[tuple[str, str]], false: list[tuple[str, str]], lost: np.ndarray,
                    conf: np.ndarray, n: int, seed: int) -> None:
    with records.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    id_field = next(k for k in rows[0] if k.endswith("_id") or k == "id")
    text = {r[id_field]: " | ".join(v for k, v in r.items() if k != id_field and v)[:120] for r in rows}
    rng = np.random.default_rng(seed)
    for title, chosen in (("missed, scored no", [pairs[i] for i in np.nonzero(lost)[0]]),
                          ("false conflicts", [pairs[i] for i in np.nonzero(conf)[0]]), ("false pairs", false)):
        print(f"  -- {title} ({len(chosen)}), {min(n, len(chosen))} of them:")
        for i in rng.permutation(len(chosen))[:n]:
            a, b = chosen[i]
            print(f"     A: {text.get(a, a)}\n     B: {text.get(b, b)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", required=True, help="comma-separated suite file names (benchmarks/real_data.py)")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "real")
    ap.add_argument("--examples", type=int, default=0, help="sample pairs to print per kind (0: none)")
    ap.add_argument("--seed", type=int, default=0, help="which sample pairs --examples prints")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    wanted = set(args.files.split(","))
    unknown = wanted - {f.name for f in FILES}
    if unknown:
        ap.error(f"no such suite file: {', '.join(sorted(unknown))}")
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="pair-outcomes-") as tmp:
        for f, records, truth in loaded_files(wanted, args.data_dir, Path(tmp)):
            print(f"{f.name}:")
            got = outcomes(records, f.config, truth, Path(tmp), args.examples, args.seed)
            report[f.name] = got
            for key in ("true_pairs", "found", "found_by_label", "missed_by_label", "false_conflicts",
                        "false_conflicts_missed", "false_conflicts_by_feature", "false_pairs", "false_pairs_by_label"):
                print(f"  {key:28s} {got[key]}")
            print(f"  {'feature':16s} {'found':>7s} {'missed':>7s} {'absent F':>9s} {'absent M':>9s}")
            for name, v in got["features"].items():
                print(f"  {name:16s} {_fmt(v['found_mean']):>7s} {_fmt(v['missed_mean']):>7s} "
                      f"{_fmt(v['found_missing']):>9s} {_fmt(v['missed_missing']):>9s}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
