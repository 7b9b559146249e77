"""Image near-duplicate recall@1 per edit type, with the shipped ONNX image encoder.

    python benchmarks/bench_image_recall.py [--products 400] [--seed 4242]

Gallery: the packshots of the distinct product looks of a generated listings catalogue (seed 4242, not
a training or PCA seed): sibling variants of a line differ only in colour, so the gallery holds its own
hard distractors. Query: each packshot after one seller edit (resize to 96-512 px, JPEG recompression at
quality 15-45, and separately at 50-85, crop of 2-10% per side, brightness/saturation/colour shift, text
overlay) and a re-shoot (another background, framing and angle: a different photo of the same product,
not an edit, so no 0.98 target applies). recall@1 = share of queries whose nearest gallery image (cosine) is their
own source. Also printed: the cosine of an edited copy to its source vs. to the nearest other product.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--products", type=int, default=400)
    ap.add_argument("--seed", type=int, default=4242)
    args = ap.parse_args()

    from PIL import Image

    from consumer.encoders.image import ImageModel, pixels
    from consumer.generate.listings import _catalogue
    from consumer.generate.photos import EDITS, draw_product, edit_photo, jpeg_bytes

    model = ImageModel(device="cpu")
    rng = random.Random(args.seed)
    looks = list(dict.fromkeys(v.look for v in _catalogue(rng, args.products * 2)))[: args.products]
    originals = [draw_product(lk) for lk in looks]
    t0 = time.perf_counter()
    gallery = model.embed(np.stack([pixels(im, model.input_size) for im in originals]))
    per_image = (time.perf_counter() - t0) / len(originals)
    result: dict[str, object] = {"gallery": len(looks), "encode_ms_per_image": round(per_image * 1000, 2)}
    for edit in (*EDITS, "jpeg_q50_85", "reshoot"):
        erng = random.Random(f"{args.seed}-{edit}")
        if edit == "reshoot":
            queries = [draw_product(lk, shot=1) for lk in looks]
        elif edit == "jpeg_q50_85":  # a milder recompression than EDITS' "jpeg" (quality 15-45)
            queries = [Image.open(io.BytesIO(jpeg_bytes(im, erng.randint(50, 85)))) for im in originals]
        else:
            queries = [edit_photo(im, edit, erng) for im in originals]
        q = model.embed(np.stack([pixels(im, model.input_size) for im in queries]))
        sims = q @ gallery.T
        top = sims.argmax(axis=1)
        own = sims[np.arange(len(q)), np.arange(len(q))]
        np.fill_diagonal(sims, -1.0)
        other = sims.max(axis=1)
        result[edit] = {"recall@1": round(float((top == np.arange(len(q))).mean()), 4),
                        "cos_to_source_p05": round(float(np.percentile(own, 5)), 3),
                        "cos_to_nearest_other_p95": round(float(np.percentile(other, 95)), 3)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
