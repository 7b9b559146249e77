"""Listings end to end: pairwise F1 and B-cubed of the final clusters (fused, title-only, image-only), the
stock-photo false-match rate and CPU throughput with image decoding.

    python benchmarks/bench_listings.py [--records 6000] [--seed 9] [--ablations DIR]

Generates `--records` listings with photos (seed 9: never used for training, PCA or tuning), runs
`dedup batch --profile listing` on them (learned fusion, the packaged model), and scores the clusters
against the truth. With `--ablations` (the folder `export/train_listing_fusion.py --ablation-out` wrote)
it also runs the title-only and image-only pipelines with their own models.

Stock-photo false-match rate: among pairs of listings of *different* products whose photos are the same
picture (image cosine >= 0.95: a line's variants share a packshot, and sellers reuse a sibling's photo),
the share the final clusters put together.
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


def stock_photo_false_matches(pipe, truth: dict[str, str], threshold: float = 0.95) -> tuple[float, int]:  # noqa: ANN001
    vec = pipe.store.column("image")
    ids = pipe.store.record_ids
    assign = pipe.assignments()
    has = np.flatnonzero(vec.any(axis=1))
    pairs = together = 0
    for start in range(0, len(has), 512):
        rows = has[start:start + 512]
        sims = vec[rows] @ vec[has].T
        for i, row in enumerate(rows):
            for j in np.flatnonzero(sims[i] >= threshold):
                other = int(has[j])
                if other <= row:
                    continue
                a, b = ids[row], ids[other]
                if truth.get(a) != truth.get(b):
                    pairs += 1
                    together += assign[a] == assign[b]
    return (together / pairs if pairs else 0.0), pairs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=9)
    ap.add_argument("--ablations", help="folder with fusion-listing-title.pkl and fusion-listing-image.pkl")
    ap.add_argument("--dir", help="where to generate (default: a temporary folder)")
    args = ap.parse_args()

    from consumer.config import load_settings
    from consumer.evaluation.evaluate import cluster_scores, load_truth
    from consumer.generate.listings import write_listings
    from consumer.io.artifacts import load_image_encoder, load_text_encoder
    from consumer.io.batch import run_batch

    settings = load_settings(env={}, profile="listing")
    text, image = load_text_encoder(settings, encode_in_background=True), load_image_encoder(settings,
                                                                                             encode_in_background=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.dir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        data, truth_path = folder / f"listings-{args.seed}.csv", folder / f"listings-{args.seed}.truth.csv"
        if not data.exists():
            write_listings(data, truth_path, args.records, args.seed)
        truth = load_truth(truth_path, "listing_id")
        runs = [("fused", settings)]
        if args.ablations:
            for name in ("title", "image"):
                s = dataclasses.replace(settings, profile=dataclasses.replace(settings.profile, encoders=[name]),
                                        fusion=dataclasses.replace(settings.fusion, learned_model=str(
                                            Path(args.ablations) / f"fusion-listing-{name}.pkl")))
                runs.append((f"{name}-only", s))
        out: dict[str, object] = {"records": args.records, "seed": args.seed}
        from consumer.io.artifacts import build_pipeline

        for name, s in runs:
            pipe = build_pipeline(s, text_encoder=text, image_encoder=image, encode_in_background=True)
            summary, pipe = run_batch(data, folder / f"out-{name}.jsonl", s, progress=False, pipeline=pipe)
            sc = cluster_scores(pipe.assignments(), truth)
            row = {"pairwise_f1": round(sc.f1, 4), "precision": round(sc.precision, 4),
                   "recall": round(sc.recall, 4), "bcubed_f1": round(sc.bcubed_f1, 4),
                   "bcubed_precision": round(sc.bcubed_precision, 4), "bcubed_recall": round(sc.bcubed_recall, 4),
                   "largest_cluster": sc.largest_cluster, "records_per_second": summary.as_dict()["records_per_second"],
                   "warnings": dict(summary.warnings)}
            if name == "fused":
                rate, n = stock_photo_false_matches(pipe, truth)
                row["stock_photo_pairs"] = n
                row["stock_photo_false_match_rate"] = round(rate, 4)
                row["stage_seconds"] = summary.as_dict()["stage_seconds"]
            out[name] = row
            pipe.close()
            print(json.dumps({name: row}), file=sys.stderr)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
