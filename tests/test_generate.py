"""Tests for the synthetic CRM generator: reproducibility, ground truth and population shape.

The bounds are deliberately loose: they pin the spec (about 30% of people duplicated, ~4% namesakes,
~8% in households) without freezing the exact random draws, so the generator can still be tuned.
"""

from __future__ import annotations

import ast
import collections
import hashlib
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from consumer.generate import generate_crm, write_crm
from consumer.generate.crm import HEADER, Person, build_people, generate_crm_with_meta

N, SEED = 4000, 11
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data() -> tuple[list[dict], list[dict], list[dict]]:
    return generate_crm_with_meta(N, SEED)


@pytest.fixture(scope="module")
def people() -> list[Person]:
    return build_people(N, SEED)


def _write(folder: Path, n: int, seed: int) -> tuple[bytes, bytes]:
    folder.mkdir()
    write_crm(folder / "crm.csv", folder / "truth.csv", n, seed)
    return (folder / "crm.csv").read_bytes(), (folder / "truth.csv").read_bytes()


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    first = _write(tmp_path / "a", 1500, 3)
    assert first == _write(tmp_path / "b", 1500, 3)
    assert first[0].startswith(",".join(HEADER).encode() + b"\n")
    assert first[1].startswith(b"customer_id,entity_id\n")


def test_same_bytes_across_hash_seeds(tmp_path: Path) -> None:
    """Set iteration order changes with PYTHONHASHSEED; output must not depend on it."""
    code = ("import sys, hashlib; from consumer.generate import generate_crm; "
            "r, t = generate_crm(600, 5); print(hashlib.sha256(repr((r, t)).encode()).hexdigest())")
    digests = set()
    for hash_seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                             check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_different_seed_different_people() -> None:
    rows_a, _ = generate_crm(800, 1)
    rows_b, _ = generate_crm(800, 2)
    assert not {r["customer_id"] for r in rows_a} & {r["customer_id"] for r in rows_b}
    names_a, names_b = {r["name"] for r in rows_a}, {r["name"] for r in rows_b}
    assert len(names_a & names_b) < 0.2 * len(names_a)
    assert hashlib.sha256(repr(rows_a).encode()).digest() != hashlib.sha256(repr(rows_b).encode()).digest()


def test_exact_count_and_truth_covers_every_row(data: tuple[list[dict], list[dict], list[dict]]) -> None:
    rows, truth, _ = data
    assert len(rows) == len(truth) == N
    ids = [r["customer_id"] for r in rows]
    assert len(set(ids)) == N
    assert ids == [t["customer_id"] for t in truth]
    assert all(uuid.UUID(i).version == 4 for i in ids)
    assert all(set(r) == set(HEADER) for r in rows)


def test_duplicate_share(data: tuple[list[dict], list[dict], list[dict]]) -> None:
    _, truth, _ = data
    sizes = collections.Counter(collections.Counter(t["entity_id"] for t in truth).values())
    people = sum(sizes.values())
    duplicated = sum(c for k, c in sizes.items() if k > 1)
    extra = sum((k - 1) * c for k, c in sizes.items())
    assert 0.25 < duplicated / people < 0.35
    assert 1.4 < extra / duplicated < 1.85
    assert max(sizes) <= 5 and sizes[2] > sizes[3] > sizes[4]


def test_rows_parse(data: tuple[list[dict], list[dict], list[dict]]) -> None:
    rows, _, _ = data
    lo, hi = datetime(2023, 12, 31), datetime(2026, 1, 2)
    for r in rows:
        stamps = json.loads(r["login_times"])
        assert isinstance(stamps, list) and (not stamps or 2 <= len(stamps) <= 25)
        parsed = [datetime.fromisoformat(s) for s in stamps]
        assert all(p.tzinfo is None and lo <= p <= hi for p in parsed)
        assert parsed == sorted(parsed)
        assert r["name"].strip() and r["browser"] and r["os"]
    lengths = sorted(len(json.loads(r["login_times"])) for r in rows)
    assert 4 <= lengths[len(lengths) // 2] <= 8
    assert 0.005 < lengths.count(0) / len(rows) < 0.04


def test_login_lists_never_shared(data: tuple[list[dict], list[dict], list[dict]]) -> None:
    rows, _, _ = data
    lists = [r["login_times"] for r in rows if r["login_times"] != "[]"]
    assert len(lists) == len(set(lists))


def test_namesakes_share(people: list[Person]) -> None:
    names = collections.Counter((p.name.given, p.name.surname) for p in people)
    share = sum(c for c in names.values() if c > 1) / len(people)
    assert 0.03 <= share <= 0.055
    assert max(names.values()) >= 3  # several distinct "John Smith"s


def test_same_rendered_name_different_entity(data: tuple[list[dict], list[dict], list[dict]]) -> None:
    rows, truth, _ = data
    by_name: dict[str, set[str]] = collections.defaultdict(set)
    for r, t in zip(rows, truth, strict=True):
        by_name[r["name"].strip().casefold()].add(t["entity_id"])
    involved = {e for ents in by_name.values() if len(ents) > 1 for e in ents}
    entities = {t["entity_id"] for t in truth}
    assert 0.01 < len(involved) / len(entities) < 0.06


def test_households(people: list[Person]) -> None:
    homes: dict[int, list] = collections.defaultdict(list)
    for p in people:
        if p.household >= 0:
            homes[p.household].append(p)
    members = [m for v in homes.values() for m in v]
    assert 0.05 < len(members) / len(people) < 0.12
    assert all(len(v) <= 4 for v in homes.values())
    assert sum(len(v) >= 2 for v in homes.values()) >= len(homes) - 1  # only the last may be cut short
    for v in homes.values():
        assert len({m.entity_id for m in v}) == len(v)
        assert len({m.name.surname for m in v}) == 1 and len({m.city for m in v}) == 1
    shared_device = sum(len({(m.os, m.browser) for m in v}) == 1 for v in homes.values())
    assert shared_device > 0.2 * len(homes)


def test_duplicates_perturbed_and_shuffled(data: tuple[list[dict], list[dict], list[dict]]) -> None:
    _, truth, meta = data
    dups = [m for m in meta if m["duplicate"]]
    kinds = collections.Counter(op for m in dups for op in m["ops"])
    assert len(kinds) >= 15
    assert sum(not m["ops"] for m in dups) / len(dups) < 0.2
    assert 0.04 < kinds["city_blank"] / len(dups) < 0.10
    assert 0.2 < kinds["browser"] / len(dups) < 0.3
    originals = sum(bool(m["ops"]) for m in meta if not m["duplicate"])
    assert originals > 0.05 * (len(meta) - len(dups))  # originals carry mild noise too
    first_seen: dict[str, bool] = {}
    for t, m in zip(truth, meta, strict=True):
        first_seen.setdefault(t["entity_id"], m["duplicate"])
    assert sum(first_seen.values()) > 0.05 * len(first_seen)  # a duplicate often arrives first


def test_generator_is_self_contained() -> None:
    """The matcher must not share tables with its benchmark: no imports from the rest of consumer."""
    for path in (ROOT / "consumer" / "generate").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("consumer"):
                assert node.module.startswith("consumer.generate"), (path.name, node.module)
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("consumer") and not a.name.startswith("consumer.generate")
                               for a in node.names)


def test_heldout_variant_draws_other_tables_and_more_households() -> None:
    """The measurement-only variant differs from the default in names, places and household share."""
    from consumer.generate.crm import generate_crm_with_meta

    rows_d, _, meta_d = generate_crm_with_meta(3000, 4)
    rows_h, truth_h, meta_h = generate_crm_with_meta(3000, 4, "heldout")
    assert len(rows_h) == len(truth_h) == 3000
    names_d, names_h = {r["name"] for r in rows_d}, {r["name"] for r in rows_h}
    assert len(names_d & names_h) < 0.2 * len(names_h)
    share = [sum(m["household"] >= 0 for m in meta) / len(meta) for meta in (meta_d, meta_h)]
    assert share[1] > 1.4 * share[0]
    assert generate_crm_with_meta(500, 4, "heldout")[0] == generate_crm_with_meta(500, 4, "heldout")[0]
