"""Normalisation tables: names, nicknames, city aliases, device strings."""

from __future__ import annotations

from consumer.engine.normalize import browser_canonical, city_canonical, name_tokens, nickname_keys, os_canonical


def test_name_tokens_order_titles_accents() -> None:
    assert name_tokens("Smith, John A.") == ["john", "a", "smith"]
    assert name_tokens("Pam Velasquez MD") == ["pam", "velasquez"]
    assert name_tokens("Dr. José García-López") == ["jose", "garcia", "lopez"]
    assert name_tokens("MÜLLER, Jürgen") == ["jurgen", "muller"]


def test_nickname_keys_reach_the_full_name() -> None:
    assert "robert" in nickname_keys("bob")
    assert "william" in nickname_keys("bill")
    assert "margaret" in nickname_keys("peggy")
    assert "jose" in nickname_keys("pepe")  # our non-English supplement
    assert nickname_keys("zyxw") == ("zyxw",)


def test_city_aliases_and_abbreviations() -> None:
    assert city_canonical("NYC") == city_canonical("New York City") == city_canonical("new york")
    assert city_canonical("St. Louis") == city_canonical("Saint Louis")
    assert city_canonical("München") == city_canonical("Munich")
    assert city_canonical("Ft. Worth") == "fort worth"
    assert city_canonical("Lk Steven") == city_canonical("Lake Steven")
    assert city_canonical("  ") == ""


def test_device_canonical_forms() -> None:
    assert browser_canonical("Google Chrome 120") == browser_canonical("chrome") == "chrome"
    assert browser_canonical("Samsung Internet") == "samsung"
    assert os_canonical("Mac OS X") == os_canonical("MacOS") == "macos"
    assert os_canonical("Win10") == "windows"
    assert os_canonical("iPhone OS") == "ios"


def test_invisible_characters_are_removed_not_spaced() -> None:
    from consumer.engine.normalize import fold, name_tokens

    assert fold("Jo\u200bhn Sm\u00adith\u2060") == "john smith"
    assert fold("\ufeffAnna\u200d") == "anna"
    assert name_tokens("Jo\u200bhn Smith") == name_tokens("John Smith")


def test_lookalike_letters_fold_to_latin_inside_latin_text() -> None:
    from consumer.engine.normalize import fold

    assert fold("J\u043ehn Sm\u0456th") == "john smith"  # Cyrillic о, Ukrainian і
    assert fold("\u0408\u043e\u0455\u0435 Garcia") == "jose garcia"  # a word of look-alikes beside Latin
    assert fold("\u0391nna \u039f'Brien") == "anna o brien"  # Greek capitals
    assert fold("\u0421arol") == "carol"  # Cyrillic С is C by sight, S by sound


def test_real_cyrillic_and_greek_still_transliterate() -> None:
    from consumer.engine.normalize import fold

    assert fold("\u041c\u043e\u0441\u043a\u0432\u0430") == "moskva"
    assert fold("\u0418\u0432\u0430\u043d \u041f\u0435\u0442\u0440\u043e\u0432") == "ivan petrov"
    assert fold("\u0391\u03b8\u03ae\u03bd\u03b1") == "athina"
    assert fold("\uff2a\uff4f\uff48\uff4e") == "john"  # fullwidth


def _strip_accents_reference(text: str) -> str:
    """`strip_accents` as defined: NFKD after the special letters, every combining mark dropped."""
    import unicodedata

    from consumer.engine.normalize import _SPECIAL

    text = unicodedata.normalize("NFKD", text.translate(_SPECIAL))
    return "".join(ch for ch in text if not unicodedata.combining(ch))


def test_strip_accents_fast_paths_change_nothing() -> None:
    """ASCII text is returned as it is, and text that is ASCII once decomposed skips the per-character pass:
    the same strings as the definition, on ASCII, accents, special letters, fullwidth forms and other scripts."""
    import random

    from consumer.engine.normalize import strip_accents

    rng = random.Random(5)
    alphabet = "abcXYZ09 ,.-\"'ßøØæŒłĐþıéèÉñüÅçŠ\u0301\u0308ＡＢｃ１ﬁ™½Москва王Αθήνα\u200b"
    texts = ["", "Stück", "Weiß", "Ø", "ＡＢＣ", "ﬁne", "plain ascii 6.1\"", "0,5 TB", "Crème brûlée"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(2000)]
    for text in texts:
        assert strip_accents(text) == _strip_accents_reference(text), text
