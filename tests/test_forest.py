"""`SmallForest` (numpy walk of the learned model's trees for small batches) is bit-equal to scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.forest import SMALL_BATCH, SmallForest
from consumer.fusion import LearnedModel


def _rows(n: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.2, 1.2, size=(n, width)).astype(np.float32)
    x[rng.uniform(size=x.shape) < 0.2] = np.nan
    return x


@pytest.mark.parametrize("n", [1, 2, 7, SMALL_BATCH, 200])
def test_packaged_model_bit_equal(n: int) -> None:
    model = LearnedModel.load()
    forest = SmallForest.of(model.estimator)
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
    forest = SmallForest.of(est)
    assert forest is not None
    probe = _rows(300, 5, 2)
    # Values exactly on split thresholds (x <= threshold goes left): float32 casts of them and neighbours.
    thr = np.concatenate([p[0].nodes["num_threshold"][~p[0].nodes["is_leaf"].astype(bool)] for p in est._predictors])
    probe[: min(len(thr), 300), 0] = thr[:300].astype(np.float32)
    assert np.array_equal(forest.proba(probe), est.predict_proba(probe)[:, 1])


def test_other_estimators_keep_their_own_predict() -> None:
    from sklearn.linear_model import LogisticRegression

    assert SmallForest.of(LogisticRegression()) is None
    assert SmallForest.of(object()) is None
