"""Counts of integer keys that answer a whole array of keys at once: an open-addressing hash table in numpy.

Why: scoring a micro-batch of listings looks up the population count of every key of every candidate pair
(24 title keys and 32 description keys a side, ~8,000 pairs a batch on the CD file): 450,000 keys a batch.
Looking them up in a `Counter` means `np.unique` over the batch's keys (to look each distinct key up once)
and a Python dict lookup per distinct key; that was 60% of `dedup batch` on the CD file. A numpy hash table
answers the whole array with a few vectorised gathers (linear probing, at most half full, so the typical
key is found at its first or second slot), with no sort and no Python loop per key.

It is also the frequency table's only record of the counts (a `Counter` kept beside it was updated key by
key in Python, most of `observe`): a read-only `Mapping` from key to count, read as a `Counter` reads, for
callers that inspect or combine counts (`consumer.api.scoring`) and tests.

The table only grows: a key whose count falls to 0 (an erased record) keeps its slot with count 0, which
reads exactly as an absent key (a `Counter` deletes it), so no tombstones are needed. Key 0 is padding and
never counted; an empty slot holds key 0.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping

import numpy as np

from consumer.engine.compiled import Kernel

__all__ = ["ADD_KERNEL", "KeyCounts", "LOOKUP_KERNEL"]

#: Fibonacci hashing (Knuth): the key times 2^64 / golden ratio, top bits. Keyed hashes are uniform
#: already, but tests and other callers count small consecutive integers, which would fill one run of slots.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
#: Below this many keys `add` counts them one by one in the compiled loop (no `np.unique`), growing the table
#: for as many new keys as it was given: at most this many slots more than needed, for a moment.
_SMALL_ADD = 4096
_ONE = np.uint64(1)
_64 = np.uint64(64)


def _add_raw(table, counts, bits, keys, n):  # pragma: no cover - compiled; the tests of `KeyCounts`
    """Count keys[i] n[i] times (keys non-zero), inserting each new key at the first empty slot of its probe
    run, as the numpy form does; returns how many keys were new."""
    mask = (_ONE << np.uint64(bits)) - _ONE
    shift = _64 - np.uint64(bits)
    new = 0
    for i in range(keys.shape[0]):
        key = keys[i]
        pos = (key * _GOLDEN) >> shift
        while True:
            held = table[pos]
            if held == key:
                counts[pos] += n[i]
                break
            if held == 0:
                table[pos] = key
                counts[pos] = n[i]
                new += 1
                break
            pos = (pos + _ONE) & mask
    return new


def _lookup_raw(table, counts, bits, keys, out):  # pragma: no cover - compiled; the tests of `KeyCounts`
    """out[i] = the count of keys[i] (0 for padding and unseen keys)."""
    mask = (_ONE << np.uint64(bits)) - _ONE
    shift = _64 - np.uint64(bits)
    for i in range(keys.shape[0]):
        key = keys[i]
        out[i] = 0
        if key == 0:
            continue
        pos = (key * _GOLDEN) >> shift
        while True:
            held = table[pos]
            if held == key:
                out[i] = counts[pos]
                break
            if held == 0:
                break
            pos = (pos + _ONE) & mask


#: The table's loops compiled (`consumer.engine.compiled`): at a micro-batch's few hundred keys the numpy
#: form's fixed cost (a unique, a probe round of ~10 array steps per rarity feature) was most of `observe`,
#: which runs for every batch a member decides and every run of records it absorbs. Same counts, same answers.
ADD_KERNEL = Kernel(_add_raw)
LOOKUP_KERNEL = Kernel(_lookup_raw)


class KeyCounts(Mapping[int, int]):
    """A multiset of non-zero integer keys (read as uint64) with vectorised `add`, `subtract` and `lookup`.

    `lookup` returns what `Counter.get(key, 0)` of the same additions and subtractions returns (counts
    clamped at 0, as a `Counter` that deletes keys falling to 0 or below), for every key of an array. As a
    Mapping it holds the keys with a positive count, and reads 0 for any other key (as a `Counter`)."""

    def __init__(self, bits: int = 12) -> None:
        self._bits = bits
        self._keys = np.zeros(1 << bits, np.uint64)
        self._counts = np.zeros(1 << bits, np.int64)
        self._used = 0  # occupied slots (distinct keys ever added)

    def __getitem__(self, key: int) -> int:
        return int(self.lookup(np.asarray([key]).astype(np.uint64))[0])

    def __contains__(self, key: object) -> bool:
        return self.get(key, 0) > 0  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        live = self._counts > 0
        return iter(self._keys[live].tolist())

    def __len__(self) -> int:
        return int(np.count_nonzero(self._counts > 0))

    def items(self) -> ItemsView[int, int]:
        """(key, count) of the keys with a positive count, read in one pass (not one lookup per key)."""
        live = self._counts > 0
        return dict(zip(self._keys[live].tolist(), self._counts[live].tolist())).items()

    def get(self, key: int, default: int = 0) -> int:  # type: ignore[override]
        """The key's count; `default` where it has none (a `Counter` read)."""
        count = self[key] if isinstance(key, (int, np.integer)) else 0
        return count if count > 0 else default

    def _home(self, keys: np.ndarray) -> np.ndarray:
        """Each key's first slot."""
        with np.errstate(over="ignore"):
            return ((keys * _GOLDEN) >> np.uint64(64 - self._bits)).astype(np.int64)

    def _slots(self, keys: np.ndarray) -> tuple[np.ndarray, int]:
        """The slot of each (distinct, non-zero) key, inserting the keys not yet in the table; and how many
        were inserted."""
        mask = (1 << self._bits) - 1
        new = 0
        slot = np.empty(len(keys), np.int64)
        todo = np.arange(len(keys))
        pos = self._home(keys)
        while len(todo):
            held = self._keys[pos]
            k = keys[todo]
            found = held == k
            # Empty slots are claimed; where two new keys claim one slot in the same round one write lands and
            # is read back as the winner, the others probe on (a key is stored at the first empty slot of its
            # probe run, as in serial insertion, so `lookup` finds it).
            empty = np.flatnonzero(held == 0)
            self._keys[pos[empty]] = k[empty]
            won = empty[self._keys[pos[empty]] == k[empty]]
            found[won] = True
            new += len(won)
            slot[todo[found]] = pos[found]
            todo, pos = todo[~found], (pos[~found] + 1) & mask
        return slot, new

    def _grow(self, more: int) -> None:
        """Keep the table at most half full once `more` distinct keys may be added (rehashes on growth)."""
        bits = self._bits
        while 2 * (self._used + more) > (1 << bits):
            bits += 1
        if bits == self._bits:
            return
        live = np.flatnonzero(self._keys)
        keys, counts = self._keys[live], self._counts[live]
        self._bits = bits
        self._keys = np.zeros(1 << bits, np.uint64)
        self._counts = np.zeros(1 << bits, np.int64)
        self._counts[self._slots(keys)[0]] = counts

    def add(self, keys: np.ndarray) -> None:
        """Count every non-zero key of `keys` (any shape) once per occurrence."""
        jit = ADD_KERNEL.get()
        flat = np.asarray(keys).ravel().astype(np.uint64)
        if jit is not None and len(flat) <= _SMALL_ADD:
            flat = flat[flat != 0]
            if len(flat):
                self._grow(len(flat))
                self._used += jit(self._keys, self._counts, self._bits, flat, np.ones(len(flat), np.int64))
            return
        uniq, n = np.unique(flat, return_counts=True)
        uniq, n = uniq[uniq != 0], n[uniq != 0]
        if not len(uniq):
            return
        self._grow(len(uniq))
        if jit is not None:
            self._used += jit(self._keys, self._counts, self._bits, uniq, n.astype(np.int64))
            return
        slots, new = self._slots(uniq)
        self._counts[slots] += n
        self._used += new

    def subtract(self, keys: np.ndarray) -> None:
        """Un-count every non-zero key of `keys` once per occurrence; a count never goes below 0."""
        uniq, n = np.unique(np.asarray(keys).ravel().astype(np.uint64), return_counts=True)
        uniq, n = uniq[uniq != 0], n[uniq != 0]
        if not len(uniq):
            return
        slots, hit = self._find(uniq)
        self._counts[slots[hit]] = np.maximum(self._counts[slots[hit]] - n[hit], 0)

    def _find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slot, found) of each key (flat uint64), without inserting; the slot is meaningless where not found.
        The first probe runs over every key at once (most keys end there: found, or an empty slot); only
        the rest are probed further, by index."""
        mask = (1 << self._bits) - 1
        slot = self._home(keys)
        held = self._keys[slot]
        hit = (held == keys) & (keys != 0)  # padding is never counted
        todo = np.flatnonzero(~hit & (held != 0) & (keys != 0))  # an empty slot ends a key's probe run
        pos = (slot[todo] + 1) & mask
        while len(todo):
            held = self._keys[pos]
            found = held == keys[todo]
            slot[todo[found]] = pos[found]
            hit[todo[found]] = True
            more = ~found & (held != 0)
            todo, pos = todo[more], (pos[more] + 1) & mask
        return slot, hit

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """The count of every key of `keys`, as int64 of its shape (0 for padding and unseen keys)."""
        keys = np.asarray(keys)
        flat = keys.ravel().astype(np.uint64)
        jit = LOOKUP_KERNEL.get()
        if jit is not None:
            out = np.empty(len(flat), np.int64)
            jit(self._keys, self._counts, self._bits, flat, out)
            return out.reshape(keys.shape)
        slot, hit = self._find(flat)
        return np.where(hit, self._counts[slot], 0).reshape(keys.shape)
