"""The keeper: which record of a cluster is canonical, chosen the Q-SemDeDup way.

SemDeDup keeps the record closest to the cluster centroid; Q-SemDeDup notes that this representative can
be a poor record and adds quality: `score = a * sim(x, centroid) + (1 - a) * quality(x)` with `a = 0.7`.
Here quality is field completeness (a record with a city and device beats one without) and recency (the
account with the latest login is the one the person still uses), min-max normalised within the cluster.
Ties go to the earliest record, so the choice is deterministic.
"""

from __future__ import annotations

import numpy as np

__all__ = ["choose_canonical"]


def choose_canonical(rows: np.ndarray, vectors: np.ndarray, completeness: np.ndarray, recency: np.ndarray,
                     alpha: float = 0.7) -> int:
    """Return the canonical row among `rows` (vectors: their L2-normalised text embeddings)."""
    if len(rows) == 1:
        return int(rows[0])
    centroid = vectors.mean(axis=0)
    norm = float(np.linalg.norm(centroid))
    sim = vectors @ (centroid / norm) if norm > 0 else np.zeros(len(rows))
    span = float(recency.max() - recency.min())
    rec = (recency - recency.min()) / span if span > 0 else np.ones(len(rows))
    quality = 0.6 * completeness + 0.4 * rec
    score = alpha * sim + (1.0 - alpha) * quality
    best = np.flatnonzero(score >= score.max() - 1e-9)
    return int(rows[best[np.argmin(rows[best])]])
