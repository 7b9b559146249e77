"""Linking across sources: a file that joins two shops' catalogues or two registers (`profile.source_field`).

Why: when each source is already free of duplicates of its own (a shop lists a product once; a register
holds a person once), the task is to link records *across* sources, and two records of one source are
different things however alike they look: a catalogue's "Norton Antivirus 2007" and its "Norton
Antivirus 2007 (5-user)" at another price are two items. Deduplicating such a file as one pool merges
them (Amazon-Google: 376 of 478 wrong pairs were pairs inside one shop). Splink calls this `link_only`.

The source is one more keyed-hash column (0 = unknown: compared with everyone), so it persists, gathers
and is erased with the record like every other column. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from consumer.encoders.base import KeyedHasher
from consumer.engine.records import Record

if TYPE_CHECKING:
    from consumer.config import Settings
    from consumer.encoders.base import Columns
    from consumer.store.memory import SignatureStore

__all__ = ["SOURCE_COLUMN", "SourceLinks", "across_sources", "source_column"]

SOURCE_COLUMN = "source"


def source_column(records: Sequence[Record], hasher: KeyedHasher) -> np.ndarray:
    """Each record's source as a keyed hash (0 where it has none)."""
    return np.array([hasher("src:" + s) if (s := r.role("source")) else 0 for r in records], np.uint32)


def across_sources(cands: list[np.ndarray], query: np.ndarray, stored: np.ndarray) -> list[np.ndarray]:
    """Each query row's candidates without those of its own source (`query[i]` its source, `stored` the
    store's source column by row); a side with no source keeps the pair."""
    out = []
    for q, c in zip(query.tolist(), cands):
        if q and len(c):
            s = stored[c]
            c = c[(s == 0) | (s != q)]
        out.append(c)
    return out


class SourceLinks:
    """What the pipeline does for a file joining sources: one more column, candidates of other sources
    only, and the clustering's view of each row's source (`Guards.sources`)."""

    def __init__(self, hash_key: str) -> None:
        self._hash = KeyedHasher(hash_key)

    @classmethod
    def of(cls, settings: Settings) -> SourceLinks | None:
        """None for a file deduplicated as one pool (no `profile.source_field`)."""
        return cls(settings.encoders.hash_key) if settings.profile.source_field else None

    def add_column(self, records: Sequence[Record], cols: Columns) -> None:
        cols[SOURCE_COLUMN] = source_column(records, self._hash)

    @staticmethod
    def candidates(cands: list[np.ndarray], cols: Columns, store: SignatureStore) -> list[np.ndarray]:
        return across_sources(cands, cols[SOURCE_COLUMN], store.column(SOURCE_COLUMN))

    @staticmethod
    def reader(store: SignatureStore) -> Callable[[list[int]], np.ndarray]:
        """rows -> their sources, read from the store at call time (its arrays grow)."""
        return lambda rows: store.column(SOURCE_COLUMN)[np.asarray(rows, np.int64)]
