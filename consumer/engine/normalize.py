"""Text normalisation for names, places and device strings.

Everything downstream compares *normalised* values, so this is where case, accents, punctuation,
titles/suffixes, "Surname, Given" order, nicknames and city aliases are folded away. The tables here are
the matcher's own (the nickname table comes from the curated `nicknames` package, the city aliases from
`consumer/data/city_aliases.csv`); the synthetic generator deliberately keeps separate, smaller lists so
that evaluation does not reward a matcher for knowing the generator's tables.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources

from consumer.engine.mojibake import repair

__all__ = [
    "fold",
    "strip_accents",
    "name_tokens",
    "nickname_keys",
    "city_canonical",
    "browser_canonical",
    "os_canonical",
    "os_family",
]

# Letters NFKD does not decompose into ASCII.
_SPECIAL = str.maketrans(
    {"ß": "ss", "ø": "o", "Ø": "o", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "ł": "l", "Ł": "l",
     "đ": "d", "Đ": "d", "þ": "th", "Þ": "th", "ı": "i"}
)
_NON_ALNUM = re.compile(r"[^a-z0-9,]+")

# Honorifics, generational and professional suffixes: they say nothing about who the person is, and
# duplicates add or drop them freely ("Pam Velasquez MD" / "Pam Velasquez").
_TITLES = frozenset(
    "mr mrs ms miss mx dr prof sir dame lady lord rev fr jr jnr sr snr ii iii iv v md phd dds dvm esq "
    "cpa rn do jd mba msc bsc ba ma herr frau sr sra srta dott ing mme mlle".split()
)


#: Cyrillic and Greek letters that look like Latin ones (Unicode's confusables for these scripts, the
#: subset that is drawn alike in common fonts). Transliteration would read them by sound (Cyrillic "р" is
#: "r", "с" is "s", "у" is "u"), which is right for Cyrillic words and wrong for a Latin word typed with a
#: look-alike, by a spoofer or a keyboard layout: "Јоhn Ѕmіth" must compare as "John Smith".
_HOMOGLYPHS = str.maketrans({
    # Cyrillic
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s",
    "ԁ": "d", "ӏ": "l", "ԛ": "q", "ԝ": "w", "һ": "h",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T",
    "Х": "X", "У": "Y", "І": "I", "Ј": "J", "Ѕ": "S", "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W", "Ү": "Y",
    # Greek
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "ι": "i", "κ": "k", "τ": "t", "υ": "u", "χ": "x", "ϲ": "c",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "Ϲ": "C",
})
_LOOKALIKE = frozenset(chr(c) for c in _HOMOGLYPHS)
#: Variation selectors: invisible, category Mn, yet not "combining" to unicodedata.
_VARIATION = frozenset(chr(c) for c in (*range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)))


def _visible(text: str) -> str:
    """Without invisible characters (zero-width space/joiners, word joiner, BOM, soft hyphen, bidi
    controls: category Cf; variation selectors): "Jo\u200bhn" is "John", not "jo hn"."""
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf" and ch not in _VARIATION)


def _unspoof(text: str) -> str:
    """Look-alike letters folded to Latin in every word that mixes them with Latin letters ("Jоhn" with a
    Cyrillic о), and in words made only of look-alikes in a text that is otherwise Latin ("Smith Јоѕе");
    words of another script ("Москва", "Αθήνα") keep their letters and are transliterated."""
    words = text.split(" ")
    latin_elsewhere = any(any("a" <= c.lower() <= "z" for c in w) for w in words)
    out = []
    for w in words:
        has_latin = any("a" <= c.lower() <= "z" for c in w)
        foreign = [c for c in w if c.isalpha() and not c.isascii()]
        if foreign and (has_latin or (latin_elsewhere and all(c in _LOOKALIKE for c in foreign))):
            w = w.translate(_HOMOGLYPHS)  # the rest of a mixed word is transliterated after
        out.append(w)
    return " ".join(out)


def fold(text: str) -> str:
    """Lower-case, strip accents and punctuation (commas kept for name order), collapse spaces.

    Text as users type it: compatibility forms (fullwidth, ligatures) are unified (NFKD), invisible
    characters removed, and Cyrillic/Greek look-alikes inside Latin words folded to the Latin letter
    they imitate (`_unspoof`). Letters of other scripts (CJK, Cyrillic, Greek, Arabic, Hangul, ...) are
    transliterated to ASCII (王小明 -> wangxiaoming, Москва -> moskva), so duplicates written in them
    compare like Latin ones instead of folding to nothing. ASCII text takes none of these steps. First of
    all, text garbled on its way into the file is read as what it was (`consumer.engine.mojibake.repair`:
    HTML character references, UTF-8 read as Windows-1252).
    """
    text = repair(text)
    if not text.isascii():
        text = _unspoof(_visible(text))
    text = strip_accents(text)
    if not text.isascii():
        text = _transliterate(text)
    return " ".join(_NON_ALNUM.sub(" ", text.lower()).split())


def strip_accents(text: str) -> str:
    """Accents off and the letters NFKD keeps apart spelt out ("Stück" -> "Stuck", "Weiß" -> "Weiss",
    "Ø" -> "o"), punctuation and case untouched: what `fold` does first, for readers that still need the
    punctuation (product titles: "6.1\"", "0,5 TB")."""
    if text.isascii():  # nothing to strip or spell out (no ASCII character is in `_SPECIAL`)
        return text
    text = unicodedata.normalize("NFKD", text.translate(_SPECIAL))
    if text.isascii():  # ASCII once decomposed (fullwidth forms, ligatures): no combining mark to drop
        return text
    return "".join(ch for ch in text if not unicodedata.combining(ch))


def _transliterate(text: str) -> str:
    """Non-ASCII letters and digits -> their ASCII transliteration (anyascii); symbols (emoji) -> space."""
    from anyascii import anyascii  # local import: most inputs are ASCII after accent stripping

    return "".join(ch if ch.isascii() else anyascii(ch) if unicodedata.category(ch)[0] in "LN" else " "
                   for ch in text)


def name_tokens(name: str) -> list[str]:
    """Tokens of a person name in given-name-first order, without titles, suffixes or punctuation.

    "Smith, John A." -> ["john", "a", "smith"]. Without a comma the order is kept as written; callers
    that need order independence compare token sets.
    """
    folded = fold(name)
    if "," in folded:
        head, _, tail = folded.partition(",")
        tail_tokens = [t for t in tail.replace(",", " ").split() if t not in _TITLES]
        head_tokens = [t for t in head.split() if t not in _TITLES]
        # "Smith, John" -> John Smith; "John Smith, MD" leaves an empty tail once titles are gone.
        tokens = tail_tokens + head_tokens if tail_tokens else head_tokens
    else:
        tokens = [t for t in folded.split() if t not in _TITLES]
    return tokens


@lru_cache(maxsize=1)
def _nickname_table() -> dict[str, tuple[str, ...]]:
    """Map every known name/nickname to the sorted canonical names it may stand for."""
    import nicknames  # local import: only the name comparison needs it

    table: dict[str, set[str]] = {}
    path = resources.files(nicknames) / "names.csv"
    with path.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            canon, nick = fold(row["name1"]), fold(row["name2"])
            if not canon or not nick or " " in canon or " " in nick:
                continue
            table.setdefault(nick, set()).add(canon)
            table.setdefault(canon, set()).add(canon)
    for row in _data_rows("nicknames_extra.csv"):
        canon = fold(row[0])
        table.setdefault(canon, set()).add(canon)
        for nick in row[1:]:
            table.setdefault(fold(nick), set()).add(canon)
    return {k: tuple(sorted(v)) for k, v in table.items()}


def _data_rows(name: str) -> Iterator[list[str]]:
    """Rows of one of our `canonical,alias,...` tables in consumer/data (comments and blanks skipped)."""
    with (resources.files("consumer") / "data" / name).open(encoding="utf-8") as fh:
        for row in csv.reader(fh):
            if row and not row[0].startswith("#"):
                yield row


def nickname_keys(token: str, limit: int = 7) -> tuple[str, ...]:
    """The token plus up to `limit` canonical names it may abbreviate (bob -> bob, robert).

    Longer (more formal) names first, so the first canonical is the likeliest full form and truncation
    drops the exotic ones (will -> william, wilfred before wilbur).
    """
    canon = sorted((c for c in _nickname_table().get(token, ()) if c != token), key=lambda c: (-len(c), c))
    keys = [token, *canon]
    return tuple(keys[: limit + 1])


@lru_cache(maxsize=1)
def _city_aliases() -> dict[str, str]:
    table: dict[str, str] = {}
    for row in _data_rows("city_aliases.csv"):
        canon = fold(row[0])
        for alias in row:
            table[fold(alias)] = canon
    return table


_CITY_WORDS = {
    "st": "saint", "ste": "sainte", "ft": "fort", "mt": "mount", "pt": "port", "n": "north", "s": "south",
    "e": "east", "w": "west", "lk": "lake", "spgs": "springs", "hts": "heights", "bch": "beach",
    "cty": "city", "vlg": "village", "pk": "park", "is": "island",
}
_CITY_DROP = frozenset({"city", "of", "the"})


@lru_cache(maxsize=65536)
def city_canonical(city: str) -> str:
    """Canonical city key: folded, abbreviations expanded, known aliases (NYC, Munich/München) mapped."""
    folded = fold(city).replace(",", " ")
    if not folded:
        return ""
    aliases = _city_aliases()
    if folded in aliases:
        return aliases[folded]
    expanded = " ".join(_CITY_WORDS.get(t, t) for t in folded.split())
    if expanded in aliases:
        return aliases[expanded]
    # "New York City" vs "New York": drop filler words only when something remains.
    core = " ".join(t for t in expanded.split() if t not in _CITY_DROP) or expanded
    return aliases.get(core, core)


_BROWSERS = (
    ("samsung", "samsung"), ("edg", "edge"), ("opr", "opera"), ("opera", "opera"), ("brave", "brave"),
    ("firefox", "firefox"), ("fxios", "firefox"), ("crios", "chrome"), ("chromium", "chrome"),
    ("chrome", "chrome"), ("safari", "safari"), ("internet explorer", "ie"), ("msie", "ie"),
    ("vivaldi", "vivaldi"), ("yandex", "yandex"), ("uc", "ucbrowser"),
)
_OSES = (
    ("chromeos", "chromeos"), ("chrome os", "chromeos"), ("cros", "chromeos"), ("iphone", "ios"),
    ("ipad", "ios"), ("ios", "ios"), ("android", "android"), ("mac", "macos"), ("os x", "macos"),
    ("osx", "macos"), ("darwin", "macos"), ("win", "windows"), ("linux", "linux"), ("ubuntu", "linux"),
    ("debian", "linux"), ("fedora", "linux"),
)
_OS_FAMILY = {"ios": "apple", "macos": "apple", "android": "google", "chromeos": "google",
              "windows": "microsoft", "linux": "linux"}


@lru_cache(maxsize=4096)
def browser_canonical(value: str) -> str:
    """Browser family from free text ("Google Chrome 120", "chrome", "CriOS") -> "chrome"."""
    folded = fold(value)
    for needle, canon in _BROWSERS:
        if needle in folded:
            return canon
    return folded


@lru_cache(maxsize=4096)
def os_canonical(value: str) -> str:
    """Operating system from free text ("Mac OS X", "Win10", "iPhone OS") -> "macos"/"windows"/"ios"."""
    folded = fold(value)
    compact = folded.replace(" ", "")
    for needle, canon in _OSES:
        if needle in folded or needle.replace(" ", "") in compact:
            return canon
    return folded


def os_family(os_canon: str) -> str:
    """Vendor family, for partial credit between e.g. iOS and macOS."""
    return _OS_FAMILY.get(os_canon, os_canon)
