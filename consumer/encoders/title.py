"""Listing text: the product title (normalised, `consumer.engine.titles`), its attributes, brand, category, price.

Features (NaN where a side lacks the value):

- `title_cos`: cosine of text-model embeddings of the core title (the attributes removed, so "500ml" vs
  "0.5 L" cannot pull it apart and "1TB" vs "2TB" cannot hold it together: those are judged below);
- `title_tok`: overlap of core tokens (keyed hashes) relative to the shorter title;
- `title_tri`: cosine of hashed character-trigram counts (typos, merged words);
- `attr_agree`: share of the attribute kinds both titles state that agree (1 = all agree, 0 = every one
  differs): a 128GB and a 256GB phone are different products however alike the rest. A kind agrees when
  the values one title states are all among the other's (a shop adding "8GB RAM" or a tint still names the
  same product), so each title keeps up to `MAX_VALUES` values per kind;
- `code_match`: model/part numbers (`consumer.engine.titles.product_codes`, from the title, else the description):
  1 when the listings share one, 0.7 when each also carries one the other lacks (a family code beside
  the variant's own), 0.4 when they share one only up to a letter suffix that one side lacks or has cut
  short ("WFW8300SWH" vs "WFW8300SW" or "WFW8300": a colour or region letter, sometimes the same product)
  or when one side's code is inside the other's ("24734" in "TV24734", "83000" in a UPC; `code_cuts`),
  0 when both carry codes and none agree, two *different* suffixes on one stem included ("LRG30357WH" vs
  "LRG30357SS": the colour slot of one model, two products) and when each side carries a number of one
  length the other lacks, whatever else they share ("ThinkPad X1 Carbon 3444" / "... 3460" beside one CPU
  code: two machine types), NaN when a side has none;
- `title_idf` (a pairwise rarity, computed by the frequency table): the overlap of the two titles' word
  sets weighted by how rare each token is in the file, so a shared "pslx350h" outweighs a shared "sony";
- `core_idf`: the same without each listing's own brand words, for pairs whose listings state one brand
  (the brand comparison reads the agreement: counted once), `title_idf` elsewhere (where the brands differ,
  the titles' differing brand words keep two makers' products of one name apart; a side without a brand
  has only its title's brand words to say it); a fit reads it only beside the brand comparison
  (`consumer.learn.reciprocal.one_of_each`), the shipped model reads `title_idf`. Why: where the brand is
  the artist (cddb), every album of an artist shares the artist's words twice over;
- `desc_idf`: the same over the descriptions' words (NaN where a side has none). Why: where a file has
  them, the description holds what the title leaves out (a CD's track list: two albums of one artist
  share the title's artist words and nothing of their tracks); the weights fitted to the file decide how
  much it counts, and a file without descriptions leaves it out;
- `variant_agree`: the same over the variant kinds only (size, colour, capacity, volume, pack, generation, edition;
  not model or bare numbers): the comparison the fit without labels uses, since codes are judged apart;
- `part_agree`: 1 when both titles name the same part of a set ("CD 2", "Vol. 3", "Season 4"; `set_part`), 0
  when they name different ones (two products: the first and second disc of an album), NaN otherwise;
- `brand`, `category`: same normalised value or not; `price`: 1 - |a - b| / max(a, b), only in the same
  currency (prices are compared relatively; another currency says nothing without a rate).

`attr_agree`, `variant_agree`, `code_match` and `part_agree` at 0 are *conflicts* (`Feature.conflict`): hard evidence
of two products, which the clustering's partner re-check never lets a group straddle, whatever the scores; a
variant or a part that differs also keeps a record out of a cluster it scored a match with (`Feature.decisive`).

Stored: keyed hashes, the trigram vector and the embedding; the price as a number (not personal data).

Why this module is long: one encoder whose columns and comparisons share their constants and readers; its
pair kernels are apart (`consumer.encoders.title_pairs`), its text readers too (`consumer.engine.titles`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from consumer.config import Settings
from consumer.encoders.base import (
    Columns,
    Contribution,
    Feature,
    IndexVector,
    KeyedHasher,
    Rarity,
    Score,
    Support,
    nanmean_weighted,
)
from consumer.encoders.title_pairs import attribute_agreement, code_match, shared_tokens
from consumer.engine.normalize import fold
from consumer.engine.records import Record
from consumer.engine.titles import (
    ATTRIBUTE_KINDS,
    BASIC_COLOURS,
    WORD_KEYING,
    code_stem,
    colour_words,
    parse_price,
    parse_title,
    product_codes,
    set_part,
    title_words,
    word_key,
    word_token,
)

__all__ = ["TitleEncoder"]

MAX_TOKENS = 16
#: Values kept per attribute kind (a title stating "8GB RAM" and "256GB" holds two capacities).
MAX_VALUES = 4
TRI_DIM = 256
MAX_CODES = 4
#: Shorter forms kept per code (`code_cuts`): its suffix letters cut, and the parts another shop's code
#: could be (prefixes and suffixes of five characters or more, a UPC's item number).
CUTS_PER_CODE = 12
#: The shortest code part `code_cuts` keeps (four characters are too often another model's whole code).
MIN_CUT = 5
#: Numbers this long or shorter are model numbers whose slot two products fill differently (`_code_match`);
#: longer ones are barcodes, which shops write in several forms for one product.
MAX_SLOT_DIGITS = 8
#: Buckets of the code vector in the candidate index (listings sharing a code meet in the index).
CODE_DIM = 128
#: Attribute kinds that name a variant of one product (another size or colour is another product); model
#: numbers are judged by `code_match`, bare numbers are too ambiguous.
VARIANT_KINDS = tuple(k for k in ATTRIBUTE_KINDS if k not in ("model", "num"))
_VARIANT_COLS = np.array([ATTRIBUTE_KINDS.index(k) for k in VARIANT_KINDS])
#: Variant kinds on which one disagreement is a conflict however many other kinds agree (`compare`): a
#: colour, an edition, a pack count, a laptop's working memory ("4 GB RAM" / "8 GB RAM": two models of one
#: line). Not storage capacity or size: files whose truth joins a laptop's disk sizes (sigmod-laptops) fell
#: 0.036 when every kind was decisive.
_DECISIVE = np.array([ATTRIBUTE_KINDS.index(k) for k in ("colour", "tier", "pack", "ram")])
#: `colour_agree`: 1 where both titles name a colour and agree, 0 where they name different ones, NaN where
#: either names none. Why apart from `variant_agree`: "Lite" and "Lite Blue" agree on every variant both
#: state, yet only a colour both titles name may overrule what the photos' colours say
#: (`consumer.engine.comparison.WAIVERS`).
_COLOUR = ATTRIBUTE_KINDS.index("colour")
#: `tier_alone`: 0 where one title states an edition ("Lite", "Pro") and the other none, 1 where both state
#: one, NaN where neither does. Shops leave an edition out as often as a colour (Abt-Buy), so this is no
#: conflict of itself; a file whose prices show such pairs to be two editions makes it one
#: (`consumer.learn.tier_cut`).
_TIER = slice(ATTRIBUTE_KINDS.index("tier") * MAX_VALUES, (ATTRIBUTE_KINDS.index("tier") + 1) * MAX_VALUES)
#: Tokens (title core tokens plus codes) weighed by rarity in `title_idf`.
MAX_IDF_KEYS = 24
#: Description words weighed by rarity in `desc_idf` (the first ones: a description's opening states the
#: product, its tail is boilerplate).
MAX_DESC_KEYS = 32
#: Fellegi-Sunter levels (fitting without labels, `consumer/learn/unsupervised.py`).
CODE_LEVELS = (1.0, 0.7, 0.4)
IDF_LEVELS = (0.8, 0.6, 0.4, 0.25)


def _core_keys(cols: Columns) -> np.ndarray:
    """`core_idf`'s keys; a record written before the column existed (none, or a row of zeros in a store
    that holds newer records too) reads its title's keys with the brand."""
    core, idf = cols.get("core_keys"), cols["idf_keys"]
    return idf if core is None else np.where(core.any(axis=1)[:, None], core, idf)


def _same_brand(a: Columns, b: Columns) -> np.ndarray:
    """Pairs whose records state one brand (`core_idf` applies)."""
    ka, kb = a["listing_keys"][:, 0], b["listing_keys"][:, 0]
    return (ka != 0) & (ka == kb)


def _trigrams(text: str) -> list[str]:
    padded = f"  {text} "
    return [padded[i: i + 3] for i in range(len(padded) - 2)]


def code_cuts(code: str, stem: str) -> list[str]:
    """The shorter codes another shop may write for `code` (folded, as `product_codes` gives it): the code
    with one or two suffix letters cut ("wfw8300swh" -> "wfw8300sw", "wfw8300s"), then the code inside a
    longer one, five characters at least: a prefix ("sc1ab1" holds "sc1ab", "9676850403" the "967685" of
    "967685-0403"), the code after a prefix of up to three characters ("tv24734" holds "24734", "nntk903s"
    "tk903s") and, in a UPC, the maker's item number before the check digit ("743840830009" holds
    "83000"). Compared only with the other side's *whole* codes, so two different suffixes on one stem
    ("lrg30357wh" / "lrg30357ss") still share nothing. Why: Abt-Buy's missed pairs included 90 whose codes
    "disagreed" only so (a hard no), among them 24734 / TV24734 and 83000 / 743840830009."""
    out = [code[:-k] for k in (1, 2) if stem and len(code) - k > len(stem)]
    if code.isdigit() and len(code) >= 11:
        out.append(code[-6:-1])
    # A maker's or shop's prefix before the code ("tv", "rp", "nn"): the code without its first characters.
    out += [code[k:] for k in (1, 2, 3) if len(code) - k >= MIN_CUT and any(c.isdigit() for c in code[k:])]
    out += [code[:size] for size in range(len(code) - 1, MIN_CUT - 1, -1)]
    return list(dict.fromkeys(c for c in out if c != code))


def _shares(ka: np.ndarray, kb: np.ndarray) -> np.ndarray:
    return ((ka[:, :, None] == kb[:, None, :]) & (ka[:, :, None] != 0)).any(axis=(1, 2))


def _code_match(a: Columns, b: Columns) -> np.ndarray:
    """1 a shared code, 0.7 a shared code while each side also carries one the other lacks (a family code
    plus a variant's own: "DVP-FX820 ... DVPFX820R" vs "DVP-FX820 ... DVPFX820LI"), 0.4 codes shared only
    up to a letter suffix or one inside the other (`code_cuts`), 0 both coded and none shared or each side
    with a number of one length the other lacks (two machine types), NaN when a side has none."""
    ca, cb = a["codes"], b["codes"]
    compiled = code_match(ca, cb, a["code_stems"], b["code_stems"], a["code_cuts"], b["code_cuts"],
                          a["code_digits"], b["code_digits"])
    if compiled is not None:  # `consumer.encoders.title_pairs`: the same bits; the numpy form is the reference
        return compiled
    both = (ca != 0).any(axis=1) & (cb != 0).any(axis=1)
    eq = (ca[:, :, None] == cb[:, None, :]) & (ca[:, :, None] != 0)
    only_a, only_b = (ca != 0) & ~eq.any(axis=2), (cb != 0) & ~eq.any(axis=1)  # per code: the other side lacks it
    extra_a, extra_b = only_a.any(axis=1), only_b.any(axis=1)
    shared = eq.any(axis=(1, 2))
    # A code whose stem is the code itself carries no suffix ("bare"). Shared stems count (0.4) only when a
    # side is bare or one suffix is the other cut short ("WFW8300SWH" / "WFW8300SW"): two different suffixes
    # on one stem ("LRG30357WH" / "LRG30357SS") fill the variant slot of one model, two products.
    sa, sb = a["code_stems"], b["code_stems"]
    same_stem = (sa[:, :, None] == sb[:, None, :]) & (sa[:, :, None] != 0)
    bare = (sa == ca)[:, :, None] | (sb == cb)[:, None, :]
    cut = _shares(ca, b["code_cuts"]) | _shares(cb, a["code_cuts"])
    near = (same_stem & bare).any(axis=(1, 2)) | cut
    # Two different numbers of one form, each on one side only ("ThinkPad X1 Carbon 3444" / "... 3460" beside
    # a shared CPU code "3667U"): the machine-type slot filled twice, two products, whatever else is shared.
    da, db = a["code_digits"], b["code_digits"]
    clash = (only_a[:, :, None] & only_b[:, None, :] & (da[:, :, None] == db[:, None, :])
             & (da[:, :, None] > 0)).any(axis=(1, 2))
    out = np.where(clash, 0.0, np.where(shared & ~(extra_a & extra_b), 1.0,
                                        np.where(shared, 0.7, np.where(near, 0.4, 0.0))))
    return np.where(both, out, np.nan).astype(np.float32)


def _attribute_agreement(xa: np.ndarray, xb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pair and attribute kind: (both titles state it, they agree). Two titles agree on a kind when the
    values one states are all among the other's: a shop that adds "8GB RAM" beside "256GB", or a tint
    ("Graphite Purple") beside the colour, still names the same product; each stating a value the other
    lacks ("128GB" / "256GB") is two products."""
    compiled = attribute_agreement(xa, xb, MAX_VALUES)
    if compiled is not None:  # `consumer.encoders.title_pairs`: the same bits; the numpy form is the reference
        return compiled
    a = xa.reshape(len(xa), xa.shape[1] // MAX_VALUES, MAX_VALUES)
    b = xb.reshape(len(xb), xb.shape[1] // MAX_VALUES, MAX_VALUES)
    in_b = (a[:, :, :, None] == b[:, :, None, :]).any(axis=3) | (a == 0)
    in_a = (b[:, :, :, None] == a[:, :, None, :]).any(axis=3) | (b == 0)
    shared = (a != 0).any(axis=2) & (b != 0).any(axis=2)
    return shared, in_b.all(axis=2) | in_a.all(axis=2)


def _attribute_token(kind: str, value: str) -> str:
    """What a title attribute's value is hashed as (`title_attrs`); the colour aliases hash the same."""
    return f"ta:{kind}:{value}"


def colour_keys(hasher: KeyedHasher) -> dict[int, str]:
    """{keyed hash of a title word (as the variant slots hold it): the colour the built-in table says it names}."""
    return {int(hasher.get(word_token(word))): colour for word, colour in colour_words().items()}


def colour_aliases(rows: Sequence[Sequence[int]], hasher: KeyedHasher) -> dict[int, int]:
    """{hashed colour attribute of a shade: that of the basic colour it names in this file}, from the variant
    slots' spelling groups (`rows`: [[keyed hash of a title word, slot, spelling], ...]). Why: a group that a
    file's photos (`consumer.learn.slot_photos`) or spellings made of one basic colour and shades the table
    also lists ("Black", "Charcoal", "Midnight") stops the slots' conflict, but the title's colour attribute
    still read two colours, a decisive conflict. A group with no basic colour, or two, aliases nothing."""
    table = colour_keys(hasher)
    colours: dict[tuple[int, int], set[str]] = {}
    for key, slot, spelling in rows:
        if int(key) in table:
            colours.setdefault((int(slot), int(spelling)), set()).add(table[int(key)])
    out: dict[int, int] = {}
    for found in colours.values():
        basic = found & BASIC_COLOURS
        if len(basic) == 1:
            target = int(hasher.get(_attribute_token("colour", next(iter(basic)))))
            out.update({int(hasher.get(_attribute_token("colour", c))): target for c in found - basic})
    return out


def _aliased(attrs: np.ndarray, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`attrs` with its colour values read through the sorted alias `keys` -> `values` (a copy when any
    changes)."""
    if not len(keys):
        return attrs
    cols = slice(_COLOUR * MAX_VALUES, (_COLOUR + 1) * MAX_VALUES)
    block = attrs[:, cols]
    pos = np.minimum(np.searchsorted(keys, block), len(keys) - 1)
    hit = keys[pos] == block
    if not hit.any():
        return attrs
    out = attrs.copy()
    out[:, cols] = np.where(hit, values[pos], block)
    return out


class TitleEncoder:
    name = "title"
    #: How its word hashes are keyed (`consumer.engine.titles.word_key`): stamped on the service's stored
    #: state (`consumer.service.state.encoder_models`), since state keyed otherwise matches none of them.
    keying = WORD_KEYING

    def __init__(self, text_encoder: Any, hash_key: str, variant_slots: Sequence[Sequence[int]] | None = None):
        """`variant_slots`: [[keyed hash of a title word, slot, spelling], ...], the file's variant words
        (`consumer.learn.variants`, carried by a fitted model); None or empty: the built-in tables only."""
        self.text = text_encoder
        self.dim: int = text_encoder.dim
        self._hash = KeyedHasher(hash_key)
        self._cache: dict[str, np.ndarray] = {}
        rows = sorted((int(key), int(slot), int(spelling)) for key, slot, spelling in (variant_slots or ()))
        self._slot_keys = np.array([r[0] for r in rows], np.uint32)
        self._slot_ids = np.array([r[1] + 1 for r in rows], np.int32)
        self._spellings = np.array([r[2] for r in rows], np.int32)  # one word written two ways: no conflict
        self._slot_width = int(self._slot_ids.max(initial=0)) + 1  # (row, slot) as one integer key
        #: A filter on the keys' low 16 bits: one gather per key instead of a binary search (a 100k-record
        #: file compares 3M pairs of 24 keys each side; the searches alone made the run 10% slower).
        self._slot_bits = np.zeros(1 << 16, bool)
        self._slot_bits[self._slot_keys & 0xFFFF] = True
        alias = sorted(colour_aliases(rows, self._hash).items())  # the file's shades read as basic colours
        self._alias_keys = np.array([k for k, _ in alias], np.uint32)
        self._alias_values = np.array([v for _, v in alias], np.uint32)

    @classmethod
    def from_settings(cls, settings: Settings, artifacts: Mapping[str, Any]) -> TitleEncoder:
        slots = artifacts.get("variant_slots") if settings.fusion.learn_variants else None
        return cls(artifacts["text_encoder"], settings.encoders.hash_key, slots)

    @property
    def variant_slots(self) -> int:
        """How many variant words this encoder reads (learned from the file; 0: none)."""
        return len(self._slot_keys)

    def _slot_words(self, keys: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The slot words of each row of `keys` that the same row of `other` lacks, sparse: (row, slot,
        spelling) per word. Only keys past the 16-bit filter are looked up (most title words are none)."""
        r, c = np.nonzero(self._slot_bits[keys & 0xFFFF])
        k = keys[r, c]
        pos = np.minimum(np.searchsorted(self._slot_keys, k), len(self._slot_keys) - 1)
        hit = (self._slot_keys[pos] == k) & (k != 0)
        r, k, pos = r[hit], k[hit], pos[hit]
        lacks = ~(other[r] == k[:, None]).any(axis=1)
        return r[lacks], self._slot_ids[pos[lacks]], self._spellings[pos[lacks]]

    def slot_conflicts(self, a: Columns, b: Columns) -> np.ndarray:
        """Per pair, the number of learned slots on which each title carries a word the other lacks ("Sand" /
        "Navy", "Warm White" / "Cool White"; two spellings of one word excepted): read as that many
        disagreeing attribute kinds. Sparse over the few slot words, since it runs on every candidate pair."""
        ka, kb = a["idf_keys"], b["idf_keys"]
        out = np.zeros(len(ka), np.int32)
        if not len(self._slot_keys) or not len(ka):
            return out
        (ra, sa, pa), (rb, sb, pb) = self._slot_words(ka, kb), self._slot_words(kb, ka)
        if not len(ra) or not len(rb):
            return out
        width = self._slot_width
        key_a, key_b = ra.astype(np.int64) * width + sa, rb.astype(np.int64) * width + sb
        keys = np.concatenate([key_a, key_b])
        spell = np.concatenate([pa, pb])
        uniq, inverse = np.unique(keys, return_inverse=True)
        lo = np.full(len(uniq), np.iinfo(np.int32).max, np.int64)
        hi = np.full(len(uniq), -1, np.int64)
        np.minimum.at(lo, inverse, spell)
        np.maximum.at(hi, inverse, spell)
        both = np.isin(uniq, key_a) & np.isin(uniq, key_b)  # the slot filled on each side by a word the other lacks
        clash = uniq[both & (lo != hi)]
        np.add.at(out, clash // width, 1)
        return out

    @property
    def contribution(self) -> Contribution:
        return Contribution(
            roles=("title", "brand", "category", "price", "currency"),
            columns=("title_vec", "title_tri", "title_tok", "title_attrs", "listing_keys", "price", "codes",
                     "code_stems", "code_cuts", "idf_keys", "core_keys", "desc_keys", "code_vec", "part"),
            features=(Feature("title_cos"), Feature("title_tok"), Feature("title_tri"),
                      Feature("attr_agree", conflict=0.0),
                      Feature("variant_agree", levels=(1.0, 0.5), conflict=0.0, decisive=True),
                      Feature("brand", levels=(1.0,)),
                      Feature("category", levels=(1.0,)), Feature("price", levels=(0.9, 0.6)),
                      Feature("code_match", levels=CODE_LEVELS, conflict=0.0), Feature("colour_agree"),
                      Feature("tier_alone"), Feature("part_agree", conflict=0.0, decisive=True)),
            rarity=(Rarity("title_idf", lambda cols: cols["idf_keys"], pairwise=True, levels=IDF_LEVELS),
                    Rarity("core_idf", _core_keys, pairwise=True, levels=IDF_LEVELS, only_if=_same_brand,
                           otherwise="title_idf", read_by="brand"),
                    Rarity("desc_idf", lambda cols: cols["desc_keys"], pairwise=True, levels=IDF_LEVELS)),
            scores=(Score("title"), Score("price", report=True, part_of=None)),
            index=(IndexVector("title_vec", self.dim, 0.5), IndexVector("title_tri", TRI_DIM, 1.0),
                   IndexVector("code_vec", CODE_DIM, 1.0)),
            index_only=("code_vec",),
            # One product: a shared model code, every attribute both titles state agreeing, a variant among
            # them (capacity, colour, pack...), and titles that overlap beyond their common words.
            support=(Support("identity", (("code_match", 1.0), ("attr_agree", 1.0), ("variant_agree", 1.0),
                                          ("title_idf", IDF_LEVELS[2]))),),
            coefficients={"title.weight": 0.65, "price.weight": 0.1, "title.semantic_floor": 0.5})

    def _embed(self, texts: list[str]) -> np.ndarray:
        missing = sorted({t for t in texts if t not in self._cache})
        if missing:
            if len(self._cache) > 200_000:
                self._cache.clear()
            self._cache.update(zip(missing, self.text.encode(missing).astype(np.float32)))
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def encode(self, records: Sequence[Record]) -> Columns:
        n = len(records)
        h = self._hash.get  # the cached hash without `__call__`'s frame (a listing hashes ~100 words)
        titles = [parse_title(r.role("title"), r.role("brand")) for r in records]
        vec = self._embed([t.text for t in titles])
        vec[[not t.core for t in titles]] = 0.0
        tri = np.zeros((n, TRI_DIM), np.float32)
        tok = np.zeros((n, MAX_TOKENS), np.uint32)
        attr = np.zeros((n, len(ATTRIBUTE_KINDS) * MAX_VALUES), np.uint32)  # (kind, value) hashes
        keys = np.zeros((n, 3), np.uint32)  # brand, category, currency
        price = np.full(n, np.nan, np.float32)
        codes = np.zeros((n, MAX_CODES), np.uint32)
        digits = np.zeros((n, MAX_CODES), np.uint8)  # a code of digits only: its length (`_code_match`)
        stems = np.zeros((n, MAX_CODES), np.uint32)
        cuts = np.zeros((n, CUTS_PER_CODE * MAX_CODES), np.uint32)  # `code_cuts`, per code
        idf_keys = np.zeros((n, MAX_IDF_KEYS), np.uint32)
        core_keys = np.zeros((n, MAX_IDF_KEYS), np.uint32)
        desc_keys = np.zeros((n, MAX_DESC_KEYS), np.uint32)
        code_vec = np.zeros((n, CODE_DIM), np.float32)
        part = np.array([set_part(r.role("title")) for r in records], np.uint8)  # a set's part (0: none)
        for i, (rec, t) in enumerate(zip(records, titles)):
            found = product_codes(rec.role("title"), MAX_CODES) or product_codes(rec.role("description"), MAX_CODES)
            for j, code in enumerate(found):
                codes[i, j] = h("tk:" + code)
                if code.isdigit() and len(code) <= MAX_SLOT_DIGITS:
                    digits[i, j] = len(code)
                stem = code_stem(code)
                stems[i, j] = h("tk:" + (stem or code))
                parts = code_cuts(code, stem)[:CUTS_PER_CODE]
                cuts[i, CUTS_PER_CODE * j: CUTS_PER_CODE * j + len(parts)] = [h("tk:" + c) for c in parts]
            if found:
                code_vec[i, np.concatenate([codes[i, :len(found)], stems[i, :len(found)]]) % CODE_DIM] = 1.0
                code_vec[i] /= np.linalg.norm(code_vec[i])
            said = {w: h(word_token(w)) for w in title_words(rec.role("title"))}  # in order, each once
            brand_words = title_words(rec.role("brand"), 3)
            code_keys = [h("tw:" + c) for c in found]
            words = list(dict.fromkeys([*said.values(), *(h(word_token(w)) for w in brand_words),
                                        *code_keys]))[:MAX_IDF_KEYS]
            idf_keys[i, :len(words)] = words
            # the title without its own brand's words (all of it when nothing else is left): `core_idf`
            core = [k for w, k in said.items() if w not in brand_words] or list(said.values())
            words = list(dict.fromkeys(core + code_keys))[:MAX_IDF_KEYS]
            core_keys[i, :len(words)] = words
            desc_words = title_words(rec.role("description"), MAX_DESC_KEYS)
            desc = list(dict.fromkeys(h("td:" + word_key(w)) for w in desc_words))
            desc_keys[i, :len(desc)] = desc
            if t.core:
                grams = np.array([h("tt:" + g) for g in _trigrams(t.text)], np.int64) % TRI_DIM
                counts = np.bincount(grams, minlength=TRI_DIM).astype(np.float32)
                tri[i] = counts / max(float(np.linalg.norm(counts)), 1e-9)
                hashes = sorted({h("tk:" + word_key(w)) for w in t.core})[:MAX_TOKENS]
                tok[i, :len(hashes)] = hashes
            for j, kind in enumerate(ATTRIBUTE_KINDS):
                for v, value in enumerate(t.attributes.get(kind, ())[:MAX_VALUES]):
                    attr[i, j * MAX_VALUES + v] = h(_attribute_token(kind, value))
            for j, role in enumerate(("brand", "category", "currency")):
                value = fold(rec.role(role))
                if value:
                    keys[i, j] = h(f"lk:{role}:" + value)
            p = parse_price(rec.role("price"))
            if p is not None:
                price[i] = p
        return {"title_vec": vec, "title_tri": tri, "title_tok": tok, "title_attrs": attr, "listing_keys": keys,
                "price": price, "codes": codes, "code_digits": digits, "code_stems": stems, "code_cuts": cuts,
                "idf_keys": idf_keys, "core_keys": core_keys, "desc_keys": desc_keys, "code_vec": code_vec,
                "part": part}

    def compare(self, a: Columns, b: Columns) -> dict[str, np.ndarray]:
        has = a["title_vec"].any(axis=1) & b["title_vec"].any(axis=1)
        cos = np.where(has, np.einsum("ij,ij->i", a["title_vec"], b["title_vec"]), np.nan).astype(np.float32)
        tri = np.where(has, np.einsum("ij,ij->i", a["title_tri"], b["title_tri"]), np.nan).astype(np.float32)
        ta, tb = a["title_tok"], b["title_tok"]
        inter = shared_tokens(ta, tb)  # compiled (`consumer.encoders.title_pairs`), else numpy: the same counts
        if inter is None:
            inter = ((ta[:, :, None] == tb[:, None, :]) & (ta[:, :, None] != 0)).sum(axis=(1, 2))
        na, nb = (ta != 0).sum(axis=1), (tb != 0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            tok = np.where(has, inter / np.maximum(np.minimum(na, nb), 1), np.nan).astype(np.float32)
            keys, values = self._alias_keys, self._alias_values
            shared, same = _attribute_agreement(_aliased(a["title_attrs"], keys, values),
                                                _aliased(b["title_attrs"], keys, values))
            clashes = self.slot_conflicts(a, b)  # learned slots: each conflict one more disagreeing kind
            agree = (shared & same).sum(axis=1) / (shared.sum(axis=1) + clashes)
            vs = shared[:, _VARIANT_COLS]
            variant = (vs & same[:, _VARIANT_COLS]).sum(axis=1) / (vs.sum(axis=1) + clashes)
            # Two colours, editions or pack counts are two products whatever else agrees ("Glide 5X ... Red" /
            # "... Purple": the "5X" read as a pack both state made it half an agreement, no conflict; "Red
            # 2-Pack" / "Red 4-Pack"; "Lite White" / "White Pro"; `_DECISIVE`).
            variant = np.where((shared[:, _DECISIVE] & ~same[:, _DECISIVE]).any(axis=1), 0.0, variant)
            colour = np.where(shared[:, _COLOUR], same[:, _COLOUR], np.nan).astype(np.float32)
        ka, kb = a["listing_keys"], b["listing_keys"]
        same = np.where((ka == 0) | (kb == 0), np.nan, (ka == kb).astype(np.float32))
        pa, pb = a["price"], b["price"]
        with np.errstate(invalid="ignore"):
            price = 1.0 - np.abs(pa - pb) / np.maximum(pa, pb)
        price[np.isnan(same[:, 2]) | (same[:, 2] == 0)] = np.nan  # other or unknown currency
        code = _code_match(a, b)
        sa, sb = a["title_attrs"][:, _TIER].any(axis=1), b["title_attrs"][:, _TIER].any(axis=1)
        tier = np.where(sa & sb, 1.0, np.where(sa | sb, 0.0, np.nan)).astype(np.float32)
        qa, qb = a.get("part"), b.get("part")  # absent from state an older version wrote: no part known
        part = (np.full(len(cos), np.nan, np.float32) if qa is None or qb is None
                else np.where((qa == 0) | (qb == 0), np.nan, (qa == qb).astype(np.float32)).astype(np.float32))
        return {"title_cos": cos, "title_tok": tok, "title_tri": tri, "attr_agree": agree.astype(np.float32),
                "variant_agree": variant.astype(np.float32), "part_agree": part,
                "brand": same[:, 0], "category": same[:, 1], "price": price.astype(np.float32), "code_match": code,
                "colour_agree": colour, "tier_alone": tier}

    def scores(self, feats: Mapping[str, np.ndarray], coef: Mapping[str, float]) -> dict[str, np.ndarray]:
        floor = coef["title.semantic_floor"]
        semantic = np.clip((feats["title_cos"] - floor) / (1 - floor), 0.0, 1.0)
        text = nanmean_weighted([(semantic, 0.3), (feats["title_tok"], 0.35), (feats["title_tri"], 0.35)])
        agree = feats["attr_agree"]
        # A conflicting attribute is hard evidence against: it scales the title score down to nothing.
        text = np.where(np.isnan(agree), text, text * agree ** 2)
        brand = feats["brand"]
        text = np.where(brand == 0, text * 0.5, text)
        return {"title": text.astype(np.float32), "price": feats["price"]}
