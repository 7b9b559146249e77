"""The generated files of the quality suite: our own generators and other authors'.

Why generated files sit beside the real ones: the real files are few and each is one author's idea of a
duplicate; a change tuned on them lowered files nobody on the team could see (issue 37). Our generators
(CRM signups, listings with photos) keep what the product was built for from regressing; the other-author
generators (`foreign_listings.py`, and the modules that share no vocabulary with the matcher) stand for
the held-out kinds. Each entry is (name, kind, load), `load(data_dir, work_dir) -> (records CSV, truth)`
or None when it cannot be made (a module missing); the files are written into the run's temporary folder,
never into the repository. Seeds and sizes are fixed: a file's figure means the same file every run.
"""

from __future__ import annotations

import csv
import importlib
from collections.abc import Callable
from pathlib import Path

__all__ = ["GENERATED", "Loader"]

Loader = Callable[[Path, Path], "tuple[Path, dict[str, str]] | None"]


def _write(rows: list[dict[str, str]], path: Path) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _module(module: str, name: str, records: int, seed: int, photos: bool = False) -> Loader:
    """A generator module of `benchmarks/` with `generate(n_records, seed) -> (rows, truth)`; `photos`:
    `generate(n_records, seed, image_dir)`, the photos written beside the CSV (its `image` column is
    relative to the CSV's folder)."""
    def load(_data: Path, work: Path) -> tuple[Path, dict[str, str]] | None:
        try:
            generate = importlib.import_module(module).generate
        except ImportError:
            return None
        rows, truth = generate(records, seed, *((work / f"{name}-images",) if photos else ()))
        return _write(rows, work / f"{name}.csv"), truth
    return load


def _crm(seed: int, records: int) -> Loader:
    def load(_data: Path, work: Path) -> tuple[Path, dict[str, str]]:
        from consumer.evaluation.evaluate import load_truth
        from consumer.generate.crm import write_crm

        path, truth = work / f"crm-{seed}.csv", work / f"crm-{seed}.truth.csv"
        write_crm(path, truth, records, seed)
        return path, load_truth(truth)
    return load


def _listings(seed: int, records: int) -> Loader:
    def load(_data: Path, work: Path) -> tuple[Path, dict[str, str]]:
        from consumer.evaluation.evaluate import load_truth
        from consumer.generate.listings import write_listings

        path, truth = work / f"listings-{seed}.csv", work / f"listings-{seed}.truth.csv"
        write_listings(path, truth, records, seed)
        return path, load_truth(truth, "listing_id")
    return load


GENERATED: list[tuple[str, str, Loader]] = [
    ("crm-1", "crm", _crm(1, 10000)),
    ("crm-2", "crm", _crm(2, 10000)),
    ("listings-9", "listing", _listings(9, 6000)),
    *((f"foreign-listings-{s}", "listing", _module("foreign_listings", f"foreign-listings-{s}", 4000, s))
      for s in (1, 2)),
    ("sibling-offers-1", "listing", _module("sibling_offers", "sibling-offers-1", 3000, 1)),
    ("group-people-1", "person", _module("group_people", "group-people-1", 5000, 1)),
    # the same generator at 50,000 records: namesakes grow with the square of the population, so EM's split is
    # rejected there and the fit's refit is what decides; no file of 10,000 records or fewer reaches that path
    ("group-people-50k", "person", _module("group_people", "group-people-50k", 50000, 3)),
    ("photo-offers-1", "listing", _module("photo_offers", "photo-offers-1", 4000, 1, photos=True)),
]
