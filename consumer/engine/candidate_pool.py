"""A batch's candidate pool cut to its k best: the index's neighbours, the held batch and the earlier records
of the batch, side by side (`merge_candidates`, called by `consumer.engine.blocking.Blocker.candidates`).

Why not a partition over the whole pool: on a full micro-batch (500 records, k 32, a held batch of 500) the
numpy form laid out 500 x 1,032 scores, masks and pools and partitioned them (8.7 ms, of which 0.9 ms is the
two matrix products); the service drains a backlog in such batches, and the merge was ~11% of its deciding
thread. The scores are now written once into one matrix and cut by the exact index's compiled top-k
(`consumer.engine.exact_index.top_k`, a bounded heap per row): 2.4 ms with the products.

Which entries are kept is defined, compiled or not: the k best scores, ties to the earlier column of the pool
(index neighbours in the index's order, then the held batch, then the batch, each in row order), the exact
index's own rule. A NaN score (a vector that was not finite) counts as -2, below any cosine: kept only when
there is room.
"""

from __future__ import annotations

import numpy as np

from consumer.engine.exact_index import top_k

__all__ = ["merge_candidates"]

#: Score of a real candidate whose similarity is NaN: kept only when there is room.
NAN_SCORE = -2.0


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
    rows = np.asarray(rows, np.int64)
    if held_rows is None or held_vecs is None or not len(held_rows):
        held_vecs, held_rows = vecs[:0], np.zeros(0, np.int64)
    if ids.shape[1] == 0:  # no index column at all: one empty one keeps the column arithmetic below simple
        ids, sims = np.full((n, 1), -1, np.int64), np.zeros((n, 1), np.float32)
    ki, m = ids.shape[1], len(held_rows)
    # Columns: the index's neighbours, the held batch, the batch; an entry that is not a candidate is -inf.
    score = np.empty((n, ki + m + n), np.float32)
    score[:, :ki] = np.where(ids >= 0, sims, -np.inf)
    if m:
        np.matmul(vecs, held_vecs.T, out=score[:, ki:ki + m])
    np.matmul(vecs, vecs.T, out=score[:, ki + m:])
    score[:, ki + m:][~np.tri(n, n, -1, dtype=bool)] = -np.inf  # only the batch's earlier records
    np.copyto(score, np.float32(NAN_SCORE), where=np.isnan(score))
    cols, vals = top_k(score, k)
    kept = (cols >= 0) & (vals > -np.inf)
    cols = np.where(kept, cols, 0)
    exact_rows = np.concatenate([np.asarray(held_rows, np.int64), rows])  # columns ki.. name these rows
    found = np.where(cols < ki, np.take_along_axis(ids, np.minimum(cols, ki - 1), axis=1),
                     exact_rows[np.maximum(cols - ki, 0)])
    # Entries not kept sort last (max int), so each record's candidates are a sorted prefix.
    keyed = np.sort(np.where(kept, found, np.iinfo(np.int64).max), axis=1)
    return [keyed[i, :c] for i, c in enumerate(kept.sum(axis=1).tolist())]
