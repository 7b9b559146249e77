"""Normalisation tables: names, nicknames, city aliases, device strings."""

from __future__ import annotations

from consumer.normalize import browser_canonical, city_canonical, name_tokens, nickname_keys, os_canonical


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
