"""The foreign benchmark generators (issue 37): `benchmarks/sibling_offers.py` and `benchmarks/group_people.py`.

They stand for data written by other authors, so they must be reproducible (a seed names a file), have the
group shapes their docstrings promise (offers: groups of 5-20 and lone siblings; persons: groups of 3-20
and singletons), label every row, and import nothing from the matcher, whose vocabulary they must not share.
"""

from __future__ import annotations

import ast
import csv
import sys
from collections import Counter
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import group_people  # noqa: E402
import sibling_offers  # noqa: E402

CASES = [  # module, records, id column, columns the rows must have
    (sibling_offers, 1200, "listing_id", ["listing_id", "title", "description", "brand", "price", "currency"]),
    (group_people, 1500, "id", ["id", "given_name", "surname", "date_of_birth", "suburb", "street_number",
                                "address_1", "postcode"]),
]


@pytest.mark.parametrize(("module", "n", "id_col", "columns"), CASES, ids=["offers", "people"])
def test_seeded_output_is_reproducible_and_labelled(module, n: int, id_col: str, columns: list[str]) -> None:
    rows, truth = module.generate(n, 3)
    assert (rows, truth) == module.generate(n, 3)
    assert module.generate(n, 4)[0] != rows
    assert len(rows) == n and all(list(r) == columns for r in rows)
    ids = [r[id_col] for r in rows]
    assert len(set(ids)) == n and set(truth) == set(ids)


@pytest.mark.parametrize(("module", "low"), [(sibling_offers, 5), (group_people, 3)], ids=["offers", "people"])
def test_group_sizes_span_singletons_to_twenty(module, low: int) -> None:
    rows, truth = module.generate(3000, 7)
    sizes = Counter(Counter(truth.values()).values())
    assert sizes[1] >= 0.1 * sum(sizes.values()), sizes
    big = sum(v for k, v in sizes.items() if low <= k <= 20)
    assert big >= 0.2 * sum(sizes.values()), sizes
    assert max(sizes) <= 20 and any(k >= 10 for k in sizes), sizes


def test_people_have_namesakes_and_offers_have_siblings() -> None:
    rows, truth = group_people.generate(3000, 5)
    names: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        names.setdefault((r["given_name"], r["surname"]), set()).add(truth[r["id"]])
    assert sum(len(e) > 1 for e in names.values()) >= 20  # one spelling shared by different persons
    rows, truth = sibling_offers.generate(3000, 5)
    families = Counter("|".join(e.split("|")[:2]) for e in set(truth.values()))
    assert sum(n > 1 for n in families.values()) >= 20  # a brand and line with several products


@pytest.mark.parametrize("module", [sibling_offers, group_people], ids=["offers", "people"])
def test_generators_import_nothing_from_the_matcher(module) -> None:
    tree = ast.parse(Path(module.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not any(a.name.split(".")[0] == "consumer" for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] != "consumer" and node.level == 0


def test_main_writes_the_real_data_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for module, name in ((sibling_offers, "listings.csv"), (group_people, "people.csv")):
        out = tmp_path / name
        monkeypatch.setattr(sys, "argv", ["gen", "--records", "200", "--seed", "2", "--out", str(out)])
        module.main()
        with (out / "truth.csv").open(newline="", encoding="utf-8") as fh:
            truth = list(csv.DictReader(fh))
        with (out / name).open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        assert list(truth[0]) == ["id", "entity"] and len(truth) == len(rows) == 200
