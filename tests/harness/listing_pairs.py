"""The listing pipeline's comparison features of chosen pairs of a few rows: what the tests of one listing
comparison (garbled text, typos) need, built once here instead of in each."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from consumer.config import load_settings
from consumer.engine.records import parse_record


def listing_features(rows: Sequence[dict[str, str]], left: Sequence[int], right: Sequence[int]
                     ) -> dict[str, np.ndarray]:
    """`rows` through `dedup batch`'s listing pipeline (built-in profile, no model file), then each feature
    of the pairs (rows[left[i]], rows[right[i]]), by name."""
    from consumer.io.artifacts import build_pipeline

    s = load_settings(env={}, profile="listing")
    recs = [parse_record(dict(r), s.profile, s.limits) for r in rows]
    with build_pipeline(s) as pipe:
        pipe.process(recs)
        x = pipe.compare_pairs(list(left), list(right))
        return {name: x[:, j] for j, name in enumerate(pipe.comparator.features)}
