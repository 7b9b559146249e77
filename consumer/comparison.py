"""Comparison: record pairs -> a named feature per modality signal.

This is the entity-resolution "comparison" step (Splink's vocabulary), run on pair-aligned columns (row i
of `a` against row i of `b`) for a whole micro-batch at once. It owns the list of features the
fusion step sees, in a fixed order, so rule and learned fusion read the same numbers and every decision
can be explained by them. NaN means "this pair cannot be compared on that signal" (a side lacks it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from consumer.encoders.base import Columns, Encoder

__all__ = ["FEATURES", "Comparator"]

#: Feature order for learned fusion; changing it invalidates trained models (they store it and check).
FEATURES: tuple[str, ...] = (
    "text_cos",
    "name_cov_max",
    "name_cov_min",
    "name_grams",
    "name_worst",
    "city",
    "keys",
    "beh_hour",
    "beh_weekend",
    "beh_cadence",
    "beh_evidence",
    "device",
    "name_rarity",
    "city_rarity",
    "device_rarity",
)


class Comparator:
    """Runs every encoder's `compare`; returns a [P, len(FEATURES)] matrix."""

    def __init__(self, encoders: Sequence[Encoder]):
        self._encoders = list(encoders)
        #: Columns no encoder compares (vectors that exist for the index only): not worth gathering for
        #: millions of pairs.
        self.unused_columns: frozenset[str] = frozenset(
            c for enc in self._encoders for c in getattr(enc, "index_only_columns", ()))

    def compare(self, a: Columns, b: Columns, extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Feature matrix for pairs (a[i], b[i]); `extra` adds precomputed per-pair features."""
        p = next(iter(a.values())).shape[0]
        feats: dict[str, np.ndarray] = dict(extra or {})
        for enc in self._encoders:
            feats.update(enc.compare(a, b))
        out = np.full((p, len(FEATURES)), np.nan, np.float32)
        for j, name in enumerate(FEATURES):
            if name in feats:
                out[:, j] = feats[name]
        return out
