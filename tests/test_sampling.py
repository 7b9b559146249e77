"""Which records a fit without labels reads from a large file: whole blocks for the listing fit (so each
listing keeps its duplicates in the sample), a uniform sample for EM."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from consumer.config import load_settings
from consumer.io.batch import fit_records
from consumer.learn.sampling import FIT_FLOOR, block_key, fit_sample_size, sample_blocks


def test_block_key_is_the_brand_else_the_first_title_word() -> None:
    assert block_key("Sony ", "Bravia KDL-40") == "sony"
    assert block_key("", "Sony Bravia KDL-40") == "sony"
    assert block_key(None, None) == ""


def test_sample_blocks_keeps_whole_blocks_in_arrival_order() -> None:
    items = [(i, f"brand{i % 37}") for i in range(3_000)]
    got, total = sample_blocks(items, 500, key=lambda t: t[1])
    assert total == 3_000
    assert 0 < len(got) <= 500
    per_block = Counter(b for _, b in got)
    everywhere = Counter(b for _, b in items)
    assert all(per_block[b] == everywhere[b] for b in per_block)  # every kept block is whole
    assert [i for i, _ in got] == sorted(i for i, _ in got)
    again, _ = sample_blocks(list(reversed(items)), 500, key=lambda t: t[1])
    assert set(again) == set(got)  # the blocks chosen do not depend on the order read
    smaller, _ = sample_blocks(got, 200, key=lambda t: t[1])
    direct, _ = sample_blocks(items, 200, key=lambda t: t[1])
    assert smaller == direct  # trimming a sample is the same as sampling smaller


def test_sample_blocks_samples_keyless_records_one_by_one() -> None:
    items = [(i, "") for i in range(1_000)]
    got, _ = sample_blocks(items, 100, key=lambda t: t[1])
    assert 90 <= len(got) <= 100


def test_listing_fit_reads_whole_brands_of_a_large_file(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["listing_id", "title", "brand", "price"])
        for i in range(30_000):
            w.writerow([f"L{i}", f"Gadget {i % 500} model", f"Maker{i % 300}", "9.99"])
    settings = load_settings(None, profile="listing")
    records, total = fit_records(path, settings)
    assert total == 30_000
    assert 9_000 <= len(records) <= 10_000  # the fit's share of a 30k file: 10,000 records, whole brands
    brands = Counter(r.role("brand") for r in records)
    assert set(brands.values()) == {100}  # each maker kept has all of its 100 listings


def test_a_sample_of_blocks_is_a_smaller_share() -> None:
    assert fit_sample_size(100_000) == 15_000
    assert fit_sample_size(100_000, blocks=True) == 10_000
    assert fit_sample_size(FIT_FLOOR, blocks=True) == FIT_FLOOR


def test_person_fit_parses_only_its_uniform_sample_of_a_large_file(tmp_path: Path, monkeypatch) -> None:
    """EM fits on a uniform sample of a large file; only the rows sampled are parsed (the rest are read as
    raw rows), and they are the rows `fit_unsupervised` would draw from the whole file's records."""
    import numpy as np

    import consumer.io.batch as batch

    path = tmp_path / "people.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "given_name", "surname", "date_of_birth"])
        for i in range(24_000):
            w.writerow([f"p{i}", f"name{i % 700}", f"family{i % 900}", f"19{50 + i % 40}-0{1 + i % 9}-1{i % 10}"])
    parsed: list[str] = []
    real = batch.parse_record

    def counting(row, profile, limits):  # noqa: ANN001, ANN202 - a spy on the real parser
        parsed.append(row["id"])
        return real(row, profile, limits)

    monkeypatch.setattr(batch, "parse_record", counting)
    records, total = fit_records(path, load_settings(None, profile="person"))
    size = fit_sample_size(24_000)
    assert total == 24_000 and len(records) == size == len(parsed)  # 15% of the rows, no other row parsed
    expected = np.sort(np.random.default_rng(0).choice(24_000, size, replace=False))
    assert [r.record_id for r in records] == [f"p{i}" for i in expected]
