"""A batch's candidate pool cut to its k best: the index's neighbours, the held batch and the earlier records
of the batch, side by side (`merge_candidates`, called by `consumer.engine.blocking.Blocker.candidates`).

Why its own module and a compiled loop: on a full micro-batch (500 records, k 32, a held batch of 500) the
numpy form lays out 500 x 1,032 scores, masks, pools and a partition (8.7 ms, of which 0.9 ms is the two
matrix products); the service drains a backlog in such batches, and the merge was ~11% of its deciding thread.
The loop keeps a bounded heap per record (most entries cost one comparison with the current k-th best):
2.3 ms with the products.

Which entries are kept is defined, compiled or not: the k best scores, ties to the earlier column of the pool
(index neighbours in the index's order, then the held batch, then the batch, each in row order). A NaN score
(a vector that was not finite) counts as -2, below any cosine: kept only when there is room.
"""

from __future__ import annotations

import numpy as np

from consumer.engine.compiled import Kernel

__all__ = ["POOL_TOP", "merge_candidates"]

#: Score of a real candidate whose similarity is NaN: kept only when there is room.
NAN_SCORE = -2.0


def _pool_top_raw(ids: np.ndarray, sims: np.ndarray, held_s: np.ndarray, held_rows: np.ndarray,
                  batch_s: np.ndarray, rows: np.ndarray, k: int, keyed: np.ndarray,
                  counts: np.ndarray) -> None:  # pragma: no cover - compiled
    """Per record i: the k best of its valid pool entries (index ids >= 0, every held row, batch rows j < i)
    by (score descending, pool column ascending); their rows, ascending, into keyed[i, :counts[i]]."""
    n, ki = ids.shape
    m = held_rows.shape[0]
    heap_v = np.empty(max(k, 1), np.float32)
    heap_c = np.empty(max(k, 1), np.int64)  # the pool column (the tie rule)
    heap_r = np.empty(max(k, 1), np.int64)  # the row it names

    def sift(pos: int, size: int) -> None:
        # "worse" = a lower score, or the same score and the later column: the worst sits at the root
        while True:
            worst = pos
            for child in (2 * pos + 1, 2 * pos + 2):
                if child < size and (heap_v[child] < heap_v[worst] or
                                     (heap_v[child] == heap_v[worst] and heap_c[child] > heap_c[worst])):
                    worst = child
            if worst == pos:
                return
            heap_v[pos], heap_v[worst] = heap_v[worst], heap_v[pos]
            heap_c[pos], heap_c[worst] = heap_c[worst], heap_c[pos]
            heap_r[pos], heap_r[worst] = heap_r[worst], heap_r[pos]
            pos = worst

    for i in range(n):
        size = 0
        width = ki + m + i
        for col in range(width):
            if col < ki:
                if ids[i, col] < 0:
                    continue
                v = sims[i, col]
                r = ids[i, col]
            elif col < ki + m:
                v = held_s[i, col - ki]
                r = held_rows[col - ki]
            else:
                v = batch_s[i, col - ki - m]
                r = rows[col - ki - m]
            if v != v:
                v = np.float32(NAN_SCORE)
            if size < k:
                heap_v[size] = v
                heap_c[size] = col
                heap_r[size] = r
                size += 1
                if size == k:
                    for start in range(k // 2 - 1, -1, -1):
                        sift(start, k)
            elif v > heap_v[0]:  # strictly better than the worst: a tie keeps the earlier column
                heap_v[0] = v
                heap_c[0] = col
                heap_r[0] = r
                sift(0, k)
        out = np.sort(heap_r[:size])
        for j in range(size):
            keyed[i, j] = out[j]
        counts[i] = size


POOL_TOP = Kernel(_pool_top_raw)


def _pool_top_numpy(ids: np.ndarray, sims: np.ndarray, held_s: np.ndarray, held_rows: np.ndarray,
                    batch_s: np.ndarray, rows: np.ndarray, k: int, keyed: np.ndarray, counts: np.ndarray) -> None:
    """The numpy form (no numba): the same entries as the kernel. Each row's k-th best valid score by a
    partition, then the entries at or above it ordered by (score descending, column ascending)."""
    n = len(rows)
    score = np.hstack([sims, held_s, batch_s]).astype(np.float32, copy=False)
    score = np.where(np.isnan(score), np.float32(NAN_SCORE), score)
    valid = np.hstack([ids >= 0, np.ones(held_s.shape, bool), np.tri(n, n, -1, dtype=bool)])
    pool = np.hstack([ids, np.broadcast_to(held_rows, held_s.shape), np.broadcast_to(rows, (n, n))])
    score[~valid] = -np.inf
    nvalid = valid.sum(axis=1)
    for i in range(n):
        c = int(min(k, nvalid[i]))
        if c == 0:
            counts[i] = 0
            continue
        row = score[i]
        cut = np.partition(row, len(row) - c)[len(row) - c]
        cols = np.flatnonzero(valid[i] & (row >= cut))
        best = cols[np.lexsort((cols, -row[cols]))][:c]
        keyed[i, :c] = np.sort(pool[i, best])
        counts[i] = c


def merge_candidates(ids: np.ndarray, sims: np.ndarray, vecs: np.ndarray, rows: np.ndarray, k: int,
                     held_vecs: np.ndarray | None = None,
                     held_rows: np.ndarray | None = None) -> list[np.ndarray]:
    """Per batch record: the k most similar of its index neighbours (`ids`/`sims`, -1 = none), every record
    of the held batch (`held_vecs`, rows `held_rows`: not in the index yet, compared exactly) and the
    earlier records of its batch (`vecs[:i]`, rows `rows[:i]`), as sorted unique row arrays (the pools are
    disjoint: neither the held batch nor this one is in the index yet)."""
    n = len(rows)
    if n == 0:
        return []
    rows = np.ascontiguousarray(rows, np.int64)
    if held_rows is None or held_vecs is None or not len(held_rows):
        held_s = np.zeros((n, 0), np.float32)
        held_rows = np.zeros(0, np.int64)
    else:
        held_s = np.ascontiguousarray(vecs @ held_vecs.T, np.float32)
        held_rows = np.ascontiguousarray(held_rows, np.int64)
    batch_s = np.ascontiguousarray(vecs @ vecs.T, np.float32)
    ids = np.ascontiguousarray(ids, np.int64)
    sims = np.ascontiguousarray(sims, np.float32)
    keyed = np.empty((n, max(k, 1)), np.int64)
    counts = np.zeros(n, np.int64)
    if k > 0:
        kernel = POOL_TOP.get()
        (kernel or _pool_top_numpy)(ids, sims, held_s, held_rows, batch_s, rows, k, keyed, counts)
    return [keyed[i, :c] for i, c in enumerate(counts.tolist())]
