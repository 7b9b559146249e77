"""Train the shipped learned-fusion model: `consumer/data/fusion-default.pkl` (+ `.json` metadata).

    python export/train_fusion.py            # seeds 101, 102 and 103, 15k records each

The training files are generated with seeds that evaluation never uses (README evaluates seeds 1 and 2),
so the figures in the README are on data the model has not seen. Pairs come from the real candidate
search (`consumer.train.collect_pairs`), so negatives are the hard ones production meets.
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
    ap.add_argument("--records", type=int, default=15_000)
    ap.add_argument("--out", default=str(ROOT / "consumer" / "data" / "fusion-default.pkl"))
    ap.add_argument("--learning-rate", type=float, default=0.08,
                    help="boosting step; larger = fewer trees = faster scoring (each tree costs per pair)")
    ap.add_argument("--pairs-cache", help="npz of labelled pairs: reused when present, written when not")
    args = ap.parse_args()

    from consumer.batch import iter_records
    from consumer.config import load_settings
    from consumer.encoders.text import TextEncoder
    from consumer.evaluate import load_truth
    from consumer.generate import write_crm
    from consumer.records import Record
    from consumer.train import collect_pairs, fit_model

    settings = load_settings(env={})
    text = TextEncoder()
    xs, ys = [], []
    pipe = None
    cache = Path(args.pairs_cache) if args.pairs_cache else None
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            xs, ys = [z["x"]], [z["y"]]
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds if not xs else []:
            data, truth = Path(tmp) / f"train-{seed}.csv", Path(tmp) / f"train-{seed}.truth.csv"
            write_crm(data, truth, args.records, seed)
            records = [r for _, r in iter_records(data, settings) if isinstance(r, Record)]
            x, y, pipe = collect_pairs(records, load_truth(truth), settings, text)
            xs.append(x)
            ys.append(y)
            print(f"seed {seed}: {len(y)} pairs, {int(y.sum())} duplicates", file=sys.stderr)
    if cache is not None and not cache.exists():
        np.savez_compressed(cache, x=np.concatenate(xs), y=np.concatenate(ys))
    source = f"generated CRM, seeds {args.seeds}, {args.records} records each"
    if pipe is None:  # pairs from the cache: the feature list of a pipeline for these settings
        from consumer.pipeline import Pipeline

        pipe = Pipeline(dataclasses.replace(settings, fusion=dataclasses.replace(settings.fusion, mode="rule")),
                        text_encoder=text)
    model = fit_model(np.concatenate(xs), np.concatenate(ys), pipe.comparator.features,
                      pipe.comparator.monotone, seed=0, source=source, learning_rate=args.learning_rate)
    digest = model.save(args.out)
    meta = {**model.meta, "sha256": digest, "command": "python export/train_fusion.py " + " ".join(sys.argv[1:]),
            "text_model": text.entry.get("file")}
    Path(args.out).with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
