"""The `person` profile without labels: address comparison, Fellegi-Sunter fitting, model artifact, CLI.

The end-to-end test uses a small FEBRL-like file made here (its own name and street lists, FEBRL's kinds
of corruption: typos, abbreviations, missing values, swapped name fields), so CI needs no FEBRL download;
benchmarks/febrl.py measures the real FEBRL files.
"""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from person_fit_cost import typo  # noqa: E402  (the benchmark's error model: one copy)

from consumer.cli import main
from consumer.config import load_settings
from consumer.encoders.address import AddressEncoder, street_canonical
from consumer.encoders.person import PersonEncoder, dob_canonical
from consumer.engine.fusion import LearnedModel, learned_thresholds
from consumer.engine.records import parse_record
from consumer.evaluation.evaluate import cluster_scores
from consumer.io.batch import run_batch
from consumer.learn.unsupervised import EM_OPERATING_POINT

GIVEN = ["oliver", "charlotte", "jack", "amelia", "william", "isla", "noah", "mia", "thomas", "grace", "lucas",
         "chloe", "henry", "zoe", "james", "ruby", "ethan", "ella", "samuel", "emily"]
SURNAMES = ["nguyen", "kowalski", "abernethy", "papadopoulos", "fitzgerald", "okonkwo", "lindqvist", "moretti",
            "harrington", "tanaka", "brennan", "castellano", "whitfield", "sandoval", "mcallister", "dubois",
            "ferreira", "henderson", "yamamoto", "kaczmarek", "oconnell", "villanueva", "petrovic", "larsen"]
STREETS = ["wattle", "banksia", "kurrajong", "jacaranda", "ironbark", "bottlebrush", "grevillea", "boronia",
           "waratah", "melaleuca", "casuarina", "callistemon"]
TYPES = [("street", "st"), ("road", "rd"), ("avenue", "ave"), ("crescent", "cres"), ("place", "pl")]
SUBURBS = ["kensington", "brunswick", "footscray", "paddington", "toowong", "glenelg", "fremantle", "sandy bay",
           "belconnen", "parramatta", "st kilda", "mount lawley"]
STATES = ["nsw", "vic", "qld", "wa", "sa", "tas", "act"]


def febrl_like(path: Path, n_people: int = 300, seed: int = 3,
               sizes: tuple[int, ...] = (1, 1, 2, 2, 3)) -> dict[str, str]:
    """A person file with 1-3 records per person (drawn from `sizes`); returns the truth (id -> person)."""
    rng = random.Random(seed)
    rows, truth = [], {}
    for p in range(n_people):
        street, (typ, abbr) = rng.choice(STREETS), rng.choice(TYPES)
        base = {"given_name": rng.choice(GIVEN), "surname": rng.choice(SURNAMES),
                "street_number": str(rng.randint(1, 250)), "address_1": f"{street} {typ}",
                "address_2": rng.choice(["", "", "rosedale", "unit 4", "the elms"]), "suburb": rng.choice(SUBURBS),
                "postcode": str(rng.randint(2000, 7999)), "state": rng.choice(STATES)}
        for k in range(rng.choice(sizes)):
            rec = dict(base)
            if k:
                for _ in range(rng.randint(1, 3)):
                    what = rng.random()
                    field = rng.choice(["given_name", "surname", "address_1", "suburb", "street_number",
                                        "postcode", "address_2"])
                    if what < 0.5:
                        rec[field] = typo(rng, rec[field])
                    elif what < 0.7:
                        rec[field] = ""
                    elif what < 0.85:
                        rec["address_1"] = f"{street} {abbr}"
                    else:
                        rec["given_name"], rec["surname"] = rec["surname"], rec["given_name"]
            rid = f"rec-{p}-{k}"
            rows.append({"id": rid, **rec})
            truth[rid] = str(p)
    rng.shuffle(rows)
    _write_rows(path, rows)
    return truth


def _write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _pair(enc, row_a: dict[str, str], row_b: dict[str, str]) -> dict[str, float]:  # noqa: ANN001
    s = load_settings(profile="person", env={})
    recs = [parse_record({"id": str(i), **r}, s.profile, s.limits) for i, r in enumerate((row_a, row_b))]
    cols = enc.encode(recs)
    a = {k: v[:1] for k, v in cols.items()}
    b = {k: v[1:] for k, v in cols.items()}
    return {k: float(v[0]) for k, v in enc.compare(a, b).items()}


def test_street_abbreviations_fold_to_one_spelling() -> None:
    assert street_canonical("42 Main St.") == "42 main street"
    assert street_canonical("St Kilda Rd") == "saint kilda road"
    assert street_canonical("wattle cres") == street_canonical("Wattle Crescent")
    assert dob_canonical("1990-12-09") == dob_canonical("09/12/1990") == "19901209"


def test_address_comparison_abbreviation_typo_and_missing() -> None:
    enc = AddressEncoder("k")
    f = _pair(enc, {"street_number": "12", "address_1": "wattle street", "suburb": "brunswick", "postcode": "3056"},
              {"street_number": "12", "address_1": "wattle st", "suburb": "brunswik", "postcode": ""})
    assert f["addr_number"] == 1.0 and f["addr_street"] == 1.0  # an abbreviation is no difference
    assert f["addr_suburb"] == pytest.approx(0.9)  # one typo
    assert np.isnan(f["addr_postcode"]) and np.isnan(f["addr_line2"])  # missing: no evidence, not 0
    g = _pair(enc, {"street_number": "12", "postcode": "3056"}, {"street_number": "21", "postcode": "4056"})
    assert g["addr_number"] == pytest.approx(0.9) and g["addr_postcode"] == pytest.approx(0.9)  # one edit
    h = _pair(enc, {"street_number": "12", "postcode": "3056"}, {"street_number": "7", "postcode": "2600"})
    assert h["addr_number"] == 0.0 and h["addr_postcode"] == 0.0


def test_person_fields_swapped_names_and_dob() -> None:
    enc = PersonEncoder("k")
    f = _pair(enc, {"given_name": "oliver", "surname": "nguyen", "date_of_birth": "19800312"},
              {"given_name": "nguyen", "surname": "oliver", "date_of_birth": "19801203"})
    assert f["given_name"] == 1.0 and f["surname"] == 1.0  # swapped fields compared crossed
    assert f["dob"] == pytest.approx(0.9)  # day and month swapped
    assert np.isnan(f["phone"])
    f = _pair(enc, {"given_name": "holly"}, {"given_name": "thomson", "surname": "holly"})
    assert f["given_name"] == 1.0 and np.isnan(f["surname"])  # swapped, one side's other field empty
    f = _pair(enc, {"surname": "thomson"}, {"given_name": "thomsen", "surname": "holly"})
    assert np.isnan(f["given_name"]) and f["surname"] == pytest.approx(0.9)
    f = _pair(enc, {"given_name": "holly", "surname": "smith"}, {"given_name": "thomson", "surname": "holly"})
    assert f["given_name"] < 0.88  # the crossed reading must fit both fields that can be read: not swapped


@pytest.mark.parametrize(("a", "b", "level"), [
    ("T.", "Thomas", 0.7),  # an initial: related (the third level), not a different name
    ("wolf", "Wolfgang", 0.7),  # a shortened name
    ("rob", "robert", 0.7),
    ("W.", "Thomas", 0.0),  # another initial: different
    ("thomas", "thomas", 1.0),
    ("peter", "petra", 0.9),  # one edit apart stays one edit apart
    ("jens martin", "jens", None),  # several words: the trigram overlap decides, as before
])
def test_an_initial_or_a_shortened_given_name_is_related(a: str, b: str, level: float | None) -> None:
    """"T." / "Thomas" and "Wolf" / "Wolfgang" compared by trigrams were "else" (-4 to -10 bits), as if two
    different names; now they are the "related" level (`GIVEN_SHORTENED`), whose weight the fit reads from
    the file, in either order."""
    enc = PersonEncoder("k")
    for x, y in ((a, b), (b, a)):
        f = _pair(enc, {"given_name": x, "surname": "x"}, {"given_name": y, "surname": "x"})
        if level is None:
            assert f["given_name"] < 0.7
        else:
            assert f["given_name"] == pytest.approx(level)


@pytest.mark.parametrize(("a", "b", "one_edit"), [
    ("rowe", "rwoe", True),  # two neighbours swapped in a 4-letter name: one shared trigram of five
    ("luca", "lca", True),  # a letter dropped from a short name
    ("al", "la", True),
    ("kaur", "kuar", True),
    ("elizabeth", "elzizabeth", True),  # a letter added
    ("christopher", "christophre", True),
    ("rowe", "rose", True),  # one typo: the level says typo, the rarer name's count says which
    ("christopher", "cristopher", True),
    ("christopher", "christina", False),
    ("anna", "hannah", False),
])
def test_names_one_edit_apart_whatever_their_length(a: str, b: str, one_edit: bool) -> None:
    """One edit (a typo, a letter dropped or added, two neighbours swapped) is the one-edit level for short
    names as for long ones: the test was skipped below a trigram overlap of 0.2, which a swap in a 4-letter
    name (one shared trigram of five) or any typo in a 2-letter one does not reach."""
    f = _pair(PersonEncoder("k"), {"given_name": a, "surname": "x"}, {"given_name": b, "surname": "x"})
    assert (f["given_name"] == pytest.approx(0.9)) is one_edit, f["given_name"]


@pytest.mark.parametrize(("a", "b", "level"), [
    ("1981-12-15", "1982-01-14", 0.6),  # a few weeks off, across a new year: the next month
    ("1983-03-07", "1983-04-08", 0.6),
    ("1981-12-15", "1981-12-16", 0.9),  # one typo
    ("1981-12-15", "1981-06-02", 0.5),  # the same year only
    ("1994-04-24", "1995-05-23", 0.4),  # the next year
    ("1981-12-15", "1979-12-15", 0.7),  # two of three parts
    ("1981-12-15", "1970-07-01", 0.0),
])
def test_dates_of_birth_a_month_or_a_year_apart(a: str, b: str, level: float) -> None:
    """Splink's "within a month / a year" levels, from keyed hashes of the month and year numbers."""
    enc = PersonEncoder("k")
    assert _pair(enc, {"given_name": "x", "date_of_birth": a}, {"given_name": "x", "date_of_birth": b})["dob"] == \
        pytest.approx(level)
    assert _pair(enc, {"given_name": "x", "date_of_birth": b}, {"given_name": "x", "date_of_birth": a})["dob"] == \
        pytest.approx(level)


def test_batch_fits_itself_without_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "people.csv"
    truth = febrl_like(src)
    settings = load_settings(profile="person", env={})
    model_path = tmp_path / "fitted.pkl"
    summary, pipe = run_batch(src, tmp_path / "out.jsonl", settings, progress=False, save_model=model_path)
    assert summary.model["fusion"].startswith("fellegi-sunter")
    scores = cluster_scores(pipe.assignments(), truth)
    pipe.close()
    assert scores.f1 >= 0.9, scores
    # The fitted weights are an artifact like any model: sha256 manifest, loadable for the service.
    manifest = json.loads(model_path.with_suffix(".json").read_text())
    assert manifest["kind"] == "fellegi-sunter" and len(manifest["sha256"]) == 64
    model = LearnedModel.load(model_path)
    assert "addr_street" in model.used_features and "dob" not in model.used_features  # no DOB column here
    # A service loading the fitted weights decides where the batch did (EM_OPERATING_POINT, not 0.5 / 0.25).
    assert learned_thresholds(settings.fusion, model) == (EM_OPERATING_POINT["match"], EM_OPERATING_POINT["possible"])
    # ... and what it learned is printed per comparison level.
    assert main(["explain-model", str(model_path)]) == 0
    table = capsys.readouterr().out
    assert "addr_street" in table and "exact" in table and "lambda" in table and "group sizes:" in table
    exact = [r for r in model.estimator.explain() if r["comparison"].startswith("addr_postcode")]
    assert exact[0]["weight"] > 3 > exact[-1]["weight"]  # agreeing postcodes: evidence; differing: against


def test_fit_command_then_stream_with_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "people.csv"
    truth = febrl_like(src, seed=5)
    out = tmp_path / "m.pkl"
    assert main(["fit", str(src), "--profile", "person", "--out", str(out)]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["kind"] == "fellegi-sunter" and meta["labels"] is False
    settings = load_settings(profile="person", env={"DEDUP_FUSION__LEARNED_MODEL": str(out)})
    summary, pipe = run_batch(src, tmp_path / "o.jsonl", settings, progress=False)
    assert summary.model == {}  # the given model is used, nothing fitted
    assert pipe.fuser.version.startswith("learned:")
    assert cluster_scores(pipe.assignments(), truth).f1 >= 0.9
    pipe.close()


def test_a_person_model_fitted_by_an_earlier_release_still_runs(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A model file written before the rarer-name counts existed (no `tf_near`, no such features) is read
    as it was fitted: the pipeline's new columns are left out, not refused, and its decisions are those of
    its own weights (the one-edit level unadjusted)."""
    import dataclasses

    src = tmp_path / "people.csv"
    truth = febrl_like(src, seed=5)
    new = tmp_path / "new.pkl"
    assert main(["fit", str(src), "--profile", "person", "--out", str(new)]) == 0
    capsys.readouterr()
    model = LearnedModel.load(new)
    fs = model.estimator
    assert any(c.tf_near for c in fs.comparisons)
    fs.comparisons = tuple(dataclasses.replace(c, tf_near=None) for c in fs.comparisons)
    fs.near_count = {}
    dropped = {"given_rarer", "surname_rarer"}
    meta = {**model.meta, "used_features": [f for f in model.used_features if f not in dropped]}
    old = tmp_path / "old.pkl"
    LearnedModel(fs, tuple(f for f in model.features if f not in dropped), meta).save(old)
    settings = load_settings(profile="person", env={"DEDUP_FUSION__LEARNED_MODEL": str(old)})
    summary, pipe = run_batch(src, tmp_path / "o.jsonl", settings, progress=False)
    assert pipe.fuser.version.startswith("learned:")
    assert cluster_scores(pipe.assignments(), truth).f1 >= 0.9
    pipe.close()


def test_tiny_file_falls_back_to_rule_fusion(tmp_path: Path) -> None:
    src = tmp_path / "p.csv"
    src.write_text("id,given_name,surname,suburb,postcode\n1,Robert,Smith,Carlton,3053\n"
                   "2,Bob,Smith,Carlton,3053\n3,Alice,Nguyen,Richmond,3121\n")
    summary, pipe = run_batch(src, tmp_path / "o.jsonl", load_settings(profile="person", env={}), progress=False)
    assert summary.model["fusion"] == "rule" and pipe.fuser.mode == "rule"
    d = pipe.assignments()
    pipe.close()
    assert d["1"] == d["2"] != d["3"]


def test_labels_still_train_a_model_for_the_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`dedup train` takes labels when a user has some; `explain-model` says what kind of model it is."""
    src, truth_csv = tmp_path / "people.csv", tmp_path / "truth.csv"
    truth = febrl_like(src, seed=7)
    truth_csv.write_text("id,entity_id\n" + "".join(f"{r},{e}\n" for r, e in truth.items()))
    model = tmp_path / "gbt.pkl"
    assert main(["train", str(src), str(truth_csv), "--profile", "person", "--out", str(model)]) == 0
    capsys.readouterr()
    settings = load_settings(profile="person", env={"DEDUP_FUSION__LEARNED_MODEL": str(model)})
    summary, pipe = run_batch(src, tmp_path / "o.jsonl", settings, progress=False)
    assert summary.model == {} and cluster_scores(pipe.assignments(), truth).f1 >= 0.9
    pipe.close()
    assert main(["explain-model", str(model)]) == 0
    assert "trained classifier" in capsys.readouterr().out


def test_eval_reports_the_fitted_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, truth_csv = tmp_path / "people.csv", tmp_path / "truth.csv"
    truth = febrl_like(src, seed=11, n_people=150)
    truth_csv.write_text("id,entity_id\n" + "".join(f"{r},{e}\n" for r, e in truth.items()))
    assert main(["eval", str(src), str(truth_csv), "--profile", "person", "--no-baselines"]) == 0
    out = capsys.readouterr().out
    assert "learned fusion (Fellegi-Sunter fitted without labels)" in out
    assert "Fellegi-Sunter match weights" in out and "addr_postcode" in out


def test_person_columns_survive_the_state_store_round_trip(tmp_path: Path) -> None:
    """The service persists every record's columns and rebuilds from them: the new columns must too."""
    from consumer.engine.records import Record
    from consumer.io.artifacts import build_pipeline
    from consumer.io.batch import iter_records

    src = tmp_path / "people.csv"
    febrl_like(src, n_people=40)
    settings = load_settings(profile="person", env={"DEDUP_FUSION__MODE": "rule"})
    records = [r for _, r in iter_records(src, settings) if isinstance(r, Record)]
    pipe = build_pipeline(settings)
    pipe.process(records)
    states = pipe.snapshot(range(len(pipe.store)))
    again = build_pipeline(settings, text_encoder=pipe.text)
    assert again.restore(states) == len(records)
    for name in ("addr_street_dels", "given_h", "dob_dels", "addr_vec"):
        assert np.array_equal(again.store.column(name), pipe.store.column(name))
    assert again.assignments() == pipe.assignments()
    pipe.close()
    again.close()


def few_columns_file(path: Path, n_people: int = 1800, dup_share: float = 0.1, seed: int = 13) -> dict[str, str]:
    """Given name, surname and date of birth only (RLdata-like), surnames drawn Zipf-like so that a few
    are very common, and `dup_share` of the people entered twice with one error: a typo in a name, or a
    date of birth with a digit or one of its parts wrong."""
    rng = random.Random(seed)
    surnames = SURNAMES + [s + suffix for s in SURNAMES for suffix in ("son", "er", "i")]
    weights = [1.0 / (i + 1) for i in range(len(surnames))]
    rows, truth = [], {}
    for p in range(n_people):
        year, month, day = rng.randint(1930, 2005), rng.randint(1, 12), rng.randint(1, 28)
        base = {"given_name": rng.choice(GIVEN), "surname": rng.choices(surnames, weights)[0],
                "date_of_birth": f"{year}-{month:02d}-{day:02d}"}
        copies = [base]
        if rng.random() < dup_share:
            dup = dict(base)
            what = rng.random()
            if what < 0.5:
                field = rng.choice(["given_name", "surname"])
                dup[field] = typo(rng, dup[field])
            elif what < 0.75:
                digits = list(dup["date_of_birth"].replace("-", ""))
                i = rng.choice([3, 5, 7])
                digits[i] = str((int(digits[i]) + rng.randint(1, 8)) % 10)
                d = "".join(digits)
                dup["date_of_birth"] = f"{d[:4]}-{d[4:6]}-{d[6:]}"
            else:
                dup["date_of_birth"] = f"{rng.randint(1930, 2005)}-{month:02d}-{day:02d}"  # the year wrong
            copies.append(dup)
        for k, rec in enumerate(copies):
            rid = f"p{p}-{k}"
            rows.append({"id": rid, **rec})
            truth[rid] = str(p)
    rng.shuffle(rows)
    _write_rows(path, rows)
    return truth


def test_few_columns_and_common_surnames_make_no_giant_cluster(tmp_path: Path) -> None:
    """RLdata10000's shape (three columns, common surnames, 10% duplicates with one error each), where the
    old candidate-pair fit collapsed into a 427-record cluster: the fit passes its checks, says the file
    has few comparisons, and the clusters are pairs."""
    src = tmp_path / "people.csv"
    truth = few_columns_file(src)
    summary, pipe = run_batch(src, tmp_path / "out.jsonl", load_settings(profile="person", env={}), progress=False)
    scores = cluster_scores(pipe.assignments(), truth)
    pipe.close()
    assert summary.model["fit"] == "ok" and summary.model["reasons"] == []
    assert any("only 3 comparisons" in n for n in summary.model["notes"])
    assert 0.05 < summary.model["matches_per_record"] < 0.15
    assert scores.largest_cluster <= 3 and summary.largest_cluster <= 3
    assert scores.f1 >= 0.85, scores  # 20 given names: many namesakes a digit apart in date of birth


def test_a_given_model_on_an_unlike_file_is_flagged(tmp_path: Path) -> None:
    """Weights fitted on a file with addresses, run on one without: the summary says the file looks unlike
    the fitted one and which comparisons are missing (a model file given with --model is otherwise silent)."""
    fitted, other = tmp_path / "with-address.csv", tmp_path / "names-dob.csv"
    febrl_like(fitted, seed=5)
    few_columns_file(other, n_people=400)
    model = tmp_path / "m.pkl"
    assert main(["fit", str(fitted), "--profile", "person", "--out", str(model)]) == 0
    settings = load_settings(profile="person", env={"DEDUP_FUSION__LEARNED_MODEL": str(model)})
    summary, pipe = run_batch(other, tmp_path / "o.jsonl", settings, progress=False)
    pipe.close()
    notes = summary.model["notes"]
    assert any(n.startswith("addr_street has no values in this file") for n in notes)
    assert notes[-1].startswith("this file looks unlike the one the model was fitted on")


def test_a_person_file_imports_no_scikit_learn_or_faker(tmp_path: Path) -> None:
    """A person file is fitted anyway (the shipped CRM model cannot read it), so `dedup batch` must not pay
    for importing scikit-learn to find that out, nor Faker, which only the generators use (1.2-2.8 s of a
    10,000-record run)."""
    src = tmp_path / "people.csv"
    febrl_like(src, n_people=120)
    code = ("import sys; from consumer.cli.main import main; "
            f"rc = main(['batch', {str(src)!r}, '--profile', 'person', '--out', {str(tmp_path / 'o.jsonl')!r}, '-q']); "
            "print(rc, 'sklearn' in sys.modules, 'faker' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.split()[-3:] == ["0", "False", "False"], out.stdout + out.stderr


@pytest.mark.parametrize("profile", ["crm-signup", "listing"])
def test_a_packaged_manifest_lists_the_features_its_model_was_trained_on(profile: str) -> None:
    """`LearnedModel.packaged_fits` reads the manifest instead of unpickling the model: the two must agree."""
    from importlib import resources

    from consumer.engine.fusion import PACKAGED_MODELS

    stem = PACKAGED_MODELS.get(profile, "fusion-default")
    manifest = json.loads((resources.files("consumer") / "data" / f"{stem}.json").read_bytes())
    model = LearnedModel.load(None, profile)
    assert tuple(manifest["features"]) == model.features
    assert tuple(manifest["used_features"]) == model.used_features
