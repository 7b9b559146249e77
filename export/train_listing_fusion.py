"""Train the listing profile's learned fusion model: `consumer/data/fusion-listing.pkl` (+ `.json`).

    python export/train_listing_fusion.py                      # seeds 301 and 302, 5k listings each
    python export/train_listing_fusion.py --ablation-out DIR   # also title-only and image-only models

Training listings are generated with seeds evaluation never uses (benchmarks/bench_listings.py evaluates
seed 9), and the pairs are the real candidate pairs of the listing pipeline (`consumer.learn.train.collect_pairs`),
so the negatives are the hard ones: sibling variants with the same photo, the same line in another size.
The single-modality models (for the text-only / image-only figures) are fitted on the same pairs, on the
columns of one encoder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: The features each single-modality model sees (the encoders' declared features).
ABLATIONS = {"title": ("title_cos", "title_tok", "title_tri", "attr_agree", "brand", "category", "price"),
             "image": ("image_cos",)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[301, 302])
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--out", default=str(ROOT / "consumer" / "data" / "fusion-listing.pkl"))
    ap.add_argument("--ablation-out", help="folder for the title-only and image-only models")
    ap.add_argument("--pairs-cache", help="npz of labelled pairs: reused when present, written when not")
    args = ap.parse_args()

    from consumer.config import load_settings
    from consumer.engine.records import Record
    from consumer.evaluation.evaluate import load_truth
    from consumer.generate.listings import write_listings
    from consumer.io.artifacts import load_image_encoder, load_text_encoder
    from consumer.io.batch import iter_records
    from consumer.learn.train import collect_pairs, fit_model

    settings = load_settings(env={}, profile="listing")
    settings.fusion.mode = "rule"
    text, image = load_text_encoder(settings), load_image_encoder(settings)
    cache = Path(args.pairs_cache) if args.pairs_cache else None
    features: tuple[str, ...] = ()
    monotone: dict[str, int] = {}
    xs, ys = [], []
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            xs, ys, features = [z["x"]], [z["y"]], tuple(str(f) for f in z["features"])
            monotone = json.loads(str(z["monotone"]))
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds if not xs else []:
            data, truth = Path(tmp) / f"train-{seed}.csv", Path(tmp) / f"train-{seed}.truth.csv"
            write_listings(data, truth, args.records, seed)
            records = [r for _, r in iter_records(data, settings) if isinstance(r, Record)]
            x, y, pipe = collect_pairs(records, load_truth(truth, "listing_id"), settings, text,
                                       image_encoder=image)
            features, monotone = pipe.comparator.features, dict(pipe.comparator.monotone)
            xs.append(x)
            ys.append(y)
            print(f"seed {seed}: {len(y)} pairs, {int(y.sum())} duplicates", file=sys.stderr)
    x, y = np.concatenate(xs), np.concatenate(ys)
    if cache is not None and not cache.exists():
        np.savez_compressed(cache, x=x, y=y, features=np.array(features), monotone=json.dumps(monotone))
    source = f"generated listings, seeds {args.seeds}, {args.records} records each"
    model = fit_model(x, y, features, monotone, seed=0, source=source)
    digest = model.save(args.out)
    print(json.dumps({**model.meta, "sha256": digest}))
    if args.ablation_out:
        out = Path(args.ablation_out)
        out.mkdir(parents=True, exist_ok=True)
        for name, cols in ABLATIONS.items():
            keep = [features.index(f) for f in features if f in cols]
            sub = fit_model(x[:, keep], y, tuple(features[j] for j in keep), monotone, seed=0,
                            source=f"{source}; {name} features only")
            sub.save(out / f"fusion-listing-{name}.pkl")
            print(json.dumps({"ablation": name, **sub.meta}))


if __name__ == "__main__":
    main()
