"""KeyCounts (the frequency table's vectorised counts) against the `Counter` it replaces for reading.

Why: scoring reads every pair's key counts from the hash table, so one wrong count (a lost insert when two
new keys claim one slot, a probe run cut short, an erased key read as present) changes decisions without
failing loudly; these compare it with a plain `Counter` over random additions and erasures, and check that
the faster paths of `FrequencyTable` (its table, `rows`) give exactly the values of the plain ones.
"""

from __future__ import annotations

from collections import Counter
from contextlib import ExitStack

import numpy as np
import pytest

from consumer.encoders.base import Rarity
from consumer.engine.frequencies import FrequencyTable
from consumer.engine.keycounts import ADD_KERNEL, LOOKUP_KERNEL, KeyCounts


def _numpy_form(compiled: bool) -> ExitStack:
    """A context running the table's numpy form (`compiled` False) or its compiled loops (True)."""
    stack = ExitStack()
    if not compiled:
        stack.enter_context(ADD_KERNEL.disabled())
        stack.enter_context(LOOKUP_KERNEL.disabled())
    return stack


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("dtype, high", [(np.uint32, 60), (np.uint32, 2**32 - 1), (np.uint64, 2**64 - 1),
                                         (np.int64, 10**6)])
def test_counts_match_a_counter_through_additions_and_erasures(dtype: type, high: int, compiled: bool) -> None:
    assert ADD_KERNEL.get() is not None and LOOKUP_KERNEL.get() is not None  # numba is a dependency
    with _numpy_form(compiled):
        _additions_and_erasures(dtype, high)


def test_large_additions_count_as_small_ones() -> None:
    """`add` takes a unique pass above a few thousand keys and counts them one by one below: same counts
    either way, and as the numpy form's, after a growth from a tiny table."""
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 3000, size=(4000, 6), dtype=np.uint64)
    tables = [KeyCounts(bits=2), KeyCounts(bits=2), KeyCounts(bits=2)]
    tables[0].add(keys)  # one call, 24,000 keys
    for chunk in np.array_split(keys, 40):  # 40 small calls
        tables[1].add(chunk)
    with _numpy_form(False):
        tables[2].add(keys)
    probe = np.arange(0, 3100, dtype=np.uint64)
    want = tables[2].lookup(probe)
    assert want.sum() == np.count_nonzero(keys)
    for table in tables[:2]:
        assert np.array_equal(table.lookup(probe), want)
        assert len(table) == len(tables[2])


def _additions_and_erasures(dtype: type, high: int) -> None:
    rng = np.random.default_rng(7)
    table, counter = KeyCounts(bits=2), Counter()  # a tiny table: growth and long probe runs are exercised
    for _ in range(60):
        keys = rng.integers(0, high, size=(int(rng.integers(0, 40)), int(rng.integers(1, 5))),
                            dtype=np.uint64 if dtype == np.uint64 else np.int64).astype(dtype)
        keys[rng.random(keys.shape) < 0.3] = 0
        if rng.random() < 0.75:
            table.add(keys)
            counter.update(keys[keys != 0].tolist())
        else:  # as FrequencyTable.forget: a key falling to 0 or below is gone
            table.subtract(keys)
            counter.subtract(keys[keys != 0].tolist())
            for k in [k for k in set(keys[keys != 0].tolist()) if counter[k] <= 0]:
                del counter[k]
        probe = rng.integers(0, high, size=(9, 3), dtype=np.uint64 if dtype == np.uint64 else np.int64)
        for q in (probe.astype(dtype), np.array(list(counter) or [0], dtype), keys):
            want = np.array([counter.get(k, 0) for k in q.ravel().tolist()], np.int64).reshape(q.shape)
            assert np.array_equal(table.lookup(q), want)


def test_padding_is_never_counted_and_reads_zero() -> None:
    table = KeyCounts()
    table.add(np.array([0, 0, 5, 5], np.uint32))
    assert len(table) == 1
    assert table.lookup(np.array([[0, 5], [6, 0]], np.uint32)).tolist() == [[0, 2], [0, 0]]


def test_reads_as_the_counter_it_replaces() -> None:
    table, counter = KeyCounts(), Counter([3, 3, 9, 2**40])
    table.add(np.array([3, 3, 9, 2**40], np.uint64))
    assert table == counter and dict(table) == dict(counter) and len(table) == 3
    assert table[3] == 2 and table[4] == 0 and table.get(4, 7) == 7 and 9 in table and 4 not in table
    table.subtract(np.array([9, 9], np.uint64))  # past zero: gone, as FrequencyTable.forget drops it
    assert 9 not in table and table[9] == 0 and dict(table) == {3: 2, 2**40: 1}


def _table(rows: np.ndarray) -> FrequencyTable:
    table = FrequencyTable([Rarity("t", lambda c: c["k"], pairwise=True), Rarity("d", lambda c: c["j"], pairwise=True),
                            Rarity("one", lambda c: c["o"])])
    table.observe(_cols(rows))
    return table


def _cols(rows: np.ndarray) -> dict[str, np.ndarray]:
    return {"k": rows[:, :6], "j": rows[:, 6:], "o": rows[:, 0]}


def test_the_hash_table_and_the_rows_shortcut_give_the_counters_values_exactly() -> None:
    rng = np.random.default_rng(3)
    store = rng.integers(1, 40, size=(300, 10)).astype(np.uint32)
    store[rng.random(store.shape) < 0.4] = 0
    store[:, :6] = np.sort(store[:, :6], axis=1)  # distinct keys per record, as the encoders write them
    for row in store:
        for part in (slice(0, 6), slice(6, 10)):
            seen: set[int] = set()
            for i in range(part.start, part.stop):
                row[i] = 0 if row[i] in seen else row[i]
                seen.add(int(row[i]))
    fast = _table(store)
    slow = _table(store)
    for f in ("t", "d", "one"):  # counts of another kind (as consumer.api.scoring's): read through `.get`
        slow.counts[f] = Counter(slow.counts[f])
    qa, qb = rng.integers(0, 300, 2000), rng.integers(0, 300, 2000)
    a, b = _cols(store[qa]), _cols(store[qb])
    want = slow.pair_rarity(a, b)
    for got in (fast.pair_rarity(a, b), fast.pair_rarity(a, b, (qa, qb))):
        assert got.keys() == want.keys()
        for name in want:
            assert np.array_equal(got[name], want[name], equal_nan=True), name
    # Erasure un-counts the table too (the fallback counts are a Counter: un-count it as forget did).
    fast.forget(_cols(store[:50]))
    erased = _cols(store[:50])
    for r in slow.rarities:
        keys = r.keys(erased)
        slow.counts[r.feature].subtract(keys[keys != 0].tolist())
        slow.counts[r.feature] = +slow.counts[r.feature]
    slow.records -= 50
    want = slow.pair_rarity(a, b)
    got = fast.pair_rarity(a, b, (qa, qb))
    for name in want:
        assert np.array_equal(got[name], want[name], equal_nan=True), name


def test_a_rarer_value_rarity_reads_the_count_of_the_less_common_side() -> None:
    """`Rarity.rarer`: log of how many records hold the rarer of the two values (not extrapolated to a
    larger population, unlike the first record's commonness), NaN where a side has no value; computed
    with the pair (`pair_features`), not from the first record alone (`features`)."""
    table = FrequencyTable([Rarity("first", lambda c: c["h"]), Rarity("rarer", lambda c: c["h"], rarer=True)])
    table.observe({"h": np.array([5] * 100 + [7] + [9] * 40 + [0], np.uint32)})
    a, b = {"h": np.array([5, 7, 5, 9, 5], np.uint32)}, {"h": np.array([7, 5, 5, 5, 0], np.uint32)}
    assert "rarer" not in table.features(a, b) and "first" in table.features(a, b)
    rarer = table.pair_rarity(a, b)["rarer"]
    assert np.allclose(np.exp(rarer[:4]), [1, 1, 100, 40])  # 5 and 7 either way round: 7's single record
    assert np.isnan(rarer[4])
