"""Adapting to a file the shipped models never saw: product codes, rarity-weighted title overlap, weights
fitted by reciprocal-best self-training, and the check of a shipped model against those weights."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from consumer.encoders.base import Rarity
from consumer.engine.frequencies import FrequencyTable
from consumer.engine.titles import code_stem, parse_title, product_codes, title_words
from consumer.learn.fellegi_sunter import Comparison
from consumer.learn.reciprocal import fit_reciprocal, one_of_each, reciprocal_best, refine_fit


def test_product_codes_join_hyphens_and_skip_quantities() -> None:
    assert product_codes("Sony Turntable - PSLX350H") == ("pslx350h",)
    assert product_codes("Sony PS-LX350H Belt-Drive Turntable") == ("pslx350h",)
    assert product_codes("Logitech V450 Nano Mouse - 910-000619") == ("v450", "910000619")
    assert product_codes("Samsung 46in 1080p LCD 500GB 2nd gen") == ()  # quantities, not codes
    assert product_codes("office 2007 version 3.0") == ()  # a year or a version is no part number
    assert product_codes("") == ()


def test_code_stem_drops_a_letter_suffix_only() -> None:
    assert code_stem("wfw8300swh") == "wfw8300"
    assert code_stem("yas71bk") == "yas71"
    assert code_stem("ln46a550") == ""  # ends in a digit: nothing to cut
    assert code_stem("a1b") == ""  # the stem would be too short to mean anything


def test_title_words_keep_numbers_and_order() -> None:
    assert title_words("Microsoft Office 2007 Basic (PC)") == ("microsoft", "office", "2007", "basic", "pc")
    assert title_words("QB POS 6.0 Basic") == ("qb", "pos", "6", "basic")  # 6.0 = 6


def test_a_capacity_is_read_as_the_binary_size_sellers_round_it_to() -> None:
    cap = lambda title: parse_title(title).attributes.get("cap")  # noqa: E731
    # one drive in decimal and binary units: one size
    assert cap("Nord 3 0.5tb") == cap("Nord 3 512 GB") == cap("SSD 500GB") == ("512",)
    assert cap("1 TB drive") == cap("1000GB") == cap("1024 GB") == cap("disque 1 To") == ("1024",)
    # sizes that are not a power of two rounded stay apart from their neighbours
    assert cap("480 GB SSD") == ("480",) and cap("120gb") == ("120",) and cap("128 GB") == ("128",)
    assert cap("1.5TB") == ("1500",) and cap("64Go") == ("64",)


def test_versions_are_written_one_way() -> None:
    one = title_words("Adobe Photoshop Elements v. 9.0")
    assert one == title_words("Adobe Photoshop Elements version 9") == title_words("adobe photoshop elements v9.0")
    assert one[-1] == "9"
    assert title_words("QuickBooks Pro 2008 ver. 3") == ("quickbooks", "pro", "2008", "3")
    # a model code that starts with v is no version
    assert "v10" in title_words("Transcend JetFlash V10 8GB") and product_codes("Logitech V450") == ("v450",)
    assert product_codes("Speck SeeThru Case - MB13-BLK-SEE-V2") == ("mb13blkseev2",)


def test_cubic_feet_is_a_volume_attribute() -> None:
    small, large = parse_title("LG 22.6 Cu.Ft. Refrigerator"), parse_title("LG 25 cu ft Refrigerator")
    assert small.attributes["vol"] != large.attributes["vol"]


def test_pair_features_weigh_rare_keys_over_common_ones() -> None:
    table = FrequencyTable([Rarity("idf", lambda c: c["k"], pairwise=True)])
    common, rare = 11, 99
    population = np.array([[common, 1000 + i] for i in range(500)], np.uint32)
    table.observe({"k": population})
    table.observe({"k": np.array([[rare, 7], [rare, 8]], np.uint32)})
    a = {"k": np.array([[common, rare, 5], [common, rare, 5], [1, 2, 3], [0, 0, 0]], np.uint32)}
    b = {"k": np.array([[common, 6, 0], [rare, 9, 0], [1, 2, 3], [1, 2, 3]], np.uint32)}
    out = table.pair_features(a, b)["idf"]
    assert out[1] > 2 * out[0]  # sharing the rare key says far more than sharing the common one
    assert out[2] == pytest.approx(1.0)
    assert np.isnan(out[3])
    assert "idf" not in table.features(a, a)  # the first-record rarities leave pairwise ones out


def _pairs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Records 0..199 come in true pairs (2i, 2i+1); every record also has five sibling candidates that
    share a product family (high title overlap) but conflict on the code."""
    rows, left, right, truth = [], [], [], []
    for i in range(100):
        a, b = 2 * i, 2 * i + 1
        rows.append([1.0, rng.uniform(0.6, 1.0)])
        left.append(b)
        right.append(a)
        truth.append(True)
        for s in rng.choice(200, 5, replace=False):
            if s in (a, b):
                continue
            rows.append([0.0, rng.uniform(0.4, 0.9)])
            left.append(b)
            right.append(int(s))
            truth.append(False)
    return np.array(rows, np.float32), np.array(left), np.array(right), np.array(truth)


def test_reciprocal_fit_learns_that_a_code_conflict_is_evidence_against() -> None:
    x, left, right, truth = _pairs(np.random.default_rng(3))
    comps = [Comparison("code_match", (1.0, 0.7)), Comparison("title_idf", (0.8, 0.6, 0.4, 0.25))]
    model = fit_reciprocal(x, left, right, comps, vetoes={"code_match"})
    w = model.match_weight(x)
    assert (w[truth] > 0).mean() > 0.95
    assert (w[~truth] < 0).mean() > 0.95
    assert model.info["method"] == "reciprocal-best self-training"
    assert 0 < model.lam < 0.5


def test_reciprocal_fit_bounds_the_evidence_of_a_lower_similarity_level_but_not_of_a_conflict() -> None:
    # The training pairs are each record's most alike: true pairs with a middling title overlap are rare
    # among them by selection. Such a level may not weigh like a conflict the encoder declares.
    x, left, right, _ = _pairs(np.random.default_rng(5))
    comps = [Comparison("code_match", (1.0, 0.7)), Comparison("title_idf", (0.95, 0.6, 0.4, 0.25))]
    model = fit_reciprocal(x, left, right, comps, vetoes={"code_match"}, shrink=0.3)
    weight = {(r["comparison"], r["level"]): r["weight"] for r in model.explain()}
    lower = [weight[("title_idf", level)] for level in (">= 0.4", ">= 0.25", "else")]
    assert min(lower) >= np.log2(0.3) - 0.5  # a level the training pairs lack: about log2(shrink), renormalised
    assert weight[("code_match", "else")] < -3.5  # the declared conflict keeps its weight...
    undeclared = fit_reciprocal(x, left, right, comps, shrink=0.3)
    assert next(r["weight"] for r in undeclared.explain() if r["comparison"] == "code_match"
                and r["level"] == "else") > -2.5  # ...which an undeclared one would lose
    light = fit_reciprocal(x, left, right, comps, vetoes={"code_match"}, shrink=0.05)
    assert min(r["weight"] for r in light.explain() if r["comparison"] == "title_idf") < min(lower) - 1


def _groups(rng: np.random.Generator, size: int = 6,
            siblings: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Records in groups of `size` (one product offered by many shops: titles phrased apart, the code shared);
    each pair of a group is a candidate pair, and so are `siblings` a record (other groups' records: titles as
    alike, a conflicting code). Each pair is listed once."""
    n = 40 * size
    rows, left, right, truth = [], [], [], []
    for r in range(n):
        g = r // size
        for mate in range(r + 1, (g + 1) * size):
            rows.append([1.0, rng.uniform(0.5, 1.0)])
            left.append(r)
            right.append(mate)
            truth.append(True)
        for s in rng.choice([x for x in range(n) if x // size != g], siblings, replace=False):
            rows.append([0.0, rng.uniform(0.3, 0.9)])
            left.append(r)
            right.append(int(s))
            truth.append(False)
    return np.array(rows, np.float32), np.array(left), np.array(right), np.array(truth)


def test_reciprocal_fit_counts_a_groups_matches_by_em_where_a_conflict_tells_siblings_apart() -> None:
    # Reciprocal pairs are one a record: in a file of groups the prior they give is a fraction of the matches.
    x, left, right, truth = _groups(np.random.default_rng(6))
    comps = [Comparison("code_match", (1.0, 0.7)), Comparison("title_idf", (0.9, 0.8, 0.6, 0.4))]
    model = fit_reciprocal(x, left, right, comps, vetoes={"code_match"})
    refine_fit(model, x, comps, {"code_match"})
    assert model.info["em_iterations"] > 0
    assert model.info["lambda_reciprocal"] < truth.mean() / 5  # 0.0053 against 0.059
    assert 3 * model.info["lambda_reciprocal"] < model.lam < truth.mean()
    w = model.match_weight(x)
    assert (w[~truth] < 0).mean() > 0.99  # siblings stay apart: the conflict keeps its reciprocal estimate
    assert next(r["weight"] for r in model.explain() if r["comparison"] == "code_match"
                and r["level"] == "else") < -3.5
    # Without a comparison that tells siblings apart EM would find "same family": the reciprocal model stays.
    plain = fit_reciprocal(x, left, right, comps)
    refine_fit(plain, x, comps, set())
    assert plain.info["em_iterations"] == 0 and plain.info["lambda"] == plain.info["lambda_reciprocal"]
    assert (w[truth] > 0).mean() >= (plain.match_weight(x)[truth] > 0).mean()


def test_reciprocal_fit_leaves_out_a_comparison_most_pairs_lack() -> None:
    x, left, right, _ = _pairs(np.random.default_rng(4))
    brand = np.full((len(x), 1), np.nan, np.float32)
    brand[:10] = 1.0
    comps = [Comparison("code_match", (1.0, 0.7)), Comparison("title_idf", (0.8, 0.6)), Comparison("brand", (1.0,))]
    model = fit_reciprocal(np.hstack([x, brand]), left, right, comps)
    assert [c.feature for c in model.comparisons] == ["code_match", "title_idf"]
    assert model.info["left_out"] == ["brand"]


def test_either_of_takes_the_larger_probability_over_its_models_columns() -> None:
    from consumer.engine.fusion import EitherOf, LearnedModel, either_of

    class Const:
        def __init__(self, col: int) -> None:
            self.col = col

        def predict_proba(self, x: np.ndarray) -> np.ndarray:
            p = x[:, self.col]
            return np.stack([1 - p, p], axis=1)

    feats = ("f1", "f2", "f3")
    a = LearnedModel(Const(0), feats, {"used_features": ["f1"]})
    b = LearnedModel(Const(0), feats, {"used_features": ["f3", "f2"]})  # reads f3
    both = either_of([a, b], {"kind": "either"})
    assert isinstance(both.estimator, EitherOf)
    assert both.used_features == ("f1", "f3", "f2")
    x = np.array([[0.9, 0.1, 0.2], [0.1, 0.3, 0.8], [0.0, 0.0, 0.0]], np.float32)
    assert both.predict(x, both.columns_for(feats)).tolist() == pytest.approx([0.9, 0.8, 0.0], abs=1e-6)


def test_reciprocal_best_marks_pairs_that_are_each_others_best() -> None:
    w = np.array([5.0, 1.0, 4.0, 3.0])
    left, right = np.array([1, 2, 3, 3]), np.array([0, 0, 2, 0])
    assert reciprocal_best(w, left, right).tolist() == [True, False, True, False]


def _reciprocal_walk(weight: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The definition, walked pair by pair: each record's first pair in the stable best-first order."""
    best: dict[int, int] = {}
    for j in np.argsort(-weight, kind="stable"):
        for r in (int(left[j]), int(right[j])):
            best.setdefault(r, int(j))
    return np.array([best[int(a)] == j and best[int(b)] == j for j, (a, b) in enumerate(zip(left, right))], bool)


@pytest.mark.parametrize("seed", range(6))
def test_reciprocal_best_equals_the_walk_with_ties_and_missing_weights(seed: int) -> None:
    """Vectorised, it must mark the very pairs the walk marks: ties keep the earlier pair, NaN weights sort
    last, a record may sit on either side, and record numbers need not start at 0."""
    rng = np.random.default_rng(seed)
    n, records = 500, 60
    w = rng.integers(-3, 4, n).astype(float) if seed % 2 else rng.standard_normal(n)
    w[rng.integers(0, n, n // 10)] = np.nan
    left, right = rng.integers(0, records, n) + 7 * seed, rng.integers(0, records, n) + 7 * seed
    got = reciprocal_best(w, left, right)
    assert got.dtype == bool and got.tolist() == _reciprocal_walk(w, left, right).tolist()
    assert got.any() and not got.all()
    assert reciprocal_best(np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)).shape == (0,)


def _write_listings(path: Path, n_products: int = 90) -> Path:
    """A two-shop product file unlike the generator's: codes in the title, no brand, a few variants."""
    rng = np.random.default_rng(11)
    makers = ["Sony", "Canon", "Logitech", "Samsung", "Panasonic"]
    kinds = ["Camera", "Mouse", "Receiver", "Printer", "Headphones", "Speaker"]
    rows = []
    for i in range(n_products):
        maker, kind = makers[i % 5], kinds[(i // 5) % 6]
        code = f"{maker[:2].upper()}{rng.integers(100, 999)}{chr(65 + i % 26)}{i}"
        rows.append({"listing_id": f"a_{i}", "title": f"{maker} {kind} Series {i % 7} - {code}",
                     "description": "", "brand": "", "price": "", "currency": ""})
        rows.append({"listing_id": f"b_{i}", "title": f"{maker} {code[:2]}-{code[2:]} {kind}",
                     "description": "", "brand": "", "price": "", "currency": ""})
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _run(tmp_path: Path, adapt: str) -> tuple[dict, int]:
    from consumer.config import load_settings
    from consumer.io.batch import run_batch

    src = _write_listings(tmp_path / "shops.csv")
    cfg = tmp_path / "shops.toml"
    cfg.write_text(f'[profile]\nname = "listing"\nid_field = "listing_id"\n[fusion]\nadapt = "{adapt}"\n')
    out, clusters = tmp_path / "d.jsonl", tmp_path / "c.csv"
    summary, _ = run_batch(src, out, load_settings(str(cfg)), clusters_path=clusters, progress=False)
    assert len(out.read_text().splitlines()) == 180
    got = {r["record_id"]: r["cluster_id"] for r in csv.DictReader(clusters.open())}
    return summary.model, sum(got[f"a_{i}"] == got[f"b_{i}"] for i in range(90))


@pytest.mark.slow
def test_batch_checks_the_shipped_model_against_a_fit_to_the_file(tmp_path: Path) -> None:
    model, linked = _run(tmp_path, "auto")
    assert 0.0 <= model["agreement"] <= 1.0
    # the two agree on this easy file, so the shipped model is kept (and says why)
    assert model["adapted"] is (model["agreement"] < 0.5), model
    assert linked >= 80, linked


@pytest.mark.slow
def test_batch_uses_weights_fitted_to_the_file(tmp_path: Path) -> None:
    model, linked = _run(tmp_path, "always")
    assert model["adapted"] is True and model["method"] == "reciprocal-best self-training", model
    assert "unlike the shipped model" in model["note"]
    assert linked >= 80, linked


def test_a_fit_reads_the_brandless_title_overlap_only_beside_the_brand() -> None:
    """Of `title_idf` and `core_idf` a fit reads one: `core_idf` where the brand comparison is filled on
    enough candidate pairs to be read (`MIN_PRESENT`), else `title_idf` (the title's brand words are then the
    brand evidence)."""

    comps = [Comparison("brand", (1.0,)), Comparison("title_idf", (0.8,)), Comparison("core_idf", (0.8,))]
    rarities = [Rarity("title_idf", lambda c: c, pairwise=True),
                Rarity("core_idf", lambda c: c, pairwise=True, only_if=lambda a, b: a, otherwise="title_idf",
                       read_by="brand")]
    filled = np.array([[1.0, 0.5, 0.4]] * 6 + [[np.nan, 0.5, 0.4]] * 4)
    sparse = np.array([[1.0, 0.5, 0.4]] * 4 + [[np.nan, 0.5, 0.4]] * 6)
    assert one_of_each(comps, filled, [0, 1, 2], rarities) == [0, 2]
    assert one_of_each(comps, sparse, [0, 1, 2], rarities) == [0, 1]
    assert one_of_each(comps[1:], filled[:, 1:], [0, 1], rarities) == [0]  # no brand comparison at all


def test_answers_correct_one_title_overlap_of_two() -> None:
    """A correction by answers reads the title overlap its model reads, not both: they read one title, and
    a correction reading both weighed them against each other."""
    from consumer.learn.reciprocal import unread_twins

    rarities = [Rarity("title_idf", lambda c: c, pairwise=True),
                Rarity("core_idf", lambda c: c, pairwise=True, only_if=lambda a, b: a, otherwise="title_idf",
                       read_by="brand")]
    features = ("brand", "title_idf", "core_idf", "price")
    assert unread_twins(features, ("brand", "core_idf"), rarities) == (1,)
    assert unread_twins(features, ("title_idf", "price"), rarities) == (2,)  # the shipped model
    assert unread_twins(("brand", "title_idf"), ("title_idf",), rarities) == ()
    x = np.ones((3, 4), np.float32)
    from consumer.learn.reciprocal import unread_columns
    held = unread_columns(x, (2,))
    assert np.isnan(held[:, 2]).all() and not np.isnan(np.delete(held, 2, axis=1)).any() and not np.isnan(x).any()
    assert unread_columns(x, ()) is x
