"""RowMap is a dict of rows to rows in one array: the clustering and erasure code use it as a dict, so it must
answer every dict operation they use exactly as a dict would (`consumer.engine.rowmap`)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from consumer.engine.rowmap import RowMap


def test_answers_as_a_dict_under_random_operations() -> None:
    rng = random.Random(3)
    got, want = RowMap(capacity=4), {}
    for _ in range(4000):
        k, v = rng.randrange(0, 300), rng.randrange(0, 300)
        op = rng.random()
        if op < 0.5:
            got[k] = v
            want[k] = v
        elif op < 0.65:
            assert got.pop(k, None) == want.pop(k, None)
        elif op < 0.75 and k in want:
            del got[k]
            del want[k]
        else:
            assert got.get(k) == want.get(k) and got.get(k, -7) == want.get(k, -7)
            assert (k in got) == (k in want)
        assert len(got) == len(want)
    assert got == want and dict(got.items()) == want
    assert sorted(got.values()) == sorted(want.values()) and list(got) == sorted(want)


def test_absent_rows_raise_as_in_a_dict() -> None:
    m = RowMap([(3, 0)])
    with pytest.raises(KeyError):
        m[4]
    with pytest.raises(KeyError):
        m[10_000]  # past the array
    with pytest.raises(KeyError):
        m.pop(5)
    with pytest.raises(KeyError):
        del m[-1]
    assert m.get(-1) is None and -1 not in m and "3" not in m
    with pytest.raises(ValueError):
        m[2] = -1  # -1 marks an absent row: storing it would lose the entry


def test_take_reads_many_rows_with_minus_one_for_absent_or_padding() -> None:
    m = RowMap({0: 5, 2: 2, 40: 0})
    assert m.take(np.array([2, -1, 1, 40, 99_999, 0])).tolist() == [2, -1, -1, 0, -1, 5]
    assert isinstance(m[40], int) and m.take(np.zeros(0, np.int64)).shape == (0,)


def test_items_is_a_copy_so_the_map_may_change_while_it_is_walked() -> None:
    m = RowMap({r: r for r in range(10)})
    for k, _ in m.items():
        m.pop(k)
        m[k + 100] = k
    assert len(m) == 10 and min(m) == 100


def test_assign_sets_many_rows_as_setting_each_would() -> None:
    rng = np.random.default_rng(5)
    rows = rng.choice(5000, 700, replace=False)
    values = rng.integers(0, 5000, 700)
    bulk, one = RowMap({3: 1, 9999: 2}), RowMap({3: 1, 9999: 2})
    bulk.assign(rows, values)
    for r, v in zip(rows.tolist(), values.tolist()):
        one[r] = v
    assert bulk == one and len(bulk) == len(one)
    with pytest.raises(ValueError):
        bulk.assign(np.array([1]), np.array([-1]))
