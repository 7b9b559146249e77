"""Names, places and short keys: character-level and rule-based similarity, privacy-preserving.

The transformer sees "Bob Smith" and "Robert Smith" as related but not the same, and it is weak on typos
and initials. This encoder adds what those cases need, computed on keyed hashes so no raw value is kept:

- per name token: nickname keys (bob -> {bob, robert}), two phonetic codes (Metaphone, NYSIIS), the first
  letter (so "J." can match "John") and hashed character bigrams + skip-grams (typos, transpositions);
- per name: hashed trigrams of the token-sorted name (token order, merged tokens "Mary Ann"/"Maryann");
- per city: the canonical city (aliases NYC/New York, St./Saint) and its hashed trigrams (typos);
- per key field (postcode...): a hash of the folded value and of its first three characters.

Token alignment is soft: each token takes its best counterpart on the other side. `name_cov_max` is the
coverage of the shorter name (a dropped middle name costs nothing), `name_cov_min` that of the longer one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import jellyfish
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
    normed_counts,
)
from consumer.encoders.name_pairs import best_counterparts
from consumer.engine.normalize import city_canonical, fold, name_tokens, nickname_keys
from consumer.engine.records import Record

__all__ = ["NameEncoder"]

MAX_TOKENS = 4  # names past four tokens (after titles go) are rare; the rest are dropped
N_KEYS = 8
N_DEL = 12  # token + its single-deletion variants (edit distance 1, transpositions included)
TOKEN_WORDS = 2  # 128-bit character-gram signature per token
NAME_WORDS = 4  # 256-bit trigram signature per name
CITY_WORDS = 2
NAME_VEC = 128  # hashed character-gram count vector of the name, for the candidate index
NAME_BITS = 64 * NAME_WORDS
CITY_VEC = 32
#: Stored token "length" is only the class comparison needs: 1 (an initial), 2, or 3 = three or more letters.
#: The real length would be a clear-text fragment of the name in every stored signature.
LEN_CLASSES = 3


def _token_grams(token: str) -> list[str]:
    padded = f"^{token}$"
    grams = [padded[i: i + 2] for i in range(len(padded) - 1)]
    grams += [padded[i] + "_" + padded[i + 2] for i in range(len(padded) - 2)]
    return grams


def _trigrams(text: str) -> list[str]:
    padded = f"  {text} "
    return [padded[i: i + 3] for i in range(len(padded) - 2)]


def _fill(row: np.ndarray, values: list[int]) -> None:
    uniq = sorted(set(values))[: row.shape[-1]]
    row[: len(uniq)] = uniq


def _bits(hashes: list[int], words: int) -> np.ndarray:
    """Hashed set -> fixed-width bit signature. Overlap is then popcount(a & b): one vectorised AND
    instead of a set intersection per pair, and collisions make the signature harder to reverse."""
    width = 64 * words
    mask = 0
    for h in hashes:
        mask |= 1 << (h % width)
    return np.array([(mask >> (64 * w)) & 0xFFFFFFFFFFFFFFFF for w in range(words)], np.uint64)


def _count_vec(hashes: list[int], dim: int) -> np.ndarray:
    v = np.bincount(np.array(hashes, np.int64) % dim, minlength=dim).astype(np.float32)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


class _Token(NamedTuple):
    """One distinct name token's signature (`NameEncoder._token`, cached): its columns, and its parts of
    the record's name vector and name bits."""

    keys: np.ndarray  # uint32 [N_KEYS]: nickname keys
    phon: np.ndarray  # uint32 [2]: Metaphone, NYSIIS
    grams: np.ndarray  # uint64 [TOKEN_WORDS]: bigram and skip-gram bits
    nbits: int  # popcount of `grams`
    dels: np.ndarray  # uint16 [N_DEL]: the token and its single deletions
    init: int  # the initial
    length: int  # 1, 2 or 3 (`LEN_CLASSES`)
    vec: bytes  # the name-vector slots of its "^token$" bigrams and trigrams, one byte each (a cached token
    # is kept for the run: bytes take a sixth of an int64 array's memory)
    tri: int  # NAME_BITS-wide mask of the trigrams of " token "


def _name_vecs(n: int, rows: np.ndarray, sigs: Sequence[_Token]) -> np.ndarray:
    """[n, NAME_VEC] character bigram+trigram counts of each record's tokens, order-free, L2-normed (zeros
    for a record without one): typos and initials keep most of the vector, which the transformer embedding
    does not."""
    slots = np.frombuffer(b"".join(sig.vec for sig in sigs), np.uint8).astype(np.int64)
    return normed_counts(n, np.repeat(rows, [len(sig.vec) for sig in sigs]), slots, NAME_VEC)


#: The per-token columns ([rows, MAX_TOKENS, ...]).
TOKEN_COLUMNS = ("tok_keys", "tok_phon", "tok_bits", "tok_nbits", "tok_dels", "tok_init", "tok_len")


def _token_slots(cols: Columns, used: int) -> Columns:
    """The columns with the token columns cut to their first `used` slots (`_compare_names`)."""
    return {**cols, **{c: cols[c][:, :used] for c in TOKEN_COLUMNS}}


def _popcount(a: np.ndarray) -> np.ndarray:
    # Word by word rather than `.sum(axis=-1)`: numpy reduces a 2-4 long last axis with per-row overhead
    # (~2x slower on the [P, 4, 4, 2] token pairs); integer sums, so the same counts.
    counts = np.bitwise_count(a)
    out = counts[..., 0].astype(np.int32)
    for w in range(1, a.shape[-1]):
        out += counts[..., w]
    return out


def _max_over(x: np.ndarray, axis: int) -> np.ndarray:
    """`x.max(axis=axis)` as pairwise maxima of the slices (exact; faster for a 4-long axis)."""
    parts = np.moveaxis(x, axis, 0)
    out = parts[0].copy()
    for part in parts[1:]:
        np.maximum(out, part, out=out)
    return out


def _any_equal(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """OR over slots i, j of x[..., i] == y[..., j] (broadcast over the leading axes): the same booleans
    as `(x[..., :, None] == y[..., None, :]).any(axis=(-2, -1))`, one comparison of slot pairs at a time
    instead of a reduction over a short last axis (2-3x faster on the [P, 4, 4] token pairs)."""
    hit = x[..., 0] == y[..., 0]
    for i in range(x.shape[-1]):
        for j in range(y.shape[-1]):
            if i or j:
                hit |= x[..., i] == y[..., j]
    return hit


def _dice_bits(a: np.ndarray, b: np.ndarray, na: np.ndarray | None = None, nb: np.ndarray | None = None
               ) -> np.ndarray:
    """Dice overlap of bit signatures (last axis = words); 0 where both are empty. `na`/`nb` are the
    precomputed popcounts when the caller has them."""
    inter = _popcount(a & b)
    total = (_popcount(a) if na is None else na) + (_popcount(b) if nb is None else nb)
    return np.where(total > 0, 2.0 * inter / np.maximum(total, 1), 0.0).astype(np.float32)


def token_pair_best(used: int, a: Columns, b: Columns) -> tuple[np.ndarray, np.ndarray]:
    """[pairs, used] float32: each token's best similarity among the other name's tokens, in numpy (the
    reference of the compiled `consumer.encoders.name_pairs`, and its stand-in without numba). `a`/`b`: the
    token columns; slots past `used` (empty in every pair) are left out."""
    if used < MAX_TOKENS:
        a, b = _token_slots(a, used), _token_slots(b, used)
    la, lb = a["tok_len"], b["tok_len"]
    va, vb = la > 0, lb > 0
    # [P, Ta, Tb] token-pair similarities.
    # Nickname keys: slot 0 is the token itself, then the canonical names it may stand for. A token
    # found among the other side's keys covers nickname <-> full name (bob/robert) and exact equality;
    # equal primary canonicals cover nickname <-> nickname (bob/rob). Cheaper than all-keys x all-keys.
    ka, kb = a["tok_keys"], b["tok_keys"]
    key_hit = _any_equal(ka[:, :, None, :1], kb[:, None, :, :])
    key_hit |= _any_equal(ka[:, :, None, :], kb[:, None, :, :1])
    key_hit |= (ka[:, :, None, 1] == kb[:, None, :, 1]) & (ka[:, :, None, 1] != 0)
    pa, pb = a["tok_phon"], b["tok_phon"]
    long_enough = (la >= 3)[:, :, None] & (lb >= 3)[:, None, :]
    # Phonetic codes slot by slot (primary with primary, secondary with secondary), as before.
    phon_hit = np.zeros_like(long_enough)
    for c in range(pa.shape[-1]):
        phon_hit |= (pa[:, :, None, c] == pb[:, None, :, c]) & (pa[:, :, None, c] != 0)
    phon_hit &= long_enough
    init_hit = (a["tok_init"][:, :, None] == b["tok_init"][:, None, :]) & (
        (la == 1)[:, :, None] | (lb == 1)[:, None, :])
    dice = _dice_bits(a["tok_bits"][:, :, None, :], b["tok_bits"][:, None, :, :],
                      a["tok_nbits"][:, :, None], b["tok_nbits"][:, None, :])
    # One-edit test only where it can change the answer: token pairs not already equal/nicknames
    # whose character grams overlap at all (a typo keeps most grams). ~10x less work than testing all.
    ed1 = np.zeros_like(key_hit)
    p_idx, i_idx, j_idx = np.nonzero(~key_hit & (dice >= 0.25) & (la >= 3)[:, :, None] & (lb >= 3)[:, None, :])
    if len(p_idx):
        da = a["tok_dels"][p_idx, i_idx]
        db = b["tok_dels"][p_idx, j_idx]
        ed1[p_idx, i_idx, j_idx] = ((da[:, :, None] == db[:, None, :]) & (da != 0)[:, :, None]).any(axis=(1, 2))
    # Maxima pairwise and slot by slot (exact in any order) instead of stacking the five arrays and
    # reducing over short axes: the same values, ~2x less time on [P, 4, 4].
    sim = key_hit * np.float32(1.0)
    for hit, weight in ((ed1, 0.92), (phon_hit, 0.88), (init_hit, 0.85)):
        np.maximum(sim, hit * np.float32(weight), out=sim)
    np.maximum(sim, dice * np.float32(0.9), out=sim)
    pair_valid = va[:, :, None] & vb[:, None, :]
    sim = np.where(pair_valid, sim, 0.0)
    return _max_over(sim, 2), _max_over(sim, 1)


class NameEncoder:
    """Encoder for the name, city and key fields (the non-semantic half of the text modality)."""

    name = "names"

    def __init__(self, hash_key: str, n_keys: int = 0, has_city: bool = True):
        """`has_city`: whether the profile maps any place column. Without one the city vector is all zeros,
        so it stays out of the candidate index (the person profile: 32 of its 288 dimensions, every insert
        and search paying for them, and not one inner product changed)."""
        self._hash = KeyedHasher(hash_key)
        self._n_keys = n_keys
        self._has_city = has_city
        self._token = lru_cache(maxsize=200_000)(self._token_uncached)
        self._city = lru_cache(maxsize=50_000)(self._city_uncached)

    @classmethod
    def from_settings(cls, settings: Settings, artifacts: Mapping[str, Any]) -> NameEncoder:
        return cls(settings.encoders.hash_key, n_keys=len(settings.profile.key_fields),
                   has_city=bool(settings.profile.city_fields))

    @property
    def contribution(self) -> Contribution:
        return Contribution(
            roles=("name", "city", "keys"),
            columns=("tok_keys", "tok_phon", "tok_bits", "tok_nbits", "tok_dels", "tok_init", "tok_len",
                     "name_bits", "city_key", "city_bits", "keys", "name_vec", "city_vec"),
            features=tuple(Feature(f) for f in ("name_cov_max", "name_cov_min", "name_grams", "name_worst",
                                                "city", "keys")),
            scores=(Score("name", part_of="text"), Score("city", part_of="text"),
                    Score("keys", report=False, part_of="text")),
            # Dense character-gram vectors feed the HNSW index only; pairs are compared on the exact columns.
            index=(IndexVector("name_vec", NAME_VEC, 1.0),
                   *((IndexVector("city_vec", CITY_VEC, 0.5),) if self._has_city else ())),
            index_only=("name_vec", "city_vec"),
            rarity=(Rarity("name_rarity", lambda cols: cols["tok_keys"][:, :, 0]),
                    Rarity("city_rarity", lambda cols: cols["city_key"])))

    def _token_uncached(self, token: str) -> _Token:
        """Signature of one name token: keyed hashes only (no letter, no length, in clear)."""
        h = self._hash.get
        keys = np.zeros(N_KEYS, np.uint32)
        nick = nickname_keys(token, N_KEYS - 1)
        keys[: len(nick)] = [h("k:" + k) for k in nick]
        phon = np.zeros(2, np.uint32)
        if len(token) > 1:
            phon[0] = h("m:" + jellyfish.metaphone(token))
            phon[1] = h("n:" + jellyfish.nysiis(token))
        grams = _bits([h("g:" + g) for g in _token_grams(token)], TOKEN_WORDS)
        # SymSpell's observation: two tokens within one edit (substitution, insertion, deletion or an
        # adjacent swap) share a string obtained by deleting at most one character from each. 16-bit
        # keyed hashes keep the column small; a chance collision costs ~1e-5 per comparison.
        dels = np.zeros(N_DEL, np.uint16)
        if len(token) >= 3:
            variants = [token] + [token[:i] + token[i + 1:] for i in range(len(token))]
            once = self._hash.once  # this token's own strings: cached with the token, not one by one
            hs = sorted({(once("d:" + v) & 0xFFFF) or 1 for v in variants})[:N_DEL]
            dels[: len(hs)] = hs
        # The token's share of the name vector (`_name_vecs`) and of the name's trigram bits (`_name_bits`).
        p = f"^{token}$"
        vec = bytes([h("v2:" + p[j: j + 2]) % NAME_VEC for j in range(len(p) - 1)]
                    + [h("v3:" + p[j: j + 3]) % NAME_VEC for j in range(len(p) - 2)])
        tri = 0
        for g in _trigrams(token)[1:]:  # the trigrams of " token " (the name's first one is the record's)
            tri |= 1 << (h("t:" + g) % NAME_BITS)
        # The initial as a keyed hash (only equality is ever asked of it), never the letter itself.
        return _Token(keys, phon, grams, int(_popcount(grams)), dels, h("i:" + token[0]) or 1,
                      min(len(token), LEN_CLASSES), vec, tri)

    def _city_uncached(self, city: str) -> tuple[int, np.ndarray, np.ndarray]:
        canon = city_canonical(city)
        if not canon:
            return 0, np.zeros(CITY_WORDS, np.uint64), np.zeros(CITY_VEC, np.float32)
        hashes = [self._hash("c:" + g) for g in _trigrams(canon)]
        return self._hash("city:" + canon), _bits(hashes, CITY_WORDS), _count_vec(hashes, CITY_VEC)

    def _name_bits(self, tokens: Sequence[str], sigs: Sequence[_Token]) -> int:
        """Hashed trigrams of the token-sorted name ("  " + sorted tokens joined by " " + " "), as a bit
        mask: each token's own trigrams (" token ", cached with it), the name's first one, and those across
        two neighbours' boundary. The same bits as hashing every trigram of the joined name, per record."""
        h = self._hash.get
        ordered = sorted(tokens)
        mask = 1 << (h("t:  " + ordered[0][0]) % NAME_BITS)
        for a, b in zip(ordered, ordered[1:]):
            mask |= 1 << (h("t:" + a[-1] + " " + b[0]) % NAME_BITS)
        for sig in sigs:
            mask |= sig.tri
        return mask

    def encode(self, records: Sequence[Record]) -> Columns:
        n = len(records)
        cols: Columns = {
            "tok_keys": np.zeros((n, MAX_TOKENS, N_KEYS), np.uint32),
            "tok_phon": np.zeros((n, MAX_TOKENS, 2), np.uint32),
            "tok_bits": np.zeros((n, MAX_TOKENS, TOKEN_WORDS), np.uint64),
            "tok_nbits": np.zeros((n, MAX_TOKENS), np.int32),
            "tok_dels": np.zeros((n, MAX_TOKENS, N_DEL), np.uint16),
            "tok_init": np.zeros((n, MAX_TOKENS), np.uint32),
            "tok_len": np.zeros((n, MAX_TOKENS), np.uint8),
            "name_bits": np.zeros((n, NAME_WORDS), np.uint64),
            "city_key": np.zeros(n, np.uint32),
            "city_bits": np.zeros((n, CITY_WORDS), np.uint64),
            "keys": np.zeros((n, max(self._n_keys, 1), 2), np.uint32),
            "name_vec": np.zeros((n, NAME_VEC), np.float16),
            "city_vec": np.zeros((n, CITY_VEC), np.float16),
        }
        # Per record only what is the record's own (which token sits where, the name's bits); every token's
        # signature comes from the cache and is laid into the columns for the whole batch at once.
        at: list[tuple[int, int]] = []
        sigs: list[_Token] = []
        bits = [0] * n
        h = self._hash.get
        for i, rec in enumerate(records):
            tokens = name_tokens(rec.name)[:MAX_TOKENS]
            if tokens:
                own = [self._token(t) for t in tokens]
                at += [(i, t) for t in range(len(own))]
                sigs += own
                bits[i] = self._name_bits(tokens, own)
            if rec.city:
                key, city_bits, city_vec = self._city(rec.city)
                if key:
                    cols["city_key"][i], cols["city_bits"][i], cols["city_vec"][i] = key, city_bits, city_vec
            for j, value in enumerate(rec.keys[: self._n_keys]):
                folded = fold(value).replace(" ", "")
                if folded:
                    cols["keys"][i, j] = (h("key:" + folded), h("kp:" + folded[:3]))
        if sigs:
            rows, slots = np.array(at, np.int64).T
            for col, part in (("tok_keys", 0), ("tok_phon", 1), ("tok_bits", 2), ("tok_dels", 4)):
                cols[col][rows, slots] = np.stack([sig[part] for sig in sigs])
            for col, part in (("tok_nbits", 3), ("tok_init", 5), ("tok_len", 6)):
                cols[col][rows, slots] = [sig[part] for sig in sigs]
            cols["name_vec"][:] = _name_vecs(n, rows, sigs)
            cols["name_bits"][:] = [[(m >> (64 * w)) & 0xFFFFFFFFFFFFFFFF for w in range(NAME_WORDS)] for m in bits]
        return cols

    def compare(self, a: Columns, b: Columns) -> dict[str, np.ndarray]:
        out = self._compare_names(a, b)
        # City: exact canonical match, else character trigram overlap (typos).
        ca, cb = a["city_key"], b["city_key"]
        city = np.where(ca == cb, 1.0, _dice_bits(a["city_bits"], b["city_bits"])).astype(np.float32)
        city[(ca == 0) | (cb == 0)] = np.nan
        out["city"] = city
        if self._n_keys:
            ka, kb = a["keys"], b["keys"]
            present = (ka[:, :, 0] != 0) & (kb[:, :, 0] != 0)
            score = np.where(ka[:, :, 0] == kb[:, :, 0], 1.0, np.where(ka[:, :, 1] == kb[:, :, 1], 0.5, 0.0))
            n = present.sum(axis=1)
            out["keys"] = np.where(n > 0, (score * present).sum(axis=1) / np.maximum(n, 1),
                                   np.nan).astype(np.float32)
        return out

    def scores(self, feats: Mapping[str, np.ndarray], coef: Mapping[str, float]) -> dict[str, np.ndarray]:
        """name: the better of soft token alignment (nicknames, initials, order, typos within one edit,
        dropped middle names, and the worst-covered token so a household member's other given name
        counts) and whole-name trigram overlap (typos)."""
        align = (coef["name.cov_max"] * feats["name_cov_max"] + coef["name.cov_min"] * feats["name_cov_min"]
                 + coef["name.worst"] * feats["name_worst"])
        keys = feats.get("keys")
        return {"name": np.fmax(align, feats["name_grams"]).astype(np.float32),
                "city": feats["city"].astype(np.float32),
                "keys": keys if keys is not None else np.full(len(align), np.nan, np.float32)}

    @staticmethod
    def _compare_names(a: Columns, b: Columns) -> dict[str, np.ndarray]:
        # A record's tokens fill its first slots, so token slots no pair of the batch fills are padding on
        # both sides: left out, the [P, T, T] token-pair arrays shrink (persons: mostly T = 2 or 3 of 4)
        # and every value stays the same (an empty slot's similarities are masked to 0 below).
        used = int(max(a["tok_len"].any(axis=0).sum(), b["tok_len"].any(axis=0).sum(), 1))
        # Each token's best counterpart on the other side.
        best_a, best_b = best_counterparts(used, a, b, token_pair_best)
        la, lb = a["tok_len"][:, :used], b["tok_len"][:, :used]
        va, vb = la > 0, lb > 0
        ta, tb = va.sum(axis=1), vb.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cov_a = best_a.sum(axis=1) / ta
            cov_b = best_b.sum(axis=1) / tb
        # The side with fewer tokens decides "same name, one dropped a middle name".
        fewer_a = ta <= tb
        cov_max = np.where(fewer_a, cov_a, cov_b).astype(np.float32)
        cov_min = np.where(fewer_a, cov_b, cov_a).astype(np.float32)
        # The worst-covered token of the shorter name: a household member shares surname and city but
        # not the given name, which averages hide ("Tatiana X Y" vs "Sylvia X Y" covers 2 of 3 tokens).
        worst_a = np.where(va, best_a, np.inf).min(axis=1)
        worst_b = np.where(vb, best_b, np.inf).min(axis=1)
        worst = np.where(fewer_a, worst_a, worst_b).astype(np.float32)
        grams = _dice_bits(a["name_bits"], b["name_bits"])
        none = (ta == 0) | (tb == 0)
        for arr in (cov_max, cov_min, grams, worst):
            arr[none] = np.nan
        return {"name_cov_max": cov_max, "name_cov_min": cov_min, "name_grams": grams, "name_worst": worst}
