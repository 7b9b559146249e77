"""Product titles: normalisation and the attributes that make two similar titles different products.

"Acme AquaPure Water 0.5 L, 6-Pack" and "ACME aquapure water 500ml (pack of 6)" are one product; "... 1L"
is another. So a title is split into

- *core* tokens: the words that name the product line (folded, marketing noise such as "new" or
  "free shipping" dropped), compared softly (tokens, character trigrams, embeddings);
- *attributes*, each normalised to a canonical value: volume (500ml = 0.5 L -> vol:500), mass (g),
  storage (1TB = 1000 GB = 1 To -> cap:1000), working memory (16GB RAM), screen inches, pack count,
  clothing/shoe size (UK 9 = size 9), colour (gray = grey), generation (2nd gen = gen 2 = Mk II), edition
  (Lite, Pro, Plus, ...) and model numbers (letters with digits, "WH-1000XM4" = "wh1000xm4"), plus bare
  numbers ("iPhone 14"). Colours and pack counts are read in English, German, French, Spanish and Italian
  ("Schwarz" = "noir" = black, "4er Pack" = "lot de 4" = pack of 4): one-pool offers come from shops in
  several languages.

Two titles that state the same attribute kind with different values are different products, however
similar the rest: that is hard evidence against a match (`attr_agree` and `variant_agree` of
`consumer.encoders.title`). Pure functions, no I/O.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from consumer.engine.mojibake import repair
from consumer.engine.normalize import fold, strip_accents

__all__ = ["ATTRIBUTE_KINDS", "Title", "colour_of", "parse_title", "parse_price", "product_codes", "code_stem",
           "title_words", "word_key", "word_token", "SWAP_MIN_LETTERS",
           "WORD_KEYING"]

#: Attribute kinds, in column order.
ATTRIBUTE_KINDS = ("vol", "mass", "cap", "ram", "screen", "pack", "size", "colour", "gen", "model", "num", "tier")
#: Words naming a product's edition within its line ("Mouse Lite" / "Mouse Pro", "S23 Ultra" / "S23 Plus"):
#: two titles naming different ones are two products. A title naming none is not read as a conflict (shops
#: leave the edition out as often as the colour: on Abt-Buy 32 of 35 such scored pairs are one product).
_TIERS = frozenset(("lite", "pro", "plus", "max", "mini", "ultra", "air", "se", "deluxe", "premium", "elite"))

_NUM = r"(\d+(?:[.,]\d+)?)"
_UNITS: dict[str, tuple[str, float]] = {
    "ml": ("vol", 1), "cl": ("vol", 10), "dl": ("vol", 100), "l": ("vol", 1000), "ltr": ("vol", 1000),
    "litre": ("vol", 1000), "liter": ("vol", 1000), "litres": ("vol", 1000), "liters": ("vol", 1000),
    "floz": ("vol", 29.5735), "cuft": ("vol", 28316.8), "cf": ("vol", 28316.8),
    "mg": ("mass", 0.001), "g": ("mass", 1), "gr": ("mass", 1), "kg": ("mass", 1000), "lb": ("mass", 453.592),
    "lbs": ("mass", 453.592), "oz": ("mass", 28.3495),
    "mb": ("cap", 0.001), "gb": ("cap", 1), "tb": ("cap", 1000), "go": ("cap", 1),  # French gigaoctet
    "to": ("cap", 1000),
    "in": ("screen", 1), "inch": ("screen", 1), "inches": ("screen", 1), '"': ("screen", 1),  # '' reads as "
    # the inch in German, French, Spanish and Italian shops ("55 Zoll", "55 pouces", "55 pulgadas", "55 pollici")
    "zoll": ("screen", 1), "pouces": ("screen", 1), "pouce": ("screen", 1), "pulgadas": ("screen", 1),
    "pulgada": ("screen", 1), "pollici": ("screen", 1), "pollice": ("screen", 1),
}
#: A number and its unit, written "16GB", "16 GB" or "16-GB"; not a rate ("560 MB/s") nor the start of a code
#: ("840 G9"); the French "To" (teraoctet) not between two numbers ("5 to 10").
_UNIT_RE = re.compile(r"(?<![\w.,])" + _NUM + r"\s*-?\s*(fl\.?\s?oz|cu\.?\s?ft\.?|"
                      + "|".join(sorted((re.escape(u) for u in _UNITS if u != "floz"),
                                        key=len, reverse=True)) + r")(?![a-z0-9])(?!\s*/\s*s\b)(?<!to(?=\s+\d))")
#: A data rate ("150MB/s", "1200 Mbps", "2.5 Gbit/s"): a spec some shops quote and others leave out, never a
#: model code ("150mb" beside another shop's part number was a conflict) nor a capacity.
_RATE_RE = re.compile(r"(?<![\w.,])\d+(?:[.,]\d+)?\s*-?\s*[kmgt]i?(?:b|bit|byte)s?\s*(?:/\s*s(?:ec)?|ps)(?![a-z0-9])")
#: The same after folding, as `product_codes` reads it ("7000 mbs", "150mbs", "1200 mbps", "25 gbits"):
#: taken out before its tokens are read, so no rate is left to pass for a code.
_FOLDED_RATE = re.compile(r"\b\d+\s*[kmgt]i?(?:b|bit|byte)s?(?:s|ps)\b")
#: Working memory, a kind apart from storage: "16GB RAM" beside "512GB" is not a second capacity.
_RAM_RE = re.compile(r"(?<![\w.,])(\d{1,3})\s*-?\s*gb\s*(?:of\s*)?(?:ram|(?:lp)?ddr\d\w*|memory|arbeitsspeicher)\b")
#: Storage and memory sizes written with a bare "G" ("16G", "128G"): gigabytes, not grams.
_MEMORY_SIZES = frozenset(float(2 ** k) for k in range(3, 12))
#: Mobile network generations, which read like grams ("Galaxy A55 5G").
_NETWORKS = frozenset(("2g", "3g", "4g", "5g", "6g"))
#: A pack count as shops write it, in English, German, French, Spanish and Italian ("pack of 4", "4-pack",
#: "4er Pack", "4 Stück", "lot de 4", "4 unidades", "confezione da 4", "x4"). A count of one or two digits
#: only where it stands before its word, so a model number ("TN 243 pack of 4", "HP 207X") is not a count.
_PACK_RE = re.compile(r"(?:pack of|set of|case of|box of|lot de|pack de|lote de|paquete de|confezione da|set da"
                      r"|pacco da)\s*(\d{1,3})\b"
                      r"|(?<![\w.,])(\d{1,2})\s*-?\s*(?:er\s*-?\s*)?(?:pack(?!\s*(?:of|de|da)\b)|pk|pcs|pieces|count|ct|stuck|stk"
                      r"|unidades|uds|pezzi|pz)\b"
                      r"|(?<![\w.,])(?P<times>\d{1,2})\s*x\b(?!\s*\d)|\bx\s*(\d{1,2})\b")
#: Two-packs named by a word.
_TWIN_RE = re.compile(r"\b(?:twin\s*-?\s*pack|doppelpack|double\s*pack|duo\s*pack)\b")
_SIZE_RE = re.compile(r"\b(?:uk|size|sz|us|eu)\s*:?\s*(\d+(?:[.,]5)?|xxs|xs|s|m|l|xl|xxl|xxxl|[2-5]xl)\b")
_LETTER_SIZES = {"xxs": "xxs", "xs": "xs", "xl": "xl", "xxl": "xxl", "2xl": "xxl", "xxxl": "xxxl", "3xl": "xxxl",
                 "small": "s", "medium": "m", "large": "l", "x-large": "xl", "extra large": "xl"}
_LETTER_SIZE_RE = re.compile(r"\b(extra large|x-large|xxs|xs|xxxl|xxl|xl|[23]xl|small|medium|large)\b")
_GEN_RE = re.compile(r"\b(?:gen(?:eration)?\s*(\d+)|(\d+)(?:st|nd|rd|th)\s*gen(?:eration)?|mk\s*(i{1,3}|iv|v|\d+)"
                     r"|v(\d+)|g(\d))\b")  # "G9", "USB 3.2 G1": a generation ("Gen 9"); "G21" stays a model
_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5}
_COLOURS = {
    "black": "black", "white": "white", "grey": "grey", "gray": "grey", "silver": "silver", "gold": "gold",
    "red": "red", "blue": "blue", "navy": "navy", "green": "green", "yellow": "yellow", "orange": "orange",
    "pink": "pink", "purple": "purple", "violet": "purple", "brown": "brown", "beige": "beige",
    "graphite": "graphite", "midnight": "midnight", "teal": "teal", "rose": "rose", "olive": "olive",
    "cream": "cream", "ivory": "cream", "charcoal": "charcoal", "khaki": "khaki", "burgundy": "burgundy",
    "turquoise": "turquoise", "lilac": "lilac", "bronze": "bronze", "copper": "copper", "cyan": "cyan",
    "magenta": "magenta",
    # abbreviations sellers use
    "blk": "black", "wht": "white", "slv": "silver", "gry": "grey",
    # German, French, Spanish, Italian ("or", French gold, is the English word: left out)
    "schwarz": "black", "noir": "black", "noire": "black", "negro": "black", "negra": "black", "nero": "black",
    "weiss": "white", "blanc": "white", "blanche": "white", "blanco": "white", "blanca": "white",
    "bianco": "white", "bianca": "white", "silber": "silver", "argent": "silver", "plata": "silver",
    "argento": "silver", "blau": "blue", "bleu": "blue", "azul": "blue", "blu": "blue", "grau": "grey",
    "gris": "grey", "grigio": "grey", "grun": "green", "gruen": "green", "vert": "green", "verte": "green",
    "verde": "green", "rot": "red", "rouge": "red", "rojo": "red", "roja": "red", "rosso": "red",
    "rosa": "pink", "dorado": "gold", "oro": "gold", "lila": "purple", "violett": "purple", "morado": "purple",
    "viola": "purple", "cian": "cyan", "ciano": "cyan", "gelb": "yellow", "jaune": "yellow",
    "amarillo": "yellow", "giallo": "yellow", "naranja": "orange", "arancione": "orange", "braun": "brown",
    "marron": "brown", "marrone": "brown",
}
#: The eleven basic colour terms (Berlin and Kay, 1969), as the table names them: two of them are two colours
#: whatever else says otherwise; the table's other colours are shades a file may show to be one of these.
BASIC_COLOURS = frozenset({"black", "white", "red", "green", "yellow", "blue", "brown", "purple", "pink", "orange",
                           "grey"})
#: Words that say nothing about which product it is (sellers add them freely).
NOISE = frozenset("""new brand genuine original authentic official sale hot deal offer free shipping delivery
fast uk us eu seller stock in with for the and a an of by best price top quality latest edition
limited boxed sealed unopened bnib bnwt nib item listing buy now cheap discount""".split())


@dataclass(frozen=True)
class Title:
    """A parsed title: its core tokens and its normalised attributes (kind -> sorted values)."""

    core: tuple[str, ...]
    attributes: dict[str, tuple[str, ...]]

    @property
    def text(self) -> str:
        return " ".join(self.core)


def colour_of(word: str) -> str | None:
    """The colour a title word names in the built-in table ("blau" -> "blue"), or None."""
    return _COLOURS.get(word)


def colour_words() -> dict[str, str]:
    """Every word of the built-in colour table and the colour it names (a copy)."""
    return dict(_COLOURS)


def _num(text: str) -> float:
    return float(text.replace(",", "."))


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _prepare(title: str) -> str:
    text = unicodedata.normalize("NFKC", repair(title)).lower()
    if not text.isascii():  # accents off, so "Stück", "Weiß" and "Grün" read as the tables write them
        text = strip_accents(text)
    text = text.replace("″", '"').replace("''", '"')
    return re.sub(r"(\d),(\d{3})(?!\d)", r"\1\2", text)  # 1,000 -> 1000 (a comma decimal keeps 1-2 digits)


#: How far a capacity may sit from a power of two and still be that size as sellers round it.
_ROUNDING = 0.03


def _binary_size(gb: float) -> float:
    """A storage capacity in GB as the power of two it rounds (within `_ROUNDING`): "0.5 TB", "500 GB" and
    "512 GB" are one size, as are "1 TB", "1000 GB" and "1024 GB"; "480 GB" and "120 GB" stay themselves.
    Why: shops write one drive's size in decimal or binary units, and a capacity that disagrees is a
    conflict (two products), so without this a 512 GB offer and its "0.5 TB" twin were kept apart."""
    if gb <= 0:
        return gb
    power = 2.0 ** round(math.log2(gb))
    return power if abs(gb - power) <= _ROUNDING * power else gb


def _model_suffix(m: re.Match[str]) -> bool:
    """Is a "2X" that `_PACK_RE` read as a count the end of a model name instead ("Flux 2X Coffee Mug",
    "Pulse 6X Gaming Mouse")? Yes between two words; a count stands at an end or beside a separator ("4x
    AA batteries", "Toner, 4x", "Toner 4x"). Why: a "Flux 2X ... 4-Pack" was a pack of 2 and of 4, so it
    agreed with the "Flux 2X ... 2-Pack" beside it."""
    if m.group("times") is None:
        return False
    before, after = m.string[:m.start()].rstrip(), m.string[m.end():].lstrip()
    return bool(before) and before[-1].isalpha() and bool(after) and after[0].isalpha()


@lru_cache(maxsize=1 << 16)
def parse_title(title: str, brand: str = "") -> Title:
    """Core tokens and attributes of a product title (cached: sellers repeat titles). `brand`: the listing's
    brand column; a colour word in it names the maker, not the product's colour ("Casa Verde", "Red Bull")."""
    text = _prepare(title)
    maker = set(fold(brand).split()) if brand else set()
    attrs: dict[str, set[str]] = {}

    def add(kind: str, value: str) -> str:
        attrs.setdefault(kind, set()).add(value)
        return " "

    def unit(m: re.Match[str]) -> str:
        u = m.group(2).replace(".", "").replace(" ", "")
        if u == "g" and m.group(0) in _NETWORKS:
            return m.group(0)  # "5G" on a phone is its network, not five grams
        kind, factor = _UNITS["floz" if u.startswith("fl") else "cuft" if u.startswith("cu") else u]
        value = _num(m.group(1)) * factor
        if u == "g" and value in _MEMORY_SIZES:
            kind = "cap"  # "16G" on a graphics card or a memory stick is 16 GB
        return add(kind, _fmt(_binary_size(value) if kind == "cap" else value))

    def pack(m: re.Match[str]) -> str:
        return m.group(0) if _model_suffix(m) else add("pack", str(int(next(g for g in m.groups() if g))))

    text = _TWIN_RE.sub(lambda m: add("pack", "2"), text)
    text = _PACK_RE.sub(pack, text)
    text = _RAM_RE.sub(lambda m: add("ram", str(int(m.group(1)))), text)
    text = _RATE_RE.sub(" ", text)
    text = _UNIT_RE.sub(unit, text)
    text = _SIZE_RE.sub(lambda m: add("size", _fmt(_num(m.group(1))) if m.group(1)[0].isdigit()
                                      else _LETTER_SIZES.get(m.group(1), m.group(1))), text)
    text = _LETTER_SIZE_RE.sub(lambda m: add("size", _LETTER_SIZES[m.group(1)]), text)
    text = _GEN_RE.sub(lambda m: add("gen", str(_ROMAN.get(g, g) if (g := next(x for x in m.groups() if x))
                                                 in _ROMAN else int(g))), text)
    # A number with decimals and no unit is a spec's version ("USB 3.2", "HDMI 2.1", "DisplayPort 1.4a"), not
    # two numbers ("3", "2") nor a model; "7.0" is the whole 7 (a program's version stays a number).
    text = _UNITLESS_DECIMAL.sub(" ", _TRAILING_ZEROS.sub(r"\1", text))
    text = re.sub(r"(?<=[a-z0-9])-(?=[a-z0-9])", "", text)  # WH-1000XM4 -> wh1000xm4
    core: list[str] = []
    for tok in fold(text).replace(",", " ").split():
        if tok in _COLOURS and tok not in maker:
            add("colour", _COLOURS[tok])
        elif tok.isdigit():
            add("num", str(int(tok)))
        elif tok in _TIERS:
            add("tier", tok)
            core.append(tok)
        elif any(c.isdigit() for c in tok) and any(c.isalpha() for c in tok):
            if not _DURATION.fullmatch(tok):  # "30h battery", "24h dispatch", "10-year shelf life": no model
                add("model", tok)
            core.append(tok)
        elif tok not in NOISE and len(tok) > 1:
            core.append(tok)
    return Title(tuple(core), {k: tuple(sorted(v)) for k, v in attrs.items()})


#: Quantities that look like codes (letters with digits) but measure something: 500ml, 55mm, 1080p, 2nd.
_UNIT = (r"(?:ml|cl|l|ltr|g|gr|kg|mg|lb|lbs|oz|mm|cm|m|km|in|ft|gb|mb|tb|kb|hz|khz|mhz|ghz"
         r"|mp|w|kw|v|mah|a|x|p|i|k|rpm|fps|pk|pc|pcs|ct|st|nd|rd|th|yr|yrs|d|h|min|s|bit|dpi|db"
         r"|pack|er|count|pieces|stuck)")
_QUANTITY = re.compile(r"\d+(?:\.\d+)?" + _UNIT + r"|(?:uk|us|eu|sz|size)\d{1,2}")  # a pack count, a shoe size
#: A unit written apart from its number ("5000 mAh", "1000 W", "7200 rpm"): the number is a quantity too.
_UNIT_WORD = re.compile(_UNIT)
#: A number joined to a word of three letters or more ("10-Cup", "6-Disc", "7.1-Channel"): read as written apart.
_NUMBER_WORD = re.compile(r"(\d+)([a-z]{3,})")
#: A part of a set and its number: "CD 2", "cd1", "Disc 1", "Vol. 3", "Part 2", "Teil 2", "Season 4", "Tome 2".
_PART_RE = re.compile(r"(?<![a-z0-9])(?:cd|disc|disk|disque|vol|volume|part|teil|partie|season|staffel|saison"
                      r"|tome)\.?\s*(\d{1,2})(?![0-9])")
#: "w/" before a word or number is "with" ("w/ remote", "w/28-135mm Lens"), not the start of a code.
_WITH = re.compile(r"(?<![a-z0-9])w/(?=\s*[a-z0-9])")
_CODE_JOIN = re.compile(r"(?<=[a-z0-9])[-/.](?=[a-z0-9])")
#: A version as sellers write it: "version 9", "ver. 9", "v. 9.0", "v 9", "v9.0" (a word of its own; one or
#: two digits first; an attached "v" only with a dotted number, so "V450", "JetFlash V10" and the "V2" of
#: "MB13-BLK-SEE-V2" are left alone).
_VERSION = re.compile(r"(?<![\w./-])(?:(?:version|ver\.?|v\.)\s*|v\s+)(\d{1,2}(?:\.\d+)*)(?![\w-])"
                      r"|(?<![\w./-])v(\d{1,2}(?:\.\d+)+)(?![\w-])")
_TRAILING_ZEROS = re.compile(r"\b(\d+)(?:\.0)+\b")
#: A duration ("30h", "24h", "10year", "2yrs", "90min", "12months"): a battery's life, a warranty, a dispatch time.
_DURATION = re.compile(r"\d+(?:h|hr|hrs|hours?|days?|min|mins|minutes?|yr|yrs|years?|months?)")
_UNITLESS_DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+[a-z]?(?![\w.])")


def versions(text: str) -> str:
    """Lower-cased text with versions written one way: "v. 9.0" = "version 9" = "9", "6.0" = "6" (Amazon-Google:
    one shop writes "v. 9.0", the other "version 9" or nothing). Title words and codes read this."""
    text = _VERSION.sub(lambda m: " " + (m.group(1) or m.group(2)) + " ", text)
    return _TRAILING_ZEROS.sub(r"\1", text)


@lru_cache(maxsize=4096)
def _code_text(text: str | None) -> str:
    """`text` as `product_codes` and `title_words` read it: compatibility forms unified, lower case, versions
    written one way, "w/" read as "with", the joins inside codes removed, folded. Cached apart from them
    because both read the same titles and descriptions (most of a listing's encoding was folding each text
    twice); a small cache, since the two calls on one text come within one batch."""
    text = versions(unicodedata.normalize("NFKC", repair(text or "")).lower())
    return fold(_CODE_JOIN.sub("", _WITH.sub("with ", text)))


@lru_cache(maxsize=1 << 16)
def product_codes(text: str, limit: int = 4) -> tuple[str, ...]:
    """Model and part numbers in a title or description: tokens of at least four characters mixing letters
    and digits, or of at least five digits (a part number or UPC), or four digits that are not a year
    (a machine type: "ThinkPad X1 Carbon 3444" / "3460"; "Office 2007" is a year), hyphens, slashes and dots
    inside them removed ("PS-LX350H" = "pslx350h", "910-000619" = "910000619"), quantities ("500ml",
    "1080p", and a number with its unit written apart, "5000 mAh", "1000 GB") left out, a number joined to a
    word ("10-Cup", "1000N-Incremental") read as written apart. Why: a shared rare code is the strongest
    evidence two listings are one product, whatever the sellers wrote around it; first `limit` distinct codes,
    in order."""
    folded = _FOLDED_RATE.sub(" ", _code_text(text))
    out: list[str] = []
    toks = re.findall(r"[a-z0-9]+", folded)
    for i, tok in enumerate(toks):
        joined = _NUMBER_WORD.fullmatch(tok) if tok[0].isdigit() and not tok.isdigit() else None
        if joined:  # "10cup", "6disc", "100agent": the number as if written apart from its word
            if _UNIT_WORD.fullmatch(joined.group(2)):
                continue  # "7200rpm", "5000mah": a quantity
            tok = joined.group(1)
        if tok in out:
            continue
        if tok.isdigit():
            unit = i + 1 < len(toks) and _UNIT_WORD.fullmatch(toks[i + 1])
            if (len(tok) >= 5 or (len(tok) == 4 and not 1900 <= int(tok) <= 2099)) and not unit:
                out.append(tok)
        elif len(tok) >= 4 and not tok.isalpha() and not _QUANTITY.fullmatch(tok):  # [a-z0-9]: a digit in it
            out.append(tok)
        if len(out) >= limit:
            break
    return tuple(out)


#: Shortest word `word_key` reads up to its letters' order: four-letter anagrams are common words ("form" /
#: "from", "post" / "stop"); from five they are rare in titles, and a swap of two letters is the typo sellers
#: make most.
SWAP_MIN_LETTERS = 5


#: How `word_key` keys words, stamped on what stores their hashes beyond a run (a model's variant words, the
#: service's stored state), so that hashes keyed otherwise are recognised instead of matching nothing.
WORD_KEYING = "swap5"


def word_key(word: str) -> str:
    """The key a title or description word is counted and compared by: an alphabetic word of
    `SWAP_MIN_LETTERS` letters or more by its letters in sorted order, so two letters swapped or moved
    ("orchrad" / "orchard", "blaknet" / "blanket", "ikngston" / "kingston") is one word; a shorter word, a
    number or a code as it is (a code with two digits swapped is another product).

    Why: a typo made a shared rare word two unshared rare ones, which the rarity-weighted overlap reads as
    strong evidence *against*: another generator's listings lost 8-9% of their true pairs to it. Anagrams
    of five letters or more that are different words ("listen" / "silent") are rare in product titles, and
    where they meet the rest of the two titles still has to agree."""
    return "".join(sorted(word)) if len(word) >= SWAP_MIN_LETTERS and word.isalpha() else word


def word_token(word: str) -> str:
    """What a title word is hashed as: by the title encoder's rarity keys and by the variant words learned from
    the file, which must agree for a learned word to be found in a title's keys."""
    return "tw:" + word_key(word)


@lru_cache(maxsize=1 << 16)
def title_words(text: str, limit: int = 24) -> tuple[str, ...]:
    """Every word of a title, folded, in order, codes joined as `product_codes` joins them, each once:
    what the rarity-weighted title comparison weighs. Unlike the core tokens, numbers ("office 2007",
    "qb pos 6"), colours and common words stay: the file's own counts say how much each is worth."""
    folded = _code_text(text)
    return tuple(dict.fromkeys(re.findall(r"[a-z0-9]+", folded)))[:limit]


@lru_cache(maxsize=1 << 16)
def set_part(title: str) -> int:
    """The number of the part of a set a title names last ("... Vol 1 CD2" -> 2; `_PART_RE`), 0 when it names
    none. Why: two parts of one set are two products however alike the rest of their titles ("... Disc 1" /
    "... Disc 2", "... Vol 3" / "... Vol 39"): of cddb's candidate pairs scored a match that name different
    parts, none is a true pair."""
    found = _PART_RE.findall(fold(title or ""))
    return int(found[-1]) if found else 0


def code_stem(code: str) -> str:
    """The code without a trailing letter suffix of 1-3 letters after a digit ("wfw8300swh" -> "wfw8300",
    "yas71bk" -> "yas71"): sellers append colour and region letters to one model; "" when nothing is cut
    or the stem would be too short to mean anything."""
    m = re.fullmatch(r"(.*\d)([a-z]{1,3})", code)
    if not m or len(m.group(1)) < 4 or not any(c.isalpha() for c in m.group(1)):
        return ""
    return m.group(1)


def parse_price(value: str) -> float | None:
    """A price field ("1,299.00", "19.99", "€ 20") as a float; None when absent or not a positive number."""
    text = re.sub(r"[^\d.,]", "", value or "")
    if not text:
        return None
    if "," in text and "." in text:
        text = text.replace(",", "") if text.rfind(".") > text.rfind(",") else text.replace(".", "").replace(",", ".")
    elif "," in text:
        head, _, tail = text.rpartition(",")
        text = f"{head.replace(',', '')}.{tail}" if len(tail) <= 2 else text.replace(",", "")
    try:
        price = float(text)
    except ValueError:
        return None
    return price if 0 < price < 1e12 else None
