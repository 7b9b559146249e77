"""Colour words a file's photos show to be one colour (`consumer.learn.slot_photos`, issue 37): a shade the
built-in table does not know ("Flamingo") stops conflicting with the colour it names ("Pink") where listings
differing only by the two words keep showing photos of one colour; two basic colours, and product lines
whatever their photos, stay conflicts."""

from __future__ import annotations

import numpy as np

from consumer.encoders.base import KeyedHasher
from consumer.engine.records import Record
from consumer.engine.titles import word_token
from consumer.learn.slot_photos import photo_spellings
from consumer.learn.variants import slot_keys

HASHER = KeyedHasher("k")
SLOTS = slot_keys({"pink": 0, "flamingo": 0, "red": 0, "glide": 1, "drift": 1}, HASHER)


def rec(title: str) -> Record:
    return Record(title, "", "", (), "", "", (), extra=(("title", title),))


def groups(rows: list[list[int]]) -> dict[str, int]:
    by_hash = {h: g for h, _, g in rows}
    return {w: by_hash[int(HASHER.get(word_token(w)))] for w in ("pink", "flamingo", "red", "glide", "drift")}


RECORDS = [rec(t) for t in ["Orbit 5 Case Pink", "Orbit 5 Case Flamingo", "Nova 2 Mug Pink", "Nova 2 Mug Flamingo",
                            "Orbit 5 Case Red", "Glide 5 Mug Red", "Drift 5 Mug Red", "Glide 7 Mug Blue",
                            "Drift 7 Mug Blue"]]


def test_words_whose_listings_show_one_colour_join_one_spelling_group() -> None:
    left, right = np.array([0, 2, 0, 5, 7]), np.array([1, 3, 4, 6, 8])
    share = np.array([0.95, 0.93, 0.30, 0.97, 0.96])  # pink/flamingo alike twice; pink/red apart; lines alike
    rows, joined = photo_spellings(SLOTS, RECORDS, left, right, share, bar=0.9, cut=0.75, hasher=HASHER)
    g = groups(rows)
    assert joined == 1 and g["pink"] == g["flamingo"]
    assert g["red"] != g["pink"]
    assert g["glide"] != g["drift"]  # product lines in one colour: no table colour among them, no join


def test_one_coincidence_or_photos_that_disagree_join_nothing() -> None:
    once, _ = photo_spellings(SLOTS, RECORDS, np.array([0]), np.array([1]), np.array([0.95]), 0.9, 0.75, HASHER)
    assert groups(once)["pink"] != groups(once)["flamingo"]
    left, right = np.array([0, 2, 0, 2]), np.array([1, 3, 1, 3])
    mixed, joined = photo_spellings(SLOTS, RECORDS, left, right, np.array([0.95, 0.93, 0.4, 0.5]), 0.9, 0.75,
                                    HASHER)
    assert joined == 0 and groups(mixed)["pink"] != groups(mixed)["flamingo"]


def test_photos_never_make_two_basic_colours_one() -> None:
    """A colour signature that cannot tell pink from red (both warm, one product's photos) votes them one
    colour again and again: the table knows them apart, so they stay a conflict; a shade seen with both
    joins the colour it is shown with more often, not both (which would join them through it)."""
    # pink/red x4 (0-4, 2-4 twice, 0-4), pink/flamingo x3 (0-1, 2-3, 1-0), red/flamingo x2 (4-1, 1-4)
    left, right = np.array([0, 2, 2, 0, 0, 2, 1, 4, 1]), np.array([4, 4, 4, 4, 1, 3, 0, 1, 4])
    records = [*RECORDS[:4], rec("Orbit 5 Case Red")]
    share = np.full(len(left), 0.95)
    rows, joined = photo_spellings(SLOTS, records, left, right, share, bar=0.9, cut=0.75, hasher=HASHER)
    g = groups(rows)
    assert g["pink"] != g["red"]
    assert g["flamingo"] == g["pink"] and joined == 1


def test_without_slots_nothing_changes() -> None:
    assert photo_spellings([], RECORDS, np.array([0]), np.array([1]), np.array([0.95]), 0.9, 0.75, HASHER) == ([], 0)


def test_a_refined_slot_makes_the_run_compare_again_instead_of_replaying_the_fit() -> None:
    """The fit pass compared its pairs with the slots before: once words are joined, its logged comparisons
    are not the run's, so the log keeps its columns and candidates but no longer its feature rows."""
    from types import SimpleNamespace

    from consumer.config import Settings
    from consumer.engine.replay import CandidateLog
    from consumer.learn.slot_photos import photo_slots

    settings = Settings()
    key = KeyedHasher(settings.encoders.hash_key)
    slots = slot_keys({"pink": 0, "flamingo": 0, "red": 0}, key)
    vec = SimpleNamespace(left=np.array([0, 2]), right=np.array([1, 3]), features=("title_tok", "image_colour"),
                          all_x=np.array([[1.0, 0.95], [1.0, 0.93]], np.float32))
    info = {"colour_cut": 0.75, "colours": {"same": 0.9}}
    log = CandidateLog(pairs={0: (np.array([1]), np.zeros((1, 2), np.float32))})
    out = photo_slots(slots, RECORDS, vec, info, settings, log)
    assert info["colours"]["joined"] == 1 and out != slots and log.pairs == {}
    untouched = CandidateLog(pairs={0: (np.array([1]), np.zeros((1, 2), np.float32))})
    assert photo_slots(slots, RECORDS, vec, {"colours": {}}, settings, untouched) == slots  # no colour bar
    assert untouched.pairs
