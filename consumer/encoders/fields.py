"""Single-field string comparison on keyed hashes: the building block of the person and address encoders.

A field (a surname, a street, a suburb, a date of birth) is stored as three keyed signatures, never as
text: the hash of the folded value (exact equality), a bit signature of its character trigrams (typos,
Dice overlap) and 16-bit hashes of the value and its single-deletion variants (SymSpell's observation: two
strings within one edit, an adjacent swap included, share a string obtained by deleting at most one
character from each). Comparison is vectorised over all pairs of a micro-batch.

Similarity, per pair: 1 for the same value, ONE_EDIT for one typo apart, else the trigram Dice overlap
(which stays below ONE_EDIT for most real typos); NaN where a side has no value, so a missing field is
"cannot compare", never disagreement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

from consumer.encoders.base import Columns, KeyedHasher
from consumer.encoders.field_pairs import similarity

__all__ = ["FIELD_LEVELS", "ONE_EDIT", "FieldCodec", "field_columns", "field_similarity", "deletion_hashes",
           "one_edit"]

#: Similarity given to two values one edit apart (a typo, a dropped or swapped character).
ONE_EDIT = 0.9
#: Fellegi-Sunter comparison levels of a field similarity: exact, one edit or very close, related.
FIELD_LEVELS = (1.0, 0.88, 0.6)
#: The most trigrams of a value one edit can change (a swap of two neighbours; one typo changes 3).
MAX_EDIT_GRAMS = 4
BIT_WORDS = 2
N_DEL = 24


def field_columns(name: str) -> tuple[str, ...]:
    """The columns a field is stored in."""
    return (f"{name}_h", f"{name}_bits", f"{name}_dels")


def _trigram_bits(hasher: KeyedHasher, prefix: str, text: str) -> np.ndarray:
    padded = f"  {text} "
    width = 64 * BIT_WORDS
    mask = 0
    h, prefix = hasher.get, prefix + "g:"
    for i in range(len(padded) - 2):
        mask |= 1 << (h(prefix + padded[i: i + 3]) % width)
    return np.array([(mask >> (64 * w)) & 0xFFFFFFFFFFFFFFFF for w in range(BIT_WORDS)], np.uint64)


def deletion_hashes(hasher: KeyedHasher, prefix: str, text: str, size: int = N_DEL) -> np.ndarray:
    """16-bit keyed hashes of the value and its single-deletion variants (0 = padding)."""
    out = np.zeros(size, np.uint16)
    if len(text) < 2:
        return out
    variants = {text} | {text[:i] + text[i + 1:] for i in range(len(text))}
    h, prefix = hasher.once, prefix + "d:"  # the value's own strings: its signature is cached, not these
    hs = sorted({(h(prefix + v) & 0xFFFF) or 1 for v in variants})[:size]
    out[: len(hs)] = hs
    return out


class FieldCodec:
    """Encodes fields with one keyed hasher; signatures are cached per (namespace, raw value), because
    suburbs, postcodes, states, street numbers and given names repeat across records (the cache is
    bounded and batch-invariant: the same value always gives the same signature)."""

    def __init__(self, hasher: KeyedHasher, cache_size: int = 200_000):
        self._hash = hasher
        self._sig = lru_cache(maxsize=cache_size)(self._signature)

    def _signature(self, prefix: str, raw: str, normalise: Callable[[str], str]) -> tuple[int, bytes, bytes] | None:
        """(value hash, trigram bits, deletion hashes); the arrays as their bytes, so that a batch's rows are
        laid into the columns by one join (np.stack of 256 small arrays cost 35x as much)."""
        text = normalise(raw)
        if not text:
            return None
        return (self._hash(prefix + text), _trigram_bits(self._hash, prefix, text).tobytes(),
                deletion_hashes(self._hash, prefix, text).tobytes())

    def encode(self, values: Sequence[str], name: str, normalise: Callable[[str], str],
               namespace: str | None = None) -> Columns:
        """Columns of one field for a batch of raw values ("" = absent); `normalise` folds a value (and
        may expand abbreviations); a value that normalises to nothing is absent. Fields hashed in one
        `namespace` (default: their own name) can be compared with each other (given name with surname,
        when swapped)."""
        n = len(values)
        h = np.zeros(n, np.uint32)
        bits = np.zeros((n, BIT_WORDS), np.uint64)
        dels = np.zeros((n, N_DEL), np.uint16)
        prefix = (namespace or name) + ":"
        sigs = [self._sig(prefix, raw, normalise) if raw else None for raw in values]
        present = [i for i, sig in enumerate(sigs) if sig is not None]
        if present:  # laid into the columns for the whole batch at once, not row by row
            h[present] = [sigs[i][0] for i in present]
            bits[present] = np.frombuffer(b"".join([sigs[i][1] for i in present]), np.uint64).reshape(-1, BIT_WORDS)
            dels[present] = np.frombuffer(b"".join([sigs[i][2] for i in present]), np.uint16).reshape(-1, N_DEL)
        c_h, c_bits, c_dels = field_columns(name)
        return {c_h: h, c_bits: bits, c_dels: dels}


def one_edit(da: np.ndarray, db: np.ndarray) -> np.ndarray:
    """Whether two deletion-hash sets ([P, N], each row's non-zero values distinct and first, as
    `deletion_hashes` makes them) share a non-zero hash: sort both rows together and look for an equal
    neighbour (half the time of the [P, N, N] all-pairs test). Only the columns some row fills are sorted: a
    postcode or street number has ~6 hashes of 24 slots, and sorting the padding was most of the work."""
    if len(da) == 0:
        return np.zeros(0, bool)
    filled = np.flatnonzero((da != 0).any(axis=0) | (db != 0).any(axis=0))
    width = int(filled[-1]) + 1 if len(filled) else 1
    c = np.concatenate([da[:, :width], db[:, :width]], axis=1)
    c.sort(axis=1)
    return ((c[:, 1:] == c[:, :-1]) & (c[:, 1:] != 0)).any(axis=1)


def field_similarity(a: Columns, b: Columns, name: str, code: bool = False) -> np.ndarray:
    """Similarity of pair-aligned rows of one field: 1 equal, ONE_EDIT one edit apart, else trigram Dice;
    NaN where a side is absent. `code`: a short code (street number, postcode, phone) whose character
    overlap means nothing ("12" / "21" share no trigram): equal, one edit apart, or 0. Compiled where numba
    is (`consumer.encoders.field_pairs`: the same bits); the numpy form below is the reference."""
    c_h, c_bits, c_dels = field_columns(name)
    ha, hb = a[c_h], b[c_h]
    ba, bb = a[c_bits], b[c_bits]
    compiled = similarity(ha, hb, ba, bb, a[c_dels], b[c_dels], code, ONE_EDIT, MAX_EDIT_GRAMS)
    if compiled is not None:
        return compiled
    inter = np.bitwise_count(ba & bb).sum(axis=-1, dtype=np.int32)
    na, nb = np.bitwise_count(ba).sum(axis=-1, dtype=np.int32), np.bitwise_count(bb).sum(axis=-1, dtype=np.int32)
    total = na + nb
    dice = np.where(total > 0, 2.0 * inter / np.maximum(total, 1), 0.0)
    sim = dice.astype(np.float32)
    differ = ha != hb
    # The one-edit test only where it can change the answer: values differ, and the grams allow one edit.
    # One edit changes at most 4 of a value's trigrams (a swap of two neighbours; a typo 3), so each side
    # keeps all but at most 4 of its gram bits in common with the other. Why not a floor on the overlap:
    # "dice > 0.2" left out every swap in a 4-letter name ("rwoe" / "rowe": one shared gram of five, 0.2)
    # and every typo in a 2- or 3-letter one, while testing long names that cannot be one edit apart.
    if code:
        sim[:] = 0.0
    possible = np.minimum(na, nb) - inter <= MAX_EDIT_GRAMS
    idx = np.nonzero(differ & (possible | code) & (dice < ONE_EDIT))[0]
    if len(idx):
        hit = one_edit(a[c_dels][idx], b[c_dels][idx])
        sim[idx[hit]] = ONE_EDIT
    sim[~differ] = 1.0
    sim[(ha == 0) | (hb == 0)] = np.nan
    return sim
