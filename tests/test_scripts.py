"""Issue 10 item 8: names and cities in non-Latin scripts are compared, not folded to nothing.

Before transliteration, CJK, Cyrillic, Greek and Arabic values folded to empty strings, so exact
duplicates written in those scripts were never found and nothing said so.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from consumer.config import load_settings
from consumer.engine.normalize import city_canonical, fold, name_tokens
from consumer.engine.records import Record
from consumer.io.batch import run_batch, unreadable_fields

PEOPLE = [  # (name, city) in four scripts, plus a Korean and a Latin control
    ("王小明", "北京"), ("Иван Петров", "Москва"), ("Γιώργος Παπαδόπουλος", "Αθήνα"),
    ("محمد علي", "القاهرة"), ("김민준", "서울"), ("Kyle Roberts", "Joseshire"),
]
LOGINS = ['["2025-01-0{d}T0{h}:15:00", "2025-02-1{d}T0{h}:40:00"]', '["2025-03-2{d}T1{h}:05:00"]']


@pytest.mark.parametrize(("text", "folded"), [
    ("王小明", "wangxiaoming"), ("北京", "beijing"), ("Иван Петров", "ivan petrov"),
    ("Γιώργος", "giorgos"), ("محمد", "mhmd"), ("José Müller", "jose muller"), ("Straße", "strasse"),
    ("Anna ☃", "anna"),
])
def test_fold_transliterates_letters_and_drops_symbols(text: str, folded: str) -> None:
    assert fold(text) == folded


def test_names_and_cities_in_other_scripts_keep_tokens() -> None:
    assert name_tokens("Иван Петров") == ["ivan", "petrov"]
    assert city_canonical("Москва") == city_canonical("Moscow")  # the alias table now applies too


def test_value_that_folds_to_nothing_is_a_warning() -> None:
    rec = Record("r1", "☃☃", "Oslo", (), "", "", ())
    assert unreadable_fields(rec) == ["name_unreadable"]


def test_exact_and_near_duplicates_in_other_scripts_cluster(tmp_path: Path) -> None:
    src = tmp_path / "scripts.csv"
    rows = []
    for i, (name, city) in enumerate(PEOPLE):
        logins = LOGINS[i % 2].format(d=i + 1, h=i + 1)
        browser, os_ = [("Chrome", "Windows"), ("Firefox", "macOS"), ("Safari", "iOS")][i % 3]
        rows.append((f"a{i}", name, city, browser, os_, logins))
        rows.append((f"b{i}", name, city, browser, os_, logins))  # exact duplicate
    rows.append(("c0", "王晓明", "北京", "Chrome", "Windows", LOGINS[0].format(d=1, h=1)))  # 晓 for 小
    rows.append(("c1", "Ivan Petrov", "Moscow", "Firefox", "macOS", LOGINS[1].format(d=2, h=2)))
    with src.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["customer_id", "name", "city", "browser", "os", "login_times"])
        w.writerows(rows)
    summary, _ = run_batch(src, tmp_path / "out.jsonl", load_settings(env={}), progress=False)
    assert summary.records == len(rows) and not summary.warnings
    cluster = {d["record_id"]: d["cluster_id"]
               for d in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    for i in range(len(PEOPLE)):
        assert cluster[f"a{i}"] == cluster[f"b{i}"], PEOPLE[i][0]
    assert len({cluster[f"a{i}"] for i in range(len(PEOPLE))}) == len(PEOPLE)  # no cross-person merges
    assert cluster["c0"] == cluster["a0"]  # 王晓明 / 王小明
    assert cluster["c1"] == cluster["a1"]  # Latin spelling of the Cyrillic name
