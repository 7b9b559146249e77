"""Late fusion: comparison features -> per-modality scores -> one fused score -> match / possible / no.

Two modes behind one interface:

- `rule`: the CRM paper's weighted sum (text 0.4, behaviour 0.35, device 0.25, threshold 0.75), with the
  weights renormalised over the modalities a pair actually has, so a record without logins is judged on
  what it has instead of being pulled down by a zero.
- `learned`: a scikit-learn classifier over the same features (`dedup train`), returning a probability.
  Gradient-boosted trees handle missing modalities natively (NaN) and learn interactions the rule cannot
  (a common name is weak evidence unless behaviour agrees).

Either way every decision keeps the per-modality scores as its explanation.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from consumer.comparison import FEATURES
from consumer.config import FusionSettings

__all__ = ["MODALITIES", "Fuser", "modality_scores", "LearnedModel", "ModelError"]

MODALITIES = ("text", "name", "city", "behaviour", "device")
NAME_GATE = 0.35
_IDX = {name: i for i, name in enumerate(FEATURES)}


class ModelError(RuntimeError):
    """The learned model file is missing, corrupt or was trained on other features."""


def _col(feats: np.ndarray, name: str) -> np.ndarray:
    return feats[:, _IDX[name]]


def _nanmean_weighted(parts: list[tuple[np.ndarray, float]]) -> np.ndarray:
    """Weighted mean over the parts that are present (not NaN); NaN when none is."""
    num = np.zeros(parts[0][0].shape, np.float64)
    den = np.zeros(parts[0][0].shape, np.float64)
    for values, weight in parts:
        present = ~np.isnan(values)
        num += np.where(present, values * weight, 0.0)
        den += np.where(present, weight, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def modality_scores(feats: np.ndarray) -> dict[str, np.ndarray]:
    """Per-modality similarities in [0, 1] (NaN = modality absent), the explanation of every decision.

    name: the better of soft token alignment (nicknames, initials, order, typos within one edit, dropped
    middle names, and the worst-covered token so a household member's other given name counts) and
    whole-name trigram overlap (typos). semantic: the transformer cosine, rescaled because unrelated short
    names already sit near 0.5. text: name, city, semantic and key fields combined. behaviour: overlap of
    the login-hour densities (Bhattacharyya) with the weekend share; rescaled because two random people's
    smooth hour densities already overlap ~0.5.
    """
    align = (0.5 * _col(feats, "name_cov_max") + 0.2 * _col(feats, "name_cov_min")
             + 0.3 * _col(feats, "name_worst"))
    name = np.fmax(align, _col(feats, "name_grams"))
    semantic = np.clip((_col(feats, "text_cos") - 0.5) / 0.45, 0.0, 1.0)
    city = _col(feats, "city")
    text = _nanmean_weighted([(name, 0.55), (semantic, 0.2), (city, 0.25), (_col(feats, "keys"), 0.25)])
    hour = np.clip((_col(feats, "beh_hour") - 0.55) / 0.4, 0.0, 1.0)
    behaviour = _nanmean_weighted([(hour, 0.8), (_col(feats, "beh_weekend"), 0.2)])
    return {"text": text.astype(np.float32), "name": name.astype(np.float32),
            "city": city.astype(np.float32), "behaviour": behaviour.astype(np.float32),
            "device": _col(feats, "device").astype(np.float32)}


@dataclass
class LearnedModel:
    """A fitted classifier plus the feature order it was trained on."""

    estimator: Any
    features: tuple[str, ...]
    meta: dict[str, Any]

    def predict(self, feats: np.ndarray) -> np.ndarray:
        if len(feats) == 0:
            return np.zeros(0, np.float32)
        used = [FEATURES.index(f) for f in self.meta.get("used_features", FEATURES)]
        return self.estimator.predict_proba(feats[:, used])[:, 1].astype(np.float32)

    def save(self, path: str | Path) -> str:
        blob = pickle.dumps({"estimator": self.estimator, "features": self.features, "meta": self.meta})
        Path(path).write_bytes(blob)
        return hashlib.sha256(blob).hexdigest()

    @classmethod
    def load(cls, path: str | Path | None = None) -> LearnedModel:
        """Load a model file (None = the default shipped in the package)."""
        try:
            if path is None:
                blob = (resources.files("consumer") / "data" / "fusion-default.pkl").read_bytes()
            else:
                blob = Path(path).read_bytes()
            data = pickle.load(io.BytesIO(blob))  # noqa: S301 - our own artifact, sha256 in its meta file
        except FileNotFoundError as exc:
            raise ModelError(f"learned fusion model not found ({path or 'packaged default'}); "
                             "train one with `dedup train` or use --fusion rule") from exc
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same thing to a user
            raise ModelError(f"cannot load learned fusion model {path or '(default)'}: {exc}; "
                             "retrain it with `dedup train`") from exc
        if tuple(data["features"]) != FEATURES:
            raise ModelError("learned fusion model was trained on other features; retrain with `dedup train`")
        model = cls(data["estimator"], tuple(data["features"]), dict(data.get("meta", {})))
        model.meta["sha256"] = hashlib.sha256(blob).hexdigest()
        return model


class Fuser:
    """Scores candidate pairs and labels them: 2 = match, 1 = possible, 0 = no match."""

    def __init__(self, settings: FusionSettings, model: LearnedModel | None = None):
        self.settings = settings
        self.mode = settings.mode
        if self.mode == "learned":
            self.model = model or LearnedModel.load(settings.learned_model)
            # scikit-learn's OpenMP pool fights onnxruntime's threads for the cores and makes each
            # micro-batch prediction ~6x slower (measured); one thread predicts a batch in ~ms.
            from threadpoolctl import threadpool_limits

            self._limits = threadpool_limits(limits=1, user_api="openmp")
            self.match_threshold = settings.learned_match
            self.possible_threshold = settings.learned_possible
            self.version = f"learned:{self.model.meta.get('sha256', 'unknown')[:12]}"
        else:
            self.model = None
            self.match_threshold = settings.match_threshold
            self.possible_threshold = settings.possible_threshold
            self.version = "rule:v1"

    def score(self, feats: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Fused score per pair plus the per-modality scores that explain it."""
        mods = modality_scores(feats)
        if self.model is not None:
            # Name gate: pairs whose names barely overlap are never duplicates for the model (measured:
            # none of ~180k such candidate pairs scored >= 0.25), and skipping them halves the cost.
            name = mods["name"]
            run = ~(name < NAME_GATE)  # NaN (no name on a side) still goes to the model
            fused = np.zeros(len(feats), np.float32)
            if run.any():
                fused[run] = self.model.predict(feats[run])
        else:
            s = self.settings
            fused = _nanmean_weighted([(mods["text"], s.weight_text), (mods["behaviour"], s.weight_behaviour),
                                       (mods["device"], s.weight_device)])
            fused = np.nan_to_num(fused, nan=0.0).astype(np.float32)
        return fused, mods

    def label(self, fused: np.ndarray) -> np.ndarray:
        return np.where(fused >= self.match_threshold, 2, np.where(fused >= self.possible_threshold, 1, 0))
