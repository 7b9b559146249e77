"""`FastForest` (numpy walk of the trees for small batches, binned prediction for larger ones) is bit-equal
to scikit-learn's `predict_proba`."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.engine.forest import SMALL_BATCH, FastForest
from consumer.engine.fusion import LearnedModel


def _rows(n: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.2, 1.2, size=(n, width)).astype(np.float32)
    x[rng.uniform(size=x.shape) < 0.2] = np.nan
    return x


@pytest.mark.parametrize("n", [1, 2, 7, SMALL_BATCH, SMALL_BATCH + 1, 200, 3000])
def test_packaged_model_bit_equal(n: int) -> None:
    model = LearnedModel.load()
    forest = FastForest.of(model.estimator)
    assert forest is not None
    x = _rows(n, len(model.used_features), n)
    assert np.array_equal(forest.proba(x), model.estimator.predict_proba(x)[:, 1])
    cols = np.arange(len(model.used_features))
    expected = model.estimator.predict_proba(x)[:, 1].astype(np.float32)
    assert np.array_equal(model.predict(x, cols), expected)  # whichever path it takes


def test_fitted_with_missing_values_and_thresholds_hit_exactly() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = _rows(2000, 5, 1)
    y = (np.nan_to_num(x[:, 0], nan=0.9) + 0.3 * np.nan_to_num(x[:, 1], nan=0.1) > 0.7).astype(int)
    est = HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=15, random_state=0).fit(x, y)
    forest = FastForest.of(est)
    assert forest is not None
    probe = _rows(300, 5, 2)
    # Values exactly on split thresholds (x <= threshold goes left), each in its split's feature column:
    # as float32 (the pipeline's features) and as the float64 threshold itself.
    splits = np.concatenate([p[0].nodes[~p[0].nodes["is_leaf"].astype(bool)] for p in est._predictors])[:300]
    rows = np.arange(len(splits))
    probe[rows, splits["feature_idx"]] = splits["num_threshold"].astype(np.float32)
    exact = probe.astype(np.float64)
    exact[rows, splits["feature_idx"]] = splits["num_threshold"]
    for x in (probe, exact):
        assert np.array_equal(forest.proba(x), est.predict_proba(x)[:, 1])  # binned
        for lo in range(0, 300, SMALL_BATCH):  # the numpy walk
            part = x[lo: lo + SMALL_BATCH]
            assert np.array_equal(forest.proba(part), est.predict_proba(part)[:, 1])


def test_other_estimators_keep_their_own_predict() -> None:
    from sklearn.linear_model import LogisticRegression

    assert FastForest.of(LogisticRegression()) is None
    assert FastForest.of(object()) is None
