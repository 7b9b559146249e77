"""Exact-key candidates: earlier records that share a blocking key, beside the HNSW search.

Why a second candidate source: the composite index vector ranks earlier records by a weighted sum of
similarities, so a duplicate whose names were both rewritten can fall outside the k nearest neighbours
even when its date of birth, postcode and street number are the same (FEBRL4: all 25 true pairs the final
clusters missed were never candidates, and 24 of them scored as matches once compared). A probabilistic
linker's blocking rules (Splink: `dob`, `postcode`, ...) find such pairs by equality; this is the same
idea, incremental: every record looks up the keys of the records before it, then adds its own.

- The keys are declared by the encoders (`Contribution.keys`): each a tuple of keyed-hash columns the
  encoder already stores (0 = value missing), e.g. the date of birth, or postcode + street number. A key
  counts only when every part is present. Nothing raw is stored here: the table holds 64-bit mixes of
  keyed hashes and row numbers.
- **Bounded**: a key held by more than `cap` records (a default date such as 1900-01-01, a large block of
  flats, a placeholder postcode) is too common to identify anyone; it is dropped from the table and
  proposes nothing from then on (`saturated`). So one record gets at most `cap` candidates per key, and a
  key's memory never exceeds `cap` rows. The records that met through it before it saturated stay
  candidates of each other, as the first `cap` sharing a value are few enough to score.
- Incremental and restorable: `candidates` works record by record in arrival order (earlier records of
  the same micro-batch included), and `add` rebuilds the table from persisted columns (`absorb` /
  `restore`: the key columns are ordinary stored columns), so a restarted consumer or a replica proposes
  the same candidates as the one it replaces.

Pure: no I/O, no clock. A profile whose encoders declare no key (the CRM profile) builds no table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from consumer.encoders.base import Columns

__all__ = ["KeyBlocker", "key_blocker", "key_bytes", "merge"]

_MIX = np.uint64(0x100000001B3)  # FNV-1a prime: mixes the parts of a key into one 64-bit value


class KeyBlocker:
    """Earlier rows sharing an exact key with each new record (at most `cap` per key)."""

    def __init__(self, keys: Sequence[tuple[str, ...]], cap: int):
        if cap < 1:
            raise ValueError("key cap must be >= 1")
        self.keys = tuple(tuple(k) for k in keys)
        self.cap = cap
        #: key value -> rows holding it, in arrival order; None once more than `cap` rows held it.
        self._table: dict[int, list[int] | None] = {}
        #: Keys dropped for being too common (counted for the summary and tests, never their values).
        self.saturated = 0

    def _values(self, cols: Columns) -> np.ndarray:
        """[records, keys] uint64 key values; 0 where a part is missing (such a key is skipped)."""
        n = len(next(iter(cols.values()))) if cols else 0
        out = np.zeros((n, len(self.keys)), np.uint64)
        with np.errstate(over="ignore"):
            for j, parts in enumerate(self.keys):
                acc = np.full(n, j + 1, np.uint64)
                present = np.ones(n, bool)
                for p in parts:
                    h = np.asarray(cols[p]).astype(np.uint64)
                    present &= h != 0
                    acc = (acc ^ h) * _MIX
                out[:, j] = np.where(present, acc | np.uint64(1), 0)  # never 0 when present
        return out

    def candidates(self, cols: Columns, rows: Sequence[int]) -> list[np.ndarray]:
        """Per record (in order): the sorted earlier rows sharing one of its keys; each record is added
        after its own lookup, so later records of the same batch find it."""
        values = self._values(cols).tolist()
        out: list[np.ndarray] = []
        for row, vals in zip((int(r) for r in rows), values):
            found: set[int] = set()
            for v in vals:
                if v:
                    bucket = self._table.get(v)
                    if bucket:
                        found.update(bucket)
                    self._insert(v, row)
            out.append(np.fromiter(sorted(found), np.int64, len(found)))
        return out

    def add(self, cols: Columns, rows: Sequence[int]) -> None:
        """Add records decided elsewhere (restored, absorbed) in arrival order, without looking anything up."""
        for row, vals in zip((int(r) for r in rows), self._values(cols).tolist()):
            for v in vals:
                if v:
                    self._insert(v, row)

    def remove(self, cols: Columns, rows: Sequence[int]) -> None:
        """Forget erased rows (their stored columns, gathered before the store zeroes them): an erased
        record must not come back as a candidate. A saturated key stays saturated (it identified nobody)."""
        for row, vals in zip((int(r) for r in rows), self._values(cols).tolist()):
            for v in vals:
                bucket = self._table.get(v) if v else None
                if bucket and row in bucket:
                    bucket.remove(row)
                    if not bucket:
                        del self._table[v]

    def _insert(self, value: int, row: int) -> None:
        bucket = self._table.get(value, [])
        if bucket is None:
            return
        if len(bucket) >= self.cap:
            self._table[value] = None  # too common to identify anyone: propose nothing from now on
            self.saturated += 1
            return
        bucket.append(row)
        self._table[value] = bucket

    def __len__(self) -> int:
        return len(self._table)

    def memory_bytes(self) -> int:
        """Rough size of the table (dict slot, list and int objects): for `Pipeline.memory_bytes`."""
        return sum(100 + (0 if b is None else 36 * len(b)) for b in self._table.values())


def merge(index_cands: list[np.ndarray], key_cands: list[np.ndarray]) -> list[np.ndarray]:
    """Per record, the union of the index's and the keys' candidates (sorted, unique)."""
    return [np.union1d(c, k) if len(k) else c for c, k in zip(index_cands, key_cands)]


def key_blocker(keys: Sequence[tuple[str, ...]], cap: int) -> KeyBlocker | None:
    """The pipeline's key table, or None when no encoder declares a key or the cap is 0 (off)."""
    return KeyBlocker(keys, cap) if keys and cap else None


def key_bytes(blocker: KeyBlocker | None) -> int:
    """`KeyBlocker.memory_bytes`, 0 without a table."""
    return 0 if blocker is None else blocker.memory_bytes()
