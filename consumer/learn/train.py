"""`dedup train`: fit the learned fusion model on labelled pairs.

Training pairs are exactly the pairs the pipeline scores in production: the labelled file is run through
the real candidate search, and every (record, candidate) it compares becomes a row, labelled by the
truth file. So the negatives are the hard ones the model will meet (same surname, same city, household
members), not random pairs.

The model is a gradient-boosted tree ensemble with *monotonic* constraints: more similarity on any signal
can never lower the probability. That keeps it from learning quirks of the generator that made its
training file (a guard against tuning to our own data), and NaN (modality absent) is handled natively.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from consumer.config import Settings
from consumer.engine.fusion import LearnedModel
from consumer.engine.pipeline import Pipeline
from consumer.engine.records import Record
from consumer.io.artifacts import build_pipeline

__all__ = ["collect_pairs", "fit_model", "candidate_recall"]


def collect_pairs(records: Sequence[Record], truth: Mapping[str, str], settings: Settings,
                  text_encoder: Any = None, image_encoder: Any = None) -> tuple[np.ndarray, np.ndarray, Pipeline]:
    """Run the pipeline (rule fusion, so no model is needed) and return (features, labels, pipeline)."""
    rule = dataclasses.replace(settings, fusion=dataclasses.replace(settings.fusion, mode="rule"))
    pipe = build_pipeline(rule, text_encoder=text_encoder, image_encoder=image_encoder)
    pipe.pair_log = []
    for start in range(0, len(records), rule.batch_size):
        pipe.process(records[start: start + rule.batch_size])
    ids = pipe.store.record_ids
    xs, ys = [], []
    for row, cands, feats in pipe.pair_log:
        if len(cands) == 0:
            continue
        ent = truth.get(ids[row])
        xs.append(feats)
        ys.append(np.array([ent is not None and truth.get(ids[c]) == ent for c in cands], bool))
    x = np.concatenate(xs) if xs else np.zeros((0, len(pipe.comparator.features)), np.float32)
    y = np.concatenate(ys) if ys else np.zeros(0, bool)
    return x, y, pipe


def fit_model(x: np.ndarray, y: np.ndarray, features: Sequence[str], monotone: Mapping[str, int], seed: int = 0,
              source: str = "", learning_rate: float = 0.08) -> LearnedModel:
    """Fit on the feature matrix of `collect_pairs`; `features` and `monotone` are the pipeline
    comparator's (its column names and their monotone directions, declared by the encoders)."""
    from sklearn import __version__ as sk_version
    from sklearn.ensemble import HistGradientBoostingClassifier

    if y.sum() < 10 or (~y).sum() < 10:
        raise ValueError(f"too few labelled pairs to train on ({int(y.sum())} duplicates, "
                         f"{int((~y).sum())} non-duplicates); use a larger labelled file")
    # Signals the training file never has (e.g. key fields of another profile) are left out, not faked.
    used = [j for j in range(x.shape[1]) if not np.isnan(x[:, j]).all()]
    est = HistGradientBoostingClassifier(
        max_iter=800, learning_rate=learning_rate, max_leaf_nodes=15, min_samples_leaf=40, l2_regularization=1.0,
        monotonic_cst=[monotone.get(features[j], 1) for j in used], random_state=seed,
        early_stopping=True, validation_fraction=0.15, n_iter_no_change=20,
    )
    t0 = time.perf_counter()
    est.fit(x[:, used], y)
    meta = {"used_features": [features[j] for j in used], "trained_on": source, "pairs": int(len(y)),
            "positives": int(y.sum()), "sklearn": sk_version, "fit_seconds": round(time.perf_counter() - t0, 2),
            "iterations": int(est.n_iter_), "learning_rate": learning_rate}
    return LearnedModel(est, tuple(features), meta)


def candidate_recall(pipe: Pipeline, truth: Mapping[str, str]) -> tuple[float, int, int]:
    """Share of true duplicate pairs that reached scoring (needs `pair_log`): (recall, reached, total)."""
    from consumer.evaluation.evaluate import true_pairs

    assert pipe.pair_log is not None, "run the pipeline with pair_log = [] first"
    ids = pipe.store.record_ids
    seen = {rid for rid in ids}
    gold = {p for p in true_pairs({r: e for r, e in truth.items() if r in seen})}
    reached: set[tuple[str, str]] = set()
    for row, cands, _ in pipe.pair_log:
        a = ids[row]
        for c in cands:
            b = ids[int(c)]
            reached.add((a, b) if a < b else (b, a))
    hit = len(gold & reached)
    return (hit / len(gold) if gold else 1.0), hit, len(gold)

