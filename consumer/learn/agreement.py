"""How far a shipped model and the weights fitted to a file agree (the `fusion.adapt` gate, issue 20)."""

from __future__ import annotations

import numpy as np

from consumer.config import Settings, link_match
from consumer.engine.fusion import LearnedModel, ModelError, learned_thresholds

__all__ = ["reference_agreement"]


def reference_agreement(x: np.ndarray, features: tuple[str, ...], fitted: LearnedModel, reference: LearnedModel,
                        settings: Settings) -> float:
    """How far a shipped model and the weights fitted to this file agree on which candidate pairs match:
    |both| / |either| (1.0 when neither finds a match; 0.0 when the shipped model cannot read this
    pipeline's features). Why: a model trained on generated data is right on files like its training data
    and can be far off on others (Abt-Buy: it finds 18% of the duplicates); the fitted weights know this
    file but less about the hard cases the shipped model was trained on. Agreement says which case this is."""
    try:
        ref_cols = reference.columns_for(features)
    except ModelError:
        return 0.0
    linked = link_match(settings)
    ref = reference.predict(x, ref_cols) >= learned_thresholds(settings.fusion, reference, linked)[0]
    own = fitted.predict(x, fitted.columns_for(features)) >= learned_thresholds(settings.fusion, fitted, linked)[0]
    either = int((ref | own).sum())
    return 1.0 if either == 0 else round(float((ref & own).sum()) / either, 4)
