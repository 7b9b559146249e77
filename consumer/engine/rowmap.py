"""A mapping from row numbers to row numbers held in one array: a record's cluster, a cluster's keeper.

Why not a dict: rows are dense integers from 0, and a dict of a million of them costs ~100 bytes an entry
(the entry, two int objects, the table's slack) where an array slot costs 8: the cluster and keeper maps
were ~170 of a CRM record's ~3,000 resident bytes in `dedup batch` at 200k records. The interface is the
dict's (the clustering, erasure and replica code read and write it as one), with absent rows stored as -1;
`take` reads many rows at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any

import numpy as np

__all__ = ["RowMap"]

_ABSENT = -1
_MISSING: Any = object()


class RowMap(MutableMapping[int, int]):
    """row -> row (both >= 0); iteration is in row order (a dict's was insertion order: no caller relies on
    it, and row order is what a restored state rebuilds anyway)."""

    __slots__ = ("_a", "_n")

    def __init__(self, items: Iterable[tuple[int, int]] | None = None, capacity: int = 1024) -> None:
        self._a = np.full(max(capacity, 16), _ABSENT, np.int64)
        self._n = 0
        if items is not None:
            self.update(items)

    def __getitem__(self, key: int) -> int:
        if 0 <= key < len(self._a):
            v = int(self._a[key])
            if v != _ABSENT:
                return v
        raise KeyError(key)

    def get(self, key: int, default: Any = None) -> Any:  # type: ignore[override]
        if 0 <= key < len(self._a):
            v = int(self._a[key])
            if v != _ABSENT:
                return v
        return default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, (int, np.integer)) and 0 <= key < len(self._a) and self._a[key] != _ABSENT

    def __setitem__(self, key: int, value: int) -> None:
        if key < 0 or value < 0:
            raise ValueError(f"rows are >= 0, not {key} -> {value}")
        self._hold(int(key))
        if self._a[key] == _ABSENT:
            self._n += 1
        self._a[key] = value

    def _hold(self, row: int) -> None:
        """Grow the array (doubling) so that `row` has a slot."""
        if row >= len(self._a):
            grown = np.full(max(2 * len(self._a), row + 1), _ABSENT, np.int64)
            grown[: len(self._a)] = self._a
            self._a = grown

    def __delitem__(self, key: int) -> None:
        if key not in self:
            raise KeyError(key)
        self._a[key] = _ABSENT
        self._n -= 1

    def pop(self, key: int, default: Any = _MISSING) -> Any:  # type: ignore[override]
        if key in self:
            v = int(self._a[key])
            self._a[key] = _ABSENT
            self._n -= 1
            return v
        if default is _MISSING:
            raise KeyError(key)
        return default

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[int]:
        return iter(self.keys())

    def keys(self) -> list[int]:  # type: ignore[override]
        """The rows present, as a list taken now (so the map may change while a caller walks it)."""
        return np.flatnonzero(self._a != _ABSENT).tolist()

    def values(self) -> list[int]:  # type: ignore[override]
        return self._a[self._a != _ABSENT].tolist()

    def items(self) -> list[tuple[int, int]]:  # type: ignore[override]
        rows = np.flatnonzero(self._a != _ABSENT)
        return list(zip(rows.tolist(), self._a[rows].tolist()))

    def update(self, items: Any = (), **_: Any) -> None:  # type: ignore[override]
        for k, v in (items.items() if isinstance(items, Mapping) else items):
            self[k] = v

    def assign(self, rows: np.ndarray, values: np.ndarray) -> None:
        """`self[rows[i]] = values[i]` for every i at once (a restored state: a million rows in one step)."""
        rows, values = np.asarray(rows, np.int64), np.asarray(values, np.int64)
        if len(rows) == 0:
            return
        if rows.min() < 0 or values.min() < 0:
            raise ValueError("rows are >= 0")
        self._hold(int(rows.max()))
        self._a[rows] = values
        self._n = int(np.count_nonzero(self._a != _ABSENT))

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The values of `rows` (-1 where absent, or a row out of range: a -1 candidate slot included)."""
        rows = np.asarray(rows, np.int64)
        ok = (rows >= 0) & (rows < len(self._a))
        out = np.full(len(rows), _ABSENT, np.int64)
        out[ok] = self._a[rows[ok]]
        return out

    def __repr__(self) -> str:
        return f"RowMap({dict(self.items())!r})"
