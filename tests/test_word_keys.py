"""Title and description words are counted and compared up to a swap of their letters (`word_key`): a typo'd
copy shares its rare words with the original; short words, numbers and codes stay exact; hashes keyed by an
earlier version (a saved model's variant words) are recognised and left out, not read as words."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from harness.listing_pairs import listing_features

from consumer.engine.pipeline import _model_slots
from consumer.engine.titles import WORD_KEYING, word_key


@pytest.mark.parametrize(("typo", "word"), [("orchrad", "orchard"), ("blaknet", "blanket"), ("ikngston", "kingston"),
                                            ("dvuet", "duvet"), ("etxreme", "extreme"), ("shdae", "shade")])
def test_swapped_letters_are_one_word(typo: str, word: str) -> None:
    assert word_key(typo) == word_key(word)


@pytest.mark.parametrize(("a", "b"), [("form", "from"), ("1080", "1800"), ("a315", "a351"), ("gt430", "gt340"),
                                      ("wh1000xm4", "wh1000mx4"), ("black", "blank")])
def test_short_words_numbers_and_codes_stay_exact(a: str, b: str) -> None:
    """Four-letter anagrams are common words; a code or number with two characters swapped is another product."""
    assert word_key(a) != word_key(b)


def test_a_typod_copy_shares_its_rare_words() -> None:
    """Through the listing pipeline: a copy whose rare words have two letters swapped overlaps its original
    as much as an exact copy does, and another product of the same line does not."""
    rows = [{"listing_id": "A", "title": "Umbra Living Orchard Wool Side Table (Rust)",
             "description": "hand woven merino blanket stitch"},
            {"listing_id": "B", "title": "Umbra Living Orchrad Wool Side Tabel (Rust)",
             "description": "hand wovne merino blnaket stitch"},
            {"listing_id": "C", "title": "Umbra Living Orchard Wool Side Table (Rust)",
             "description": "hand woven merino blanket stitch"},
            {"listing_id": "D", "title": "Umbra Living Harbor Velvet Mirror (Rust)",
             "description": "bevelled glass brass frame"}]
    rows += [{"listing_id": f"O{i}", "title": t} for i, t in enumerate(
        ["Loom House Willow Fitted Sheet", "Brightly Nordic Linen Duvet Cover", "Kestrel Mesa Wool Bath Towel",
         "Oakhurst Tamsin Bamboo Throw", "Fernleigh Juniper Jute Throw", "Nook Corvo Wool Fitted Sheet"])]
    x = listing_features(rows, [0, 0, 0], [1, 2, 3])
    for name in ("title_idf", "core_idf", "desc_idf", "title_tok"):
        typo, copy, other = x[name]
        assert typo == pytest.approx(copy, abs=1e-6), name
        assert other <= 0.5 * copy or np.isnan(other), name


def test_variant_words_keyed_by_an_earlier_version_are_left_out(caplog: pytest.LogCaptureFixture) -> None:
    slots = [[123456, 0, 0], [654321, 0, 1]]
    assert _model_slots({"variant_slots": slots, "variant_keying": WORD_KEYING}) == slots
    assert _model_slots({}) is None
    with caplog.at_level(logging.WARNING):
        assert _model_slots({"variant_slots": slots}) is None
    assert "refit" in caplog.text


@pytest.mark.slow
def test_the_shipped_model_deciding_a_file_reads_the_files_variant_words(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    """`dedup batch` on listings like the shipped model's training data: the shipped model decides, and the
    variant words learned from the file reach the run's title encoder with their keying, instead of being left
    out as keyed by an earlier version (which every such run did before the stamp travelled with them)."""
    from consumer.config import load_settings
    from consumer.encoders.title import TitleEncoder
    from consumer.generate.listings import write_listings
    from consumer.io.batch import run_batch

    write_listings(tmp_path / "l.csv", tmp_path / "truth.csv", 1200, 9)
    (tmp_path / "l.toml").write_text('[profile]\nname = "listing"\nid_field = "listing_id"\n')
    with caplog.at_level(logging.WARNING):
        summary, pipe = run_batch(tmp_path / "l.csv", tmp_path / "out.jsonl", load_settings(str(tmp_path / "l.toml")),
                                  progress=False)
    assert summary.model["fusion"] == "shipped model" and summary.model["variant_words"] > 0, summary.model
    titles = [e for e in (getattr(e, "inner", e) for e in pipe.encoders) if isinstance(e, TitleEncoder)]
    assert len(titles) == 1 and titles[0].variant_slots == summary.model["variant_words"]
    assert "keyed by an earlier version" not in caplog.text
