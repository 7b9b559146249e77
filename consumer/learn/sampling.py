"""Which records a fit without labels reads from a file too large to fit whole.

A uniform sample for Fellegi-Sunter EM (its lambda, the matching share of all pairs, is the same in a
uniform sample, so the file's expected matches follow from it); whole blocks for the reciprocal-best fit
of listings, which needs each listing's duplicates in the sample with it (`sample_blocks`). Both read the
file once and never hold it whole.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import numpy as np

from consumer.engine.normalize import fold
from consumer.engine.records import Record
from consumer.engine.titles import title_words

__all__ = ["FIT_SAMPLE", "FIT_FRACTION", "FIT_FLOOR", "BLOCK_FRACTION", "fit_sample_size", "sample_records",
           "sample_file", "sample_file_uniform", "uniform_draw", "block_key", "record_block_key", "sample_blocks",
           "sample_file_blocks"]

T = TypeVar("T")

#: Most records the fit runs the engine over (a seeded sample beyond this): EM converges on tens of
#: thousands of candidate pairs; more records only cost time.
FIT_SAMPLE = 50_000
#: Share of a large file the fit of `dedup batch` samples, and the floor below which the whole file is
#: fitted. Why: the fit runs the engine over its sample before the real run, so a fixed 50,000-record
#: sample doubled the time of a 50k-record batch; 15% (at least 10,000 records) keeps the fit near 15% of
#: the batch time while every file up to 10,000 records (FEBRL, RLdata10000) is fitted whole.
FIT_FRACTION = 0.15
FIT_FLOOR = 10_000
#: The share for the reciprocal-best fit of listings (whole blocks): its five comparisons need fewer pairs
#: than EM's, and at 15% the fit cost 21% of a 100k-record listing batch (target: at most 20%); at 10% it
#: costs ~12% with the same verdict on the shipped model (agreement 0.72 against 0.73).
BLOCK_FRACTION = 0.10


def fit_sample_size(total: int, blocks: bool = False) -> int:
    """Records `dedup batch` fits on for a file of `total` records: the whole file up to `FIT_FLOOR`, then
    `FIT_FRACTION` of it (`BLOCK_FRACTION` for a sample of whole blocks; at least the floor), at most
    `FIT_SAMPLE`."""
    if total <= FIT_FLOOR:
        return total
    share = BLOCK_FRACTION if blocks else FIT_FRACTION
    return int(min(FIT_SAMPLE, max(FIT_FLOOR, round(share * total))))


def sample_records(records: Iterable[Record], size: int = FIT_SAMPLE, seed: int = 0) -> list[Record]:
    """A seeded uniform sample (reservoir) of at most `size` records, in arrival order: a file of any
    length is read once and never held whole."""
    return sample_file(records, size, seed)[0]


def sample_file(records: Iterable[Record], size: int = FIT_SAMPLE, seed: int = 0) -> tuple[list[Record], int]:
    """`sample_records` plus the number of records read (a reservoir: uniform whatever the length)."""
    rng = np.random.default_rng(seed)
    kept: list[tuple[int, Record]] = []
    total = 0
    for i, rec in enumerate(records):
        total = i + 1
        if len(kept) < size:
            kept.append((i, rec))
        else:
            j = int(rng.integers(0, i + 1))
            if j < size:
                kept[j] = (i, rec)
    return [r for _, r in sorted(kept, key=lambda t: t[0])], total


def sample_file_uniform(items: Iterable[T], seed: int = 0) -> tuple[list[T], int]:
    """The file's share (`fit_sample_size(total)`) of uniformly drawn items, in arrival order, plus the
    number read: a reservoir of `FIT_SAMPLE` while the file is read once, then that share of it by
    `uniform_draw`, as `fit_unsupervised` draws from the reservoir itself, so a caller can parse only these."""
    got, total = sample_file(items, FIT_SAMPLE, seed)  # type: ignore[arg-type]
    size = fit_sample_size(total)
    if len(got) > size:
        got = [got[i] for i in uniform_draw(np.random.default_rng(seed), len(got), size)]
    return got, total


def uniform_draw(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """`size` of `n` positions drawn uniformly without replacement, in order: the fit's sample of its
    records (`fit_unsupervised`, `sample_file_uniform`: one draw, so both keep the same records)."""
    return np.sort(rng.choice(n, size, replace=False))


def block_key(brand: Any, title: Any) -> str:
    """The block a listing falls in when the fit samples a large file (`sample_blocks`): its brand, else the
    first word of its title; "" when it has neither (such records are sampled one by one). Raw values (a
    row of the file) or a record's roles."""
    folded = fold(str(brand or ""))
    if folded:
        return folded
    words = title_words(str(title or ""), 1)
    return words[0] if words else ""


def record_block_key(record: Record) -> str:
    """`block_key` of a parsed record; a record with neither brand nor title is a block of its own (by id)."""
    return block_key(record.role("brand"), record.role("title")) or "\0" + record.record_id


def sample_blocks(records: Iterable[T], size: int, key: Callable[[T], str] = record_block_key,  # type: ignore[assignment]
                  seed: int = 0) -> tuple[list[T], int]:
    """At most `size` records in whole blocks (every record of a key or none), in arrival order, plus the
    number read: the blocks whose seeded key hash is smallest (a bottom-k over keys, read once).

    Why not a uniform sample: a uniform 15% keeps each duplicate pair with probability 0.15 x 0.15, so in
    the sample most listings have lost their duplicate and their best candidate is a sibling (another size
    of one model). The reciprocal-best fit then learns "same product family" as a match, and on a 100k
    generated catalogue it disagreed with the shipped model (agreement 0.47), which sent the run to the
    looser fused model: precision 0.97 -> 0.56. Whole blocks keep the file's pairs as they are (0.73)."""
    blocks: dict[int, list[tuple[int, T]]] = {}
    heap: list[int] = []  # negated key hashes: the largest kept is on top
    kept = total = 0
    cut: int | None = None
    salt = seed.to_bytes(8, "big")
    for i, rec in enumerate(records):
        total = i + 1
        k = key(rec) or f"\0{i}"  # no key: a block of its own (keys should say which, to trim consistently)
        h = int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8, salt=salt).digest(), "big")
        if cut is not None and h >= cut:
            continue
        if h not in blocks:
            blocks[h] = []
            heapq.heappush(heap, -h)
        blocks[h].append((i, rec))
        kept += 1
        while kept > size and heap:
            cut = -heapq.heappop(heap)
            kept -= len(blocks.pop(cut))
    return [r for _, r in sorted((t for b in blocks.values() for t in b), key=lambda t: t[0])], total


def sample_file_blocks(items: Iterable[T], key: Callable[[T], str] = record_block_key,  # type: ignore[assignment]
                       seed: int = 0) -> tuple[list[T], int]:
    """Whole blocks, the file's share of them (`fit_sample_size(total, blocks=True)`), plus the number read:
    at most `FIT_SAMPLE` are held while the file is read once (its length is known only at the end), then
    the blocks with the smallest hashes are kept, the same ones a direct sample of that size keeps."""
    got, total = sample_blocks(items, FIT_SAMPLE, key, seed)
    share = fit_sample_size(total, blocks=True)
    if len(got) > share:
        got, _ = sample_blocks(got, share, key, seed)
    return got, total
