"""The one interface every modality encoder implements.

An encoder turns records into *columns* (numpy arrays whose first axis is the record), and compares
pair-aligned columns: row i of `a` with row i of `b`, for a whole micro-batch of pairs in one call.
Columns hold vectors and keyed hashes only, never raw values: they are what the state store persists and
what the index is rebuilt from, so the privacy rule (no names or cities at rest) holds by construction.

Comparing a micro-batch of pairs at once (not one record at a time) is what makes the Python overhead
disappear: every comparison is a handful of numpy operations over thousands of pairs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

import numpy as np

from consumer.records import Record

__all__ = ["Columns", "Encoder", "KeyedHasher"]

Columns = dict[str, np.ndarray]


class Encoder(Protocol):
    """A modality: records -> columns; (query columns, candidate columns) -> named similarities."""

    name: str

    def encode(self, records: Sequence[Record]) -> Columns:
        """Columns for `records`, first axis aligned with the input order."""
        ...

    def compare(self, a: Columns, b: Columns) -> dict[str, np.ndarray]:
        """Similarities of pair-aligned rows (a[i] vs b[i]); float32 [P], NaN where a side lacks the
        modality."""
        ...


class KeyedHasher:
    """32-bit keyed hashes (BLAKE2b with a deployment key) of name/city fragments.

    Keyed, so a stored signature cannot be reversed with a dictionary of common names without the key;
    never 0, so 0 can mean "padding" in fixed-width columns.
    """

    def __init__(self, key: str):
        self._key = hashlib.blake2b(key.encode("utf-8"), digest_size=32).digest()
        # Fragments (trigrams, tokens) repeat endlessly across records: cache their hashes.
        self._cached = lru_cache(maxsize=1 << 19)(self._hash)

    def __call__(self, text: str) -> int:
        return self._cached(text)

    def _hash(self, text: str) -> int:
        h = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=4, key=self._key).digest(),
                           "little")
        return h or 1
