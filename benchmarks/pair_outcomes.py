"""Where a suite file's missed and false pairs come from: the score, a conflict, or the clustering.

    python benchmarks/pair_outcomes.py --files sibling-offers-1,cddb [--examples 10] [--json out.json]
    python benchmarks/pair_outcomes.py --records people.csv --truth truth.csv --kind person

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
  `no`: what the score lacks on the pairs it misses;
- where the run's model is a Fellegi-Sunter one (fitted to the file), each kind of pair by its level pattern
  over the model's comparisons (`=` top level, `~` a level between, `x` the last, `-` absent: "==x----" is
  both names exact and the date of birth else), and each comparison's m as fitted beside its level shares
  over the true pairs (`m_truth`): whether a loss is the fit's estimate or the comparisons themselves; and
  the matches a record its prior (lambda) expects among the candidate pairs beside the file's true pairs a
  record (`prior`): a fit can be right about m and still refuse most pairs.

Why: a quality change aimed at the wrong step changes nothing (removing a quarter of one file's false
conflicts moved its F1 by 0.0000, because those pairs also scored no). This says which step binds before a
change is written. `--examples N` prints N sample missed pairs (scored no; scored a match but kept apart by
the clustering) and false pairs of each file (their titles or names: benchmark data, never a product log).
The shared files are read from `../shared/data/real`.
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

from real_data import CONFIGS, FILES, loaded_files  # noqa: E402

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
    f_lab, _, f_feats, _ = judge(false)
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
    fs = _fellegi_sunter(pipe.fuser.model)
    meta = pipe.fuser.model.meta if pipe.fuser.model is not None else {}
    if fs is not None and meta.get("candidate_pairs") and meta.get("records"):
        # The prior against the truth: a fit whose lambda expects a tenth of a match a record on a file with
        # four true pairs a record refuses most of them whatever its m (sibling-offers-1, docs/benchmarks.md).
        out["prior"] = {"lambda": round(float(fs.lam), 6),
                        "matches_per_record_expected": round(fs.lam * meta["candidate_pairs"] / meta["records"], 3),
                        "true_pairs_per_record": round(len(pairs) / max(len(row), 1), 3)}
    if fs is not None:
        out.update(_patterns(fs, names, {"found": feats[found], "missed_no": feats[~found & (lab == 0)],
                                         "missed_match": feats[~found & (lab == 2)],
                                         "false_match": f_feats[f_lab == 2], "false_chained": f_feats[f_lab != 2]},
                             feats))
    if examples:
        _print_examples(records, pairs, false, ~found & (lab == 0), ~found & (lab == 2), conf, examples, seed)
    return out


def _fellegi_sunter(model: Any) -> Any:
    """The Fellegi-Sunter model deciding the run (alone, or one of an `EitherOf`), else None; a packaged
    forest is not unpickled to find out (`LearnedModel.estimator_unless_forest`)."""
    from consumer.engine.fusion import EitherOf
    from consumer.learn.fellegi_sunter import FellegiSunterModel

    est = model.estimator_unless_forest if model is not None else None
    parts = [m.estimator_unless_forest for m in est.models] if isinstance(est, EitherOf) else [est]
    return next((p for p in parts if isinstance(p, FellegiSunterModel)), None)


def _patterns(fs: Any, names: list[str], kinds: dict[str, np.ndarray], true_feats: np.ndarray,
              top: int = 12) -> dict[str, Any]:
    """Each kind of pair's most common level patterns over the model's comparisons, and each comparison's
    fitted m beside its level shares over every true pair (nulls left out)."""
    from consumer.learn.fellegi_sunter import gamma

    comps = fs.comparisons
    cols = [names.index(c.feature) for c in comps]

    def marks(x: np.ndarray) -> list[str]:
        g = gamma(x[:, cols], comps)
        return ["".join("-" if v < 0 else "=" if v == 0 else "x" if v == c.n_levels - 1 else "~"
                        for v, c in zip(r, comps)) for r in g]

    g_true = gamma(true_feats[:, cols], comps)
    m_truth = {}
    for j, c in enumerate(comps):
        seen = g_true[:, j][g_true[:, j] >= 0]
        m_truth[c.feature] = [round(float(v), 3) for v in np.bincount(seen, minlength=c.n_levels) / max(len(seen), 1)]
    return {"pattern_columns": [c.feature for c in comps],
            "patterns": {k: collections.Counter(marks(x)).most_common(top) if len(x) else [] for k, x in kinds.items()},
            "m_fitted": {c.feature: [round(float(v), 3) for v in m] for c, m in zip(comps, fs.m)},
            "m_truth": m_truth}


def _round(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x), 3)


def _print_examples(records: Path, pairs: list[tuple[str, str]], false: list[tuple[str, str]], lost: np.ndarray,
                    apart: np.ndarray, conf: np.ndarray, n: int, seed: int) -> None:
    """`n` sample pairs of each kind: missed and scored no (the score's loss), missed though scored a match
    (`apart`: the clustering kept them apart, a split or a guard), false conflicts, false pairs."""
    with records.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    id_field = next(k for k in rows[0] if k.endswith("_id") or k == "id")
    text = {r[id_field]: " | ".join(v for k, v in r.items() if k != id_field and v)[:120] for r in rows}
    rng = np.random.default_rng(seed)
    for title, chosen in (("missed, scored no", [pairs[i] for i in np.nonzero(lost)[0]]),
                          ("missed, scored a match (kept apart by the clustering)",
                           [pairs[i] for i in np.nonzero(apart)[0]]),
                          ("false conflicts", [pairs[i] for i in np.nonzero(conf)[0]]), ("false pairs", false)):
        print(f"  -- {title} ({len(chosen)}), {min(n, len(chosen))} of them:")
        for i in rng.permutation(len(chosen))[:n]:
            a, b = chosen[i]
            print(f"     A: {text.get(a, a)}\n     B: {text.get(b, b)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", default="", help="comma-separated suite file names (benchmarks/real_data.py)")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "real")
    ap.add_argument("--examples", type=int, default=0, help="sample pairs to print per kind (0: none)")
    ap.add_argument("--seed", type=int, default=0, help="which sample pairs --examples prints")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--records", type=Path, help="a file outside the suite (with --truth and --kind)")
    ap.add_argument("--truth", type=Path, help="its truth: id,entity")
    ap.add_argument("--kind", choices=sorted(CONFIGS), help="how the suite would configure it")
    args = ap.parse_args(argv)
    if not args.files and not args.records:
        ap.error("name suite files (--files) or a file (--records, --truth, --kind)")
    if args.records and not (args.truth and args.kind):
        ap.error("--records needs --truth and --kind")
    wanted = set(args.files.split(",")) if args.files else set()
    unknown = wanted - {f.name for f in FILES}
    if unknown:
        ap.error(f"no such suite file: {', '.join(sorted(unknown))}")
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="pair-outcomes-") as tmp:
        jobs: list[tuple[str, Path, str, dict[str, str]]] = [
            (f.name, records, f.config, truth) for f, records, truth in loaded_files(wanted, args.data_dir, Path(tmp))
        ] if wanted else []
        if args.records:
            with args.truth.open(encoding="utf-8", newline="") as fh:  # id, entity (any names: the first two columns)
                truth = {row[0]: row[1] for row in itertools.islice(csv.reader(fh), 1, None) if len(row) >= 2}
            jobs.append((args.records.stem, args.records, CONFIGS[args.kind], truth))
        for name, records, config, truth in jobs:
            print(f"{name}:")
            got = outcomes(records, config, truth, Path(tmp), args.examples, args.seed)
            report[name] = got
            _print(got)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


def _print(got: dict[str, Any]) -> None:
    for key in ("true_pairs", "found", "found_by_label", "missed_by_label", "false_conflicts",
                "false_conflicts_missed", "false_conflicts_by_feature", "false_pairs", "false_pairs_by_label"):
        print(f"  {key:28s} {got[key]}")
    print(f"  {'feature':16s} {'found':>7s} {'missed':>7s} {'absent F':>9s} {'absent M':>9s}")
    for name, v in got["features"].items():
        print(f"  {name:16s} {_fmt(v['found_mean']):>7s} {_fmt(v['missed_mean']):>7s} "
              f"{_fmt(v['found_missing']):>9s} {_fmt(v['missed_missing']):>9s}")
    if "patterns" in got:
        print(f"  level patterns over {', '.join(got['pattern_columns'])} (= top, ~ between, x else, - absent):")
        for kind, common in got["patterns"].items():
            print(f"    {kind:14s} " + "  ".join(f"{p} {n}" for p, n in common[:8]))
        if "prior" in got:
            p = got["prior"]
            print(f"  {'prior':16s} lambda {p['lambda']}: {p['matches_per_record_expected']} matches a record "
                  f"among its candidate pairs / {p['true_pairs_per_record']} true pairs a record")
        print(f"  {'comparison':16s} m fitted / m over the true pairs")
        for name, m in got["m_fitted"].items():
            print(f"  {name:16s} {m} / {got['m_truth'][name]}")


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
