"""Train the shipped learned-fusion model: `consumer/data/fusion-default.pkl` (+ `.json` metadata).

    python export/train_fusion.py            # seeds 101, 102, 103 at 10k, 50k and 200k records

The training files are generated with seeds that evaluation never uses (README evaluates seeds 1 and 2),
so the figures in the README and docs/benchmarks.md are on data the model has not seen. They span 10k to
200k records because
the frequency features (how many others share a name or city) and the density of namesakes grow with the
index: a model that saw only 10k files is over-confident at 100k (issue 11). The `heldout` generator
variant is never used here: it is for measurement only. Pairs come from the real candidate
search (`consumer.learn.train.collect_pairs`), so negatives are the hard ones production meets.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103])
    ap.add_argument("--records", type=int, nargs="+", default=[10_000, 50_000, 200_000],
                    help="records per training file, one per seed (a single value applies to every seed)")
    ap.add_argument("--out", default=str(ROOT / "consumer" / "data" / "fusion-default.pkl"))
    ap.add_argument("--learning-rate", type=float, default=0.08,
                    help="boosting step; larger = fewer trees = faster scoring (each tree costs per pair)")
    ap.add_argument("--max-pairs-per-file", type=int, default=1_600_000,
                    help="uniform random subsample of a file's pairs above this (keeps its duplicate rate, so "
                         "calibration; balances the sizes and bounds the fit time)")
    ap.add_argument("--drop-features", nargs="*", default=[],
                    help="features left out of the model (their columns are set to NaN before fitting)")
    ap.add_argument("--text-backend", choices=["auto", "transformer", "static"], default="auto",
                    help="text model whose features the model learns (the shipped one: transformer)")
    ap.add_argument("--pairs-cache", help="folder of per-file npz pair caches: reused when present, written "
                    "when not")
    args = ap.parse_args()

    from consumer.config import load_settings
    from consumer.engine.records import Record
    from consumer.evaluation.evaluate import load_truth
    from consumer.generate import write_crm
    from consumer.io.artifacts import load_text_encoder
    from consumer.io.batch import iter_records
    from consumer.learn.train import collect_pairs, fit_model

    settings = load_settings(env={})
    settings.encoders.text_backend = args.text_backend
    text = load_text_encoder(settings)  # the default backend: what production scores with
    sizes = args.records * len(args.seeds) if len(args.records) == 1 else args.records
    if len(sizes) != len(args.seeds):
        ap.error("give one --records value, or one per seed")
    xs, ys = [], []
    pipe = None
    from consumer.encoders import build_encoders
    from consumer.engine.comparison import Comparator, gate_rarity

    comparator = Comparator(build_encoders(settings, {"text_encoder": text}))
    gated, features = comparator.gated, list(comparator.features)
    cache = Path(args.pairs_cache) if args.pairs_cache else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for seed, n in zip(args.seeds, sizes):
            cached = cache / f"pairs-{seed}-{n}.npz" if cache is not None else None
            if cached is not None and cached.exists():
                with np.load(cached) as z:
                    x, y = z["x"], z["y"]
            else:
                data, truth = Path(tmp) / f"train-{seed}.csv", Path(tmp) / f"train-{seed}.truth.csv"
                write_crm(data, truth, n, seed)
                records = [r for _, r in iter_records(data, settings) if isinstance(r, Record)]
                x, y, pipe = collect_pairs(records, load_truth(truth), settings, text)
                if cached is not None:
                    np.savez_compressed(cached, x=x, y=y)
            print(f"seed {seed}, {n} records: {len(y)} pairs, {int(y.sum())} duplicates", file=sys.stderr)
            x = gate_rarity(x, gated)  # idempotent: caches written before rarity gating still fit
            for name in args.drop_features:
                x[:, features.index(name)] = np.nan  # all-NaN columns are left out by fit_model
            if len(y) > args.max_pairs_per_file:
                keep = np.sort(np.random.default_rng(seed).choice(len(y), args.max_pairs_per_file, replace=False))
                x, y = x[keep], y[keep]
            xs.append(x)
            ys.append(y)
    source = (f"generated CRM, seeds {args.seeds}, {sizes} records, at most {args.max_pairs_per_file} pairs "
              "per file")
    if pipe is None:  # pairs from the cache: the feature list of a pipeline for these settings
        from consumer.engine.pipeline import Pipeline

        pipe = Pipeline(dataclasses.replace(settings, fusion=dataclasses.replace(settings.fusion, mode="rule")),
                        text_encoder=text)
    model = fit_model(np.concatenate(xs), np.concatenate(ys), pipe.comparator.features,
                      pipe.comparator.monotone, seed=0, source=source, learning_rate=args.learning_rate)
    digest = model.save(args.out)
    meta = {**model.meta, "sha256": digest, "command": "python export/train_fusion.py " + " ".join(sys.argv[1:]),
            "text_model": getattr(text, "entry", {}).get("file") or type(text).__name__}
    Path(args.out).with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
