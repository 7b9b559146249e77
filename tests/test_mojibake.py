"""Mojibake (UTF-8 read as Windows-1252): repaired where the bytes survive, in either case; where a byte was
lost, a stretch of garbled words compares only with an exact copy of itself; text without it is untouched."""

from __future__ import annotations

import numpy as np
import pytest
from harness.listing_pairs import listing_features

from consumer.engine.mojibake import repair
from consumer.engine.normalize import fold
from consumer.engine.titles import parse_title, product_codes, title_words

#: Legitimate text in many scripts, with the symbols mojibake is made of standing where they belong.
CLEAN = ["São Paulo", "Ærøskøbing", "señor ñandú", "1ª edição", "Größe ½ Zoll", "naïve café", "Крым и Москва",
         "東京タワー", "Ελλάδα", "Zürich – Genève", "it’s", "50 µm", "© 2020 Ünal", "½ kg", "Łódź", "Český Krumlov",
         "Ålesund – Tromsø", "Ça coûte 3 €", "Đà Nẵng", "İstanbul'da çay", "北京市", "서울", "DVD±RW 2×"]


def _garble(text: str) -> str:
    """What a wrong decode makes of `text`: its UTF-8 bytes read as Windows-1252."""
    return text.encode("utf-8").decode("cp1252")


@pytest.mark.parametrize("text", CLEAN)
def test_text_without_mojibake_is_unchanged(text: str) -> None:
    assert repair(text) == text
    assert repair(text.lower()) == text.lower()


@pytest.mark.parametrize("text", ["Músicas para louvar", "Ultrasónica", "München Straße", "it’s ‘quoted’ — fine",
                                  "Dvořák: Slovanské tance", "Ça coûte 3 €", "Ålesund – Tromsø", "DVD±RW"])
def test_mojibake_is_decoded_whatever_the_case(text: str) -> None:
    """The same text whether the file kept the garbled case or lower-cased it afterwards (which moves the lead
    characters: "Ã" -> "ã", and "Š" -> "š" among the continuations)."""
    garbled = _garble(text)
    assert garbled != text
    assert repair(garbled) == text
    assert repair(garbled.lower()).lower() == text.lower()  # "Ã‡" lower-cased is still "Ç" (0xC3 0x87)
    assert fold(garbled.lower()) == fold(text)


def test_lost_bytes_compare_only_by_identity() -> None:
    """Japanese garbled with a byte of each character lost (as cddb has them) folded to the same few tokens
    ("a", "afa", "a2") whatever the title said, so any two such titles agreed. Now a garbled stretch is one
    token of its own: a copy agrees, another title shares nothing, and no stretch reads as a model code."""
    a = "ãƒã ã¾ã ã ã ã² - ã ã ãªã²ã ã ãƒã ã ã"
    a_copy = "ãƒã ã¾ã ã ã ã² - ã ã ãªã²ã ã ãƒã ã ã"
    b = "ã ã ã ã ã ã ã¹ã ã ã ã ã ã - ã ã ã ã ã ã"
    assert fold(a) == fold(a_copy)
    assert not set(fold(a).split()) & set(fold(b).split())
    assert not set(parse_title(a).core) & set(parse_title(b).core)
    assert not set(title_words(a)) & set(title_words(b))
    assert not product_codes(a, 4)
    # legible words beside a garbled stretch stay words ("kbs", "tv"): only the stretch is opaque
    assert fold("kbs - kbs tv ãˆâ â âµãˆâ").split()[:3] == ["kbs", "kbs", "tv"]


def test_two_garbled_titles_are_not_one_product_and_copies_are() -> None:
    """Through the listing pipeline: two albums whose titles and track lists lost bytes to one wrong decode
    share no title or track words; two copies of one such album share all of them."""
    rows = [{"listing_id": "A", "title": "ã ã ã ã ã ã ã¹ã ã ã ã ã ã - ã ã ã ã ã ã",
             "description": "ã ã³ã ã ã ã ã ã ã ãªã ã ã ã ã²ã ã ã"},
            {"listing_id": "B", "title": "ã ã ã ã ã ã ã¹ã ã ã ã ã ã - ã ã ã ã ã ã",
             "description": "ã ã³ã ã ã ã ã ã ã ãªã ã ã ã ã²ã ã ã"},
            {"listing_id": "C", "title": "ã ã³ã ã ã - ã ãªã ã ã² ã¹ ã ã",
             "description": "ã ã²ã ã ã ã ã ãªã ã ã ã ã¼ã ã ã ãžã"}]
    others = [("abba", "gold"), ("queen", "innuendo"), ("madonna", "erotica"), ("oasis", "definitely maybe")]
    rows += [{"listing_id": f"O{i}", "title": f"{artist} - {album}", "brand": artist}
             for i, (artist, album) in enumerate(others)]
    x = listing_features(rows, [0, 0], [1, 2])
    for name in ("title_tok", "title_idf", "desc_idf"):
        copy, other = x[name]
        assert copy > 0.99, name
        assert other == 0 or np.isnan(other), name


def test_an_invisible_continuation_alone_is_the_writers_own() -> None:
    """A soft hyphen after an accented letter ("Ö\\u00ad", a hyphenator's) is also the mojibake of "í"
    ("Ã\\u00ad"): alone it is left to the invisible-character step; beside visible mojibake it is decoded."""
    assert repair("Gr\u00d6\u00adnlund Vi\u00e0\u00adna") == "Gr\u00d6\u00adnlund Vi\u00e0\u00adna"
    assert fold("Gr\u00d6\u00adnlund") == "gronlund"
    assert repair("garc\u00e3\u00ada") == "garc\u00e3\u00ada"
    assert repair("jos\u00e3\u00a9 garc\u00e3\u00ada") == "josé garcía"


def test_html_character_references_are_read_and_ampersands_kept() -> None:
    """Scraped text carries HTML references; read as text they were words ("nbsp", "rsquo") of the export."""
    assert fold("lights!&nbsp; camera! it&rsquo;s &#233;t&eacute;") == fold("lights! camera! it’s été")
    assert parse_title("Backyard Soccer MLS Edition&trade;").core == parse_title("Backyard Soccer MLS Edition™").core
    for text in ("AT&T U-verse", "R&D 2-pack", "Black & Decker", "&copy 2001", "fish&chips;"):
        assert repair(text) == text
