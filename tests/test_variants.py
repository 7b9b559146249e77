"""Variant slots learned from the file (issue 20, item 4): words outside the built-in tables that stand in one
another's place in otherwise identical titles are read as a conflicting attribute."""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from consumer.encoders.base import KeyedHasher
from consumer.encoders.title import TitleEncoder
from consumer.engine.records import Record
from consumer.engine.titles import word_token
from consumer.learn.variants import learn_variant_slots, slot_keys, spellings

FINISHES = ["Sand", "Brass", "Walnut", "Sage", "Terracotta", "Slate", "Ecru", "Moss"]
LINES = [f"{style} {kind}" for style in ("Harbor", "Marlow", "Nordic", "Vale", "Orchard", "Quarry")
         for kind in ("Linen Duvet Cover", "Ceramic Table Lamp", "Jute Rug", "Wool Cushion", "Glass Vase")]
TAGS = ["Sale", "Bestseller", "Gift Idea", "In Stock"]


def _catalogue(seed: int = 3) -> list[tuple[str, str]]:
    """(title, product): each line in 3 finishes, each product listed 1-3 times, copies rewritten (case,
    separators, a shop's tag line, an occasional typo)."""
    rng = random.Random(seed)
    rows = []
    for line in LINES:
        for finish in rng.sample(FINISHES, 3):
            product = f"{line}|{finish}"
            rows.append((f"{line} - {finish}", product))
            for _ in range(rng.randint(0, 2)):
                words = line.split()
                if rng.random() < 0.3:
                    k = rng.randrange(len(words))
                    w = words[k]
                    words[k] = w[0] + w[2] + w[1] + w[3:] if len(w) > 4 else w
                title = f"{' '.join(words)} ({finish})" if rng.random() < 0.5 else f"{finish} {' '.join(words)}"
                if rng.random() < 0.5:
                    title += f" | {rng.choice(TAGS)}"
                rows.append((title.lower() if rng.random() < 0.3 else title, product))
    return rows


def test_finishes_are_learned_as_one_slot_and_tags_and_typos_are_not() -> None:
    slots = learn_variant_slots(t for t, _ in _catalogue())
    finishes = {f.lower() for f in FINISHES}
    learned = {w for w in slots if w in finishes}
    assert len(learned) >= 6, slots
    assert len({slots[w] for w in learned}) == 1  # one slot: they stand in for one another
    assert not {"sale", "bestseller", "gift", "stock"} & set(slots)  # optional words are inserted, not substituted
    assert all(len(w) >= 3 and w.isalpha() for w in slots)


def test_no_repeated_substitution_no_slot() -> None:
    assert learn_variant_slots(["Sony Camera DSC-W120", "Canon Printer PIXMA", "Logitech Mouse M325"]) == {}
    assert learn_variant_slots([]) == {}


def test_spellings_of_one_word_never_fill_a_slot() -> None:
    assert spellings("pro", "professional") and spellings("marble", "marlbe") and spellings("grey", "gray")
    assert not spellings("sand", "navy") and not spellings("brass", "black")


def _encoder(slots: dict[str, int]) -> TitleEncoder:
    from consumer.config import Settings
    from consumer.encoders.static_text import make_text_encoder

    return TitleEncoder(make_text_encoder(Settings().encoders), "k", slot_keys(slots, KeyedHasher("k")))


def _rec(title: str) -> Record:
    return Record("x", "", "", (), "", "", (), extra=(("title", title),))


def test_a_learned_slot_conflict_is_a_disagreeing_attribute() -> None:
    enc = _encoder({"sand": 0, "brass": 0, "warm": 1, "cool": 1})
    a = enc.encode([_rec(t) for t in ["Harbor Duvet Cover - Sand", "Lamp Warm White", "Rug Matte Black",
                                      "Harbor Duvet Cover Sand", "Harbor Duvet Cover"]])
    b = enc.encode([_rec(t) for t in ["Harbor Duvet Cover - Navy Brass", "Lamp Cool White", "Rug Black",
                                      "harbor duvet cover (sand)", "Harbor Duvet Cover - Brass"]])
    assert enc.slot_conflicts(a, b).tolist() == [1, 1, 0, 0, 0]  # a side without the slot is no conflict
    feats = enc.compare(a, b)
    assert feats["variant_agree"][0] == 0.0 and feats["attr_agree"][0] == 0.0
    assert feats["variant_agree"][1] == 0.5  # white agrees, warm/cool does not
    assert np.isnan(feats["variant_agree"][4])  # nothing stated on both sides: unknown, as before


def test_two_spellings_of_one_word_in_a_slot_do_not_conflict() -> None:
    enc = _encoder({"pro": 0, "professional": 0, "standard": 0})
    a = enc.encode([_rec("Visual Studio Professional 2005"), _rec("Visual Studio Professional 2005")])
    b = enc.encode([_rec("Visual Studio Pro 2005"), _rec("Visual Studio Standard 2005")])
    assert enc.slot_conflicts(a, b).tolist() == [0, 1]


def test_one_colour_in_two_languages_in_a_slot_does_not_conflict() -> None:
    """A file whose sellers write "Blau" for "Blue" puts both in its colour slot beside the shades it uses;
    the built-in table says they are one colour, so the slot does not make them two products."""
    enc = _encoder({"blue": 0, "blau": 0, "flamingo": 0, "red": 0, "rot": 0})
    a = enc.encode([_rec("Glide 5X Mug Blue"), _rec("Glide 5X Mug Blue"), _rec("Glide 5X Mug Rot")])
    b = enc.encode([_rec("Glide 5X Mug Blau"), _rec("Glide 5X Mug Flamingo"), _rec("Glide 5X Mug Blau")])
    assert enc.slot_conflicts(a, b).tolist() == [0, 1, 1]


def _joined(slots: dict[str, int], *groups: tuple[str, ...]) -> TitleEncoder:
    """An encoder whose slot rows put each of `groups` in one spelling group (as the photos join them)."""
    from consumer.config import Settings
    from consumer.encoders.static_text import make_text_encoder

    hasher = KeyedHasher("k")
    rows = slot_keys(slots, hasher)
    spelling = {int(hasher.get(word_token(w))): n + 1000 for n, words in enumerate(groups) for w in words}
    rows = [[h, slot, spelling.get(h, g)] for h, slot, g in rows]
    return TitleEncoder(make_text_encoder(Settings().encoders), "k", rows)


def test_a_shade_the_file_joins_to_a_basic_colour_is_that_colour() -> None:
    """The table lists "Charcoal" as a colour of its own; a file whose photos join it to "Black" reads the
    two as one colour, so the title's decisive colour conflict goes too, not only the slot's. Two basic
    colours in one group (the photos could not tell them apart) alias nothing."""
    slots = {"black": 0, "charcoal": 0, "red": 0, "pink": 0, "rose": 0}
    plain = _encoder(slots)
    joined = _joined(slots, ("black", "charcoal"), ("red", "pink", "rose"))
    left = [_rec(t) for t in ["Flux 6S Case Black", "Flux 6S Case Charcoal", "Flux 6S Case Red", "Flux 6S Case Rose"]]
    right = [_rec(t) for t in ["Flux 6S Case Charcoal", "Flux 6S Case Red", "Flux 6S Case Pink", "Flux 6S Case Red"]]
    before = plain.compare(plain.encode(left), plain.encode(right))
    after = joined.compare(joined.encode(left), joined.encode(right))
    assert before["variant_agree"][0] == 0.0 and before["colour_agree"][0] == 0.0
    assert after["variant_agree"][0] == 1.0 and after["colour_agree"][0] == 1.0
    assert after["colour_agree"][1:].tolist() == [0.0, 0.0, 0.0]  # charcoal/red; red/pink; rose is no alias


def test_without_learned_slots_nothing_changes() -> None:
    enc = _encoder({})
    a = enc.encode([_rec("Harbor Duvet Cover - Sand")])
    b = enc.encode([_rec("Harbor Duvet Cover - Brass")])
    assert enc.slot_conflicts(a, b).tolist() == [0] and enc.variant_slots == 0
    assert np.isnan(enc.compare(a, b)["variant_agree"][0])


def _write(path: Path) -> dict[str, str]:
    """800 listings of `benchmarks/foreign_listings.py` (home goods in finishes no table knows)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from foreign_listings import generate

    rows, truth = generate(800, seed=5)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return truth


def _false_merges(tmp_path: Path, learn: bool) -> tuple[int, dict]:
    """Pairs of one final cluster that are one line, material and type in two finishes (by the truth), and the
    run's model entry. Other false pairs are left out: with the file's variant words the
    fit also counts the file's matches by EM (`refine_fit`), which moves precision and recall on their own."""
    from consumer.config import load_settings
    from consumer.io.batch import run_batch

    truth = _write(tmp_path / "home.csv")
    cfg = tmp_path / "home.toml"
    cfg.write_text('[profile]\nname = "listing"\nid_field = "listing_id"\n'
                   f'[fusion]\nlearn_variants = {str(learn).lower()}\n')
    out, clusters = tmp_path / "d.jsonl", tmp_path / "c.csv"
    summary, _ = run_batch(tmp_path / "home.csv", out, load_settings(str(cfg)), clusters_path=clusters,
                           progress=False)
    got = {r["record_id"]: r["cluster_id"] for r in csv.DictReader(clusters.open())}
    ids = sorted(got)

    def finishes(a: str, b: str) -> bool:  # entities "line|material|type|finish|size": one thing, two finishes
        x, y = truth[a].split("|"), truth[b].split("|")
        return x[3] != y[3] and x[:3] == y[:3]

    wrong = sum(got[a] == got[b] and finishes(a, b) for i, a in enumerate(ids) for b in ids[i + 1:])
    return wrong, summary.model


@pytest.mark.slow
def test_batch_learns_the_files_variant_words_and_stops_merging_finishes(tmp_path: Path) -> None:
    with_slots, model = _false_merges(tmp_path, learn=True)
    assert model.get("variant_words", 0) >= 6, model
    without, model_off = _false_merges(tmp_path, learn=False)
    assert model_off["variant_words"] == 0
    assert with_slots < without, (with_slots, without)


@pytest.mark.slow
def test_a_fitted_model_file_carries_its_variant_words_to_the_stream(tmp_path: Path) -> None:
    from consumer.config import load_settings
    from consumer.engine.fusion import LearnedModel
    from consumer.io.artifacts import build_pipeline, load_image_encoder, load_text_encoder
    from consumer.io.batch import iter_records
    from consumer.learn.unsupervised import fit_unsupervised

    _write(tmp_path / "home.csv")
    cfg = tmp_path / "home.toml"
    cfg.write_text('[profile]\nname = "listing"\nid_field = "listing_id"\n')
    settings = load_settings(str(cfg))
    records = [r for _, r in iter_records(tmp_path / "home.csv", settings) if isinstance(r, Record)]
    text, image = load_text_encoder(settings), load_image_encoder(settings)
    fitted = fit_unsupervised(records, settings, text, image_encoder=image)
    assert fitted.meta["variant_words"] >= 6 and len(fitted.meta["variant_slots"]) == fitted.meta["variant_words"]
    fitted.save(tmp_path / "m.pkl")
    manifest = (tmp_path / "m.json").read_text().lower()
    assert "sand" not in manifest and "brass" not in manifest  # keyed hashes only
    pipe = build_pipeline(settings, text_encoder=text, image_encoder=image, model=LearnedModel.load(tmp_path / "m.pkl"))
    title = next(e for e in pipe.encoders if isinstance(e, TitleEncoder))
    assert title.variant_slots == fitted.meta["variant_words"]
    from consumer.learn.unsupervised import explain_model

    assert f"variant words learned from the file: {fitted.meta['variant_words']} in" in explain_model(fitted)


@pytest.mark.slow
def test_a_model_corrected_by_labels_keeps_the_files_variant_words(tmp_path: Path) -> None:
    from consumer.config import load_settings
    from consumer.learn.label_session import build_pool, fit_labels

    _write(tmp_path / "home.csv")
    cfg = tmp_path / "home.toml"
    cfg.write_text('[profile]\nname = "listing"\nid_field = "listing_id"\n')
    pool = build_pool(tmp_path / "home.csv", load_settings(str(cfg)))
    slots = pool.base.meta.get("variant_slots")
    assert slots, pool.base.meta.keys()
    fit = fit_labels(pool, [], validate=False)
    assert fit.model.meta["variant_slots"] == slots and "variant_slots" not in fit.model.meta["base"]
