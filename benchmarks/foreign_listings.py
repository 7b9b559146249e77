"""Listings written unlike this project's generator: home goods whose variants are finishes and colours outside
any closed table (Sand, Brass, Walnut, Warm White / Cool White...), duplicates as other shops rewrite them.

    python benchmarks/foreign_listings.py [--records 4000] [--seeds 1,2,3] [--keep DIR]

Why: `consumer/generate/listings.py` draws colours from a table the title parser also knows, so its files
cannot show what the issue 20 report found on another team's generator: "Navy" vs "Sand" merged, because
"Sand" is in no table. This file's vocabulary is deliberately not the parser's (nothing is imported from
the matcher), its duplicates are rewrites (case, order, separators, brand left out or moved, a typo, a
shop's tag line, a parenthesised finish), and a family's variants differ in one or two words. The run
compares `dedup batch --profile listing` with the variant words it learns from the file and without
(`fusion.learn_variants = false`), on final clusters; it is a check of the mechanism, not a target: held-out
generators decide.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FINISHES = ("Sand", "Brass", "Walnut", "Oak", "Sage", "Terracotta", "Slate", "Natural", "Chrome", "Ecru", "Clay",
            "Ink", "Moss", "Rust", "Pewter", "Ash", "Smoke", "Navy", "Olive", "Black", "Stone", "Mustard",
            "Warm White", "Cool White", "Matte Black", "Antique Brass", "Dusty Pink", "Forest Green")
SIZES = ("Single", "Double", "Queen", "King", "Super King")
PRODUCTS = {  # noun phrases, and whether the family varies by size as well
    "Duvet Cover": True, "Fitted Sheet": True, "Throw Blanket": False, "Cushion Cover": False,
    "Table Lamp": False, "Floor Lamp": False, "Wall Light": False, "Pendant Shade": False,
    "Side Table": False, "Bookcase": False, "Bath Towel": False, "Bath Mat": False, "Rug": False,
    "Curtain Pair": False, "Vase": False, "Mirror": False, "Desk Chair": False, "Coffee Mug Set": False,
}
STYLES = ("Harbor", "Linden", "Marlow", "Hearth", "Coastal", "Nordic", "Ashby", "Fenwick", "Orchard", "Quarry",
          "Willow", "Bramble", "Juniper", "Halden", "Corvo", "Ridge", "Mesa", "Alder", "Tamsin", "Vale")
MATERIALS = ("Linen", "Cotton", "Velvet", "Ceramic", "Rattan", "Wool", "Glass", "Bamboo", "Jute", "Marble", "")
BRANDS = ("Homeward", "Larkspur & Co", "Nook", "Tidewell", "Oakhurst", "Brightly", "Casa Verde", "Fernleigh",
          "Loom House", "Umbra Living", "Kestrel", "Pinegrove")
TAGS = ("Free UK Delivery", "Next Day", "Bestseller", "In Stock", "Sale", "New Season", "Gift Idea")


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 5:
        return word
    i = rng.randrange(1, len(word) - 2)
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def _families(rng: random.Random, n: int) -> list[dict]:
    out: list[dict] = []
    seen: set[tuple[str, str, str]] = set()
    while len(out) < n:
        noun = rng.choice(list(PRODUCTS))
        style, material, brand = rng.choice(STYLES), rng.choice(MATERIALS), rng.choice(BRANDS)
        if (style, material, noun) in seen:
            continue
        seen.add((style, material, noun))
        finishes = rng.sample(FINISHES, rng.choice((1, 2, 2, 3, 3, 4)))
        sizes = rng.sample(SIZES, rng.choice((1, 2))) if PRODUCTS[noun] else [""]
        variants = [(f, s) for f in finishes for s in sizes]
        out.append({"brand": brand, "style": style, "material": material, "noun": noun, "variants": variants,
                    "price": round(rng.uniform(12, 400), 2)})
    return out


def _title(fam: dict, finish: str, size: str, rng: random.Random, first: bool) -> tuple[str, str]:
    """(title, brand column): the first listing is the maker's own wording, copies are rewritten."""
    core = " ".join(w for w in (fam["style"], fam["material"], fam["noun"]) if w)
    if first:
        return f"{fam['brand']} {core}{' ' + size if size else ''} - {finish}", fam["brand"]
    words = core.split()
    if rng.random() < 0.15:
        k = rng.randrange(len(words))
        words[k] = _typo(words[k], rng)
    core = " ".join(words)
    shape = rng.random()
    if shape < 0.3:
        title = f"{core}, {finish}{', ' + size if size else ''}"
    elif shape < 0.55:
        title = f"{core} ({finish}){' ' + size if size else ''}"
    elif shape < 0.8:
        title = f"{finish} {core}{' - ' + size if size else ''}"
    else:
        title = f"{core} in {finish}{' ' + size + ' Size' if size else ''}"
    brand_col = fam["brand"] if rng.random() < 0.6 else ""
    where = rng.random()
    if where < 0.5:
        title = f"{fam['brand']} {title}"
    elif where < 0.65:
        title = f"{title} by {fam['brand']}"
    if rng.random() < 0.3:
        title += f" | {rng.choice(TAGS)}"
    case = rng.random()
    title = title.lower() if case < 0.15 else title.upper() if case < 0.22 else title
    return title, brand_col


def generate(n_records: int, seed: int) -> tuple[list[dict[str, str]], dict[str, str]]:
    rng = random.Random(seed)
    plan: list[tuple[dict, str, str, int]] = []
    for fam in _families(rng, min(n_records // 4 + 1, 3000)):
        for finish, size in fam["variants"]:
            copies = rng.choices((1, 2, 3, 4), weights=(45, 30, 15, 10))[0]
            plan += [(fam, finish, size, k) for k in range(copies)]
        if len(plan) >= n_records:
            break
    plan = plan[:n_records]
    rng.shuffle(plan)
    rows, truth = [], {}
    for i, (fam, finish, size, k) in enumerate(plan):
        title, brand = _title(fam, finish, size, rng, first=k == 0)
        rid = f"H{i:06d}"
        step = 1 + 0.1 * fam["variants"].index((finish, size))
        price = fam["price"] * step * (1 if k == 0 else rng.uniform(0.9, 1.1))
        rows.append({"listing_id": rid, "title": title, "brand": brand, "price": f"{price:.2f}", "currency": "GBP"})
        truth[rid] = f"{fam['style']}|{fam['material']}|{fam['noun']}|{finish}|{size}"
    return rows, truth


def pairwise(clusters: dict[str, str], truth: dict[str, str]) -> dict[str, float]:
    def pairs(assign: dict[str, str]) -> set[tuple[str, str]]:
        groups: dict[str, list[str]] = {}
        for rid, c in assign.items():
            groups.setdefault(c, []).append(rid)
        return {p for g in groups.values() for p in combinations(sorted(g), 2)}

    got, want = pairs(clusters), pairs(truth)
    tp = len(got & want)
    p, r = tp / max(len(got), 1), tp / max(len(want), 1)
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / max(p + r, 1e-9), 4)}


def run(rows: list[dict[str, str]], work: Path, learn: bool) -> tuple[dict[str, str], dict]:
    data = work / "listings.csv"
    with data.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cfg = work / "config.toml"
    cfg.write_text('[profile]\nname = "listing"\nid_field = "listing_id"\n'
                   f'[fusion]\nlearn_variants = {"true" if learn else "false"}\n')
    out, clusters_csv = work / f"decisions-{learn}.jsonl", work / f"clusters-{learn}.csv"
    env = {**os.environ, "DEDUP_ENCODERS__HASH_KEY": os.environ.get("DEDUP_ENCODERS__HASH_KEY", "foreign-listings")}
    cmd = [sys.executable, "-m", "consumer.cli", "batch", str(data), "--config", str(cfg), "--out", str(out),
           "--clusters", str(clusters_csv), "-q"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    with clusters_csv.open() as fh:
        clusters = {r["record_id"]: r["cluster_id"] for r in csv.DictReader(fh)}
    return clusters, json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=4000)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--keep", help="write the files here instead of a temporary folder")
    args = ap.parse_args()
    for seed in (int(s) for s in args.seeds.split(",")):
        rows, truth = generate(args.records, seed)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(args.keep or tmp) / f"seed{seed}"
            work.mkdir(parents=True, exist_ok=True)
            for learn in (False, True):
                clusters, summary = run(rows, work, learn)
                scores = pairwise(clusters, truth)
                print(json.dumps({"seed": seed, "records": len(rows), "learn_variants": learn, **scores,
                                  "variant_words": (summary.get("model") or {}).get("variant_words")}), flush=True)


if __name__ == "__main__":
    main()
