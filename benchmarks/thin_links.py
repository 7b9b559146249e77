"""Two-shop files with most partners removed: where a low match point for linked files would cost precision.

Abt-Buy pairs every listing with one in the other shop, and 81% of Amazon-Google's Amazon side has a partner,
so on them linking at a low match point is cheap; a two-shop file where most listings have no partner is where
it would not be. This writes copies of the two files with a share of the second shop's matched listings
removed (seeded); their partners then stand alone in the truth. `benchmarks/real_data.py --data-dir` runs the
suite's linked mapping on them (docs/benchmarks.md, *Linked files match at a point of their own*):

    python benchmarks/thin_links.py --drop 0.75 --out /tmp/thin0.75
    DEDUP_FUSION__LINK_MATCH=0.3 python benchmarks/real_data.py --data-dir /tmp/thin0.75 \\
        --files abt-buy,amazon-google --no-splink --no-tfidf

The shared files are read from `../shared/data/real` (or `--data-dir`) and never copied into this repository.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ("abt-buy", "amazon-google")


def thin(src: Path, dst: Path, drop: float, seed: int, side: str = "b_") -> int:
    """Copy `src` (listings.csv, truth.csv) to `dst` without a `drop` share of the matched records whose id
    starts with `side`; returns how many were removed."""
    with (src / "truth.csv").open(newline="") as fh:
        entity = {r["id"]: r["entity"] for r in csv.DictReader(fh)}
    members: dict[str, list[str]] = {}
    for rid, ent in entity.items():
        members.setdefault(ent, []).append(rid)
    matched = sorted(r for r, e in entity.items() if r.startswith(side) and len(members[e]) > 1)
    gone = set(random.Random(seed).sample(matched, int(drop * len(matched))))
    dst.mkdir(parents=True, exist_ok=True)
    with (src / "listings.csv").open(newline="") as fi, (dst / "listings.csv").open("w", newline="") as fo:
        rows, out = csv.reader(fi), csv.writer(fo)
        out.writerow(next(rows))
        out.writerows(row for row in rows if row[0] not in gone)
    with (dst / "truth.csv").open("w", newline="") as fo:
        out = csv.writer(fo)
        out.writerow(["id", "entity"])
        for rid, ent in entity.items():
            if rid not in gone:
                left = [m for m in members[ent] if m not in gone]
                out.writerow([rid, ent if len(left) > 1 else rid])
    return len(gone)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--drop", type=float, required=True, help="share of the second shop's matched listings removed")
    ap.add_argument("--out", required=True, help="folder to write <file>/listings.csv and truth.csv into")
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "real"))
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if not 0 <= args.drop <= 1:
        ap.error("--drop must be between 0 and 1")
    for name in FILES:
        src = Path(args.data_dir) / name
        if not (src / "truth.csv").is_file():
            print(f"{name}: not found in {args.data_dir}, skipped")
            continue
        print(f"{name}: {thin(src, Path(args.out) / name, args.drop, args.seed)} listings removed")


if __name__ == "__main__":
    main()
