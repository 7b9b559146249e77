"""In-memory state for the embedded runner: record rows, their signature columns, and keeper inputs.

Rows are dense integers in arrival order; a row's columns are what every encoder produced for it (vectors
and keyed hashes only). Arrays grow by doubling, so appending is amortised O(1) and gathering candidate
rows is one fancy-index per column.

Gathering is most of what scoring moves through memory (a batch of 256 listings against 32 candidates each
gathers 17 MB), so a column no record has filled (the photo vectors of a file without photos) gathers as
fresh zeros, which are not copied, and the query side of a batch's pairs copies each query's block once
per run of its pairs (`gather_repeated`) rather than indexing each copy.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

#: name -> array whose first axis is the record (the encoders' output; defined here so stores import no engine).
Columns = dict[str, np.ndarray]

__all__ = ["LayoutMismatch", "SignatureStore"]


class LayoutMismatch(ValueError):
    """Records whose signature columns have another shape than the ones held: state written by a version
    whose encoders produced other columns (a release that adds an attribute kind widens `title_attrs`).
    Signatures cannot be re-derived (no raw values are kept), so such state is refused, not mixed."""


class SignatureStore:
    def __init__(self, capacity: int = 4096, drop: Collection[str] = (), recent: int = 0):
        """`drop`: columns `append` does not keep. A run whose index holds the composite vectors and that
        never rebuilds them (`dedup batch`: no snapshot, replay or absorbed record) needs no second copy of
        the parts only the index reads (`Contribution.index_only`): 320 of a CRM record's 1,112 bytes.
        `recent`: keep the dropped columns of the newest `recent` rows all the same, in a ring (`holds`):
        a `dedup run` member on a shared Milvus collection, which holds every vector, still writes the
        vectors of the rows it just decided and scores late links on recent rows; older rows have them in
        Redis only. Fixed memory (20,000 CRM rows: 6.4 MB) instead of 320 bytes for every record held."""
        self._cap = capacity
        self._drop = frozenset(drop)
        self._recent = recent if self._drop else 0
        self._ring: Columns = {}
        self._ring_row = np.full(self._recent, -1, np.int64)  # slot -> the row it holds (-1: none)
        #: Column names in the encoders' order, the dropped ones included (`persisted_columns`).
        self._order: tuple[str, ...] = ()
        self._cols: Columns = {}
        self.record_ids: list[str] = []
        self.row_of: dict[str, int] = {}
        #: Keeper inputs per row: field completeness and a recency stamp (last login, epoch seconds).
        self.completeness = np.zeros(capacity, np.float32)
        self.recency = np.zeros(capacity, np.float64)
        #: Columns that hold only zeros (nothing appended was non-zero; erasure only writes zeros).
        self._zero: set[str] = set()

    def __len__(self) -> int:
        return len(self.record_ids)

    def _grow(self, need: int) -> None:
        if need <= self._cap and self._cols:
            return
        new_cap = self._cap
        while new_cap < need:
            new_cap *= 2
        if new_cap != self._cap:
            for name, arr in self._cols.items():
                grown = np.zeros((new_cap, *arr.shape[1:]), arr.dtype)
                grown[: len(self)] = arr[: len(self)]
                self._cols[name] = grown
            for name in ("completeness", "recency"):
                arr = getattr(self, name)
                grown = np.zeros(new_cap, arr.dtype)
                grown[: len(self)] = arr[: len(self)]
                setattr(self, name, grown)
            self._cap = new_cap

    def append(self, record_ids: Sequence[str], cols: Columns, completeness: np.ndarray,
               recency: np.ndarray) -> np.ndarray:
        """Store new records; returns their rows. Callers guarantee the ids are new."""
        start, n = len(self), len(record_ids)
        if self._recent:  # (`_order` only matters with a ring: not on `dedup batch`'s or the embedded path)
            self._keep_recent(start, n, cols)
            if set(cols) >= set(self._order):
                self._order = tuple(cols)
        cols = self.kept(cols)
        for name, arr in cols.items():
            held = self._cols.get(name)
            if held is not None and (held.shape[1:] != arr.shape[1:] or held.dtype != arr.dtype):
                raise LayoutMismatch(
                    f"signature column {name!r} is {arr.dtype}{list(arr.shape[1:])} in these records and "
                    f"{held.dtype}{list(held.shape[1:])} in the state held: the state was written by another "
                    "version of the encoders; start from a new store (Redis prefix, snapshot directory) and "
                    "replay the input, or run the version that wrote it")
        self._grow(start + n)
        for name, arr in cols.items():
            if name not in self._cols:
                self._cols[name] = np.zeros((self._cap, *arr.shape[1:]), arr.dtype)
                self._zero.add(name)
            self._cols[name][start: start + n] = arr
            # Every bit zero (a -0.0 is not a 0.0 to a division): the rows' bytes.
            if name in self._zero and self._cols[name][start: start + n].view(np.uint8).any():
                self._zero.discard(name)
        self.completeness[start: start + n] = completeness
        self.recency[start: start + n] = recency
        for i, rid in enumerate(record_ids):
            if rid:  # "" is an erased row's tombstone (a snapshot keeps the row, not the id)
                self.row_of[rid] = start + i
        self.record_ids.extend(record_ids)
        return np.arange(start, start + n, dtype=np.int64)

    def _keep_recent(self, start: int, n: int, cols: Columns) -> None:
        """The dropped columns of rows start..start+n into the ring (the newest `recent` of them)."""
        m = min(n, self._recent)
        rows = np.arange(start + n - m, start + n, dtype=np.int64)
        slots = rows % self._recent
        names = [name for name in cols if name in self._drop]
        for name in names:
            arr = cols[name][n - m:]
            ring = self._ring.get(name)
            if ring is None or ring.shape[1:] != arr.shape[1:] or ring.dtype != arr.dtype:
                ring = self._ring[name] = np.zeros((self._recent, *arr.shape[1:]), arr.dtype)
                self._ring_row[:] = -1  # a new layout: what the ring held is not comparable any more
            ring[slots] = arr
        # Held only when every dropped column of these rows came in (rows loaded from a snapshot have none).
        self._ring_row[slots] = rows if names and len(names) == len(self._ring) else -1

    def holds(self, rows: np.ndarray) -> np.ndarray:
        """Which of `rows` have every column, the dropped ones included (`gather` then returns those too)."""
        rows = np.asarray(rows, np.int64)
        if not self._drop:
            return np.ones(len(rows), bool)
        if not self._recent:
            return np.zeros(len(rows), bool)
        return self._ring_row[rows % self._recent] == rows

    def erase(self, row: int) -> None:
        """Forget a row (GDPR erasure): its id leaves `row_of` and `record_ids` (an empty string marks the
        tombstone) and its columns and keeper inputs are zeroed, so no later snapshot or gather holds them.
        The row number itself stays: rows are positions, and the other rows must keep theirs."""
        rid = self.record_ids[row]
        if self.row_of.get(rid) == row:
            del self.row_of[rid]
        self.record_ids[row] = ""
        for arr in self._cols.values():
            arr[row] = 0
        if self._recent and self._ring_row[row % self._recent] == row:
            for arr in self._ring.values():
                arr[row % self._recent] = 0
            self._ring_row[row % self._recent] = -1
        self.completeness[row] = 0.0
        self.recency[row] = 0.0

    def gather(self, rows: np.ndarray, skip: Collection[str] = ()) -> Columns:
        """The columns of `rows` (row numbers), but those in `skip` (comparison never reads the index-only
        vectors); the dropped ones too when the ring `holds` every row."""
        # `np.take` along rows, not `arr[rows]`: the same array, ~3x faster for these narrow 2-3-d columns
        # (fancy indexing walks every inner element; a gather is 18% of a person run's deciding thread).
        out = {name: self._zeros(arr, len(rows)) if name in self._zero else np.take(arr, rows, axis=0)
               for name, arr in self._cols.items() if name not in skip}
        if self._ring and not self._drop <= set(skip) and self.holds(rows).all():
            slots = np.asarray(rows, np.int64) % self._recent
            out.update({name: np.take(arr, slots, axis=0) for name, arr in self._ring.items() if name not in skip})
            out = {name: out[name] for name in self._order if name in out}  # a payload's order (`persisted`)
        return out

    def gather_repeated(self, rows: np.ndarray, counts: np.ndarray, skip: Collection[str] = ()) -> Columns:
        """`gather(np.repeat(rows, counts), skip)`, each row copied as one block into its run of the output."""
        total = int(np.sum(counts))
        return {name: self._zeros(arr, total) if name in self._zero
                else np.repeat(np.take(arr, rows, axis=0), counts, axis=0)
                for name, arr in self._cols.items() if name not in skip}

    @staticmethod
    def _zeros(arr: np.ndarray, n: int) -> np.ndarray:
        """`n` rows of an all-zero column: what indexing it would give, without reading or copying it."""
        return np.zeros((n, *arr.shape[1:]), arr.dtype)

    def column_names(self) -> list[str]:
        return list(self._cols)

    def kept(self, cols: Columns) -> Columns:
        """`cols` as `append` keeps them (without the dropped ones)."""
        return {name: arr for name, arr in cols.items() if name not in self._drop} if self._drop else cols

    def persisted(self, cols: Columns) -> Columns:
        """`cols` as a persisted payload carries them: every column when the store keeps a ring (its rows
        are written to Redis, where other members and restarts read every column back), else `kept`."""
        return cols if self._recent else self.kept(cols)

    def persisted_columns(self) -> list[str]:
        """The names, in order, of what `persisted` keeps and `gather` gives for rows the store `holds`."""
        if not self._recent:
            return self.column_names()
        return [name for name in self._order if name in self._cols or name in self._ring]

    def column(self, name: str) -> np.ndarray:
        """The stored rows of a column, as a view to read: only `append` and `erase` write (`gather` relies
        on them to know which columns are still all zeros)."""
        return self._cols[name][: len(self)]

    def memory_bytes(self) -> int:
        used = len(self)
        per_row = sum(a.itemsize * int(np.prod(a.shape[1:])) for a in self._cols.values()) + 12
        return used * per_row + sum(a.nbytes for a in self._ring.values())
