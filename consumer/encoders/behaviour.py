"""Behaviour: login-time habits, compared so that two accounts of one person match with *different* stamps.

The CRM paper's data leaks its label through byte-identical login strings; real duplicate accounts never
share timestamps, only habits. So each account is summarised by distributions, not by its stamps:

- hour of day as a circular density (each login spreads a wrapped-Gaussian kernel over 24 bins, so 23:50
  and 00:10 are neighbours), stored as its square root so a dot product is the Bhattacharyya coefficient;
- the weekend share of logins;
- cadence: log of the median gap between consecutive logins (days), and log of the login count.

Similarity is high only when the habits overlap; with few logins the kernel keeps it from being all-or-none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from consumer.config import Settings
from consumer.encoders.base import Columns, Contribution, Feature, IndexVector, Score, nanmean_weighted
from consumer.engine.records import Record

__all__ = ["BehaviourEncoder"]

BINS = 24
_CENTERS = np.arange(BINS, dtype=np.float64) + 0.5


class BehaviourEncoder:
    name = "behaviour"

    def __init__(self, bandwidth_hours: float = 1.5):
        self._bw = bandwidth_hours

    @classmethod
    def from_settings(cls, settings: Settings, artifacts: Mapping[str, Any]) -> BehaviourEncoder:
        return cls()

    @property
    def contribution(self) -> Contribution:
        return Contribution(
            roles=("login_times",), columns=("hour", "weekend", "cadence", "logins"),
            features=(Feature("beh_hour"), Feature("beh_weekend"), Feature("beh_cadence"),
                      Feature("beh_evidence", monotone=0)),  # evidence strength, not similarity
            scores=(Score("behaviour"),),
            index=(IndexVector("hour", BINS, 0.6),))

    def _hour_density(self, hours: np.ndarray) -> np.ndarray:
        diff = np.abs(hours[:, None] - _CENTERS[None, :])
        diff = np.minimum(diff, 24.0 - diff)  # circular distance
        dens = np.exp(-0.5 * (diff / self._bw) ** 2).sum(axis=0)
        return dens / dens.sum()

    def encode(self, records: Sequence[Record]) -> Columns:
        n = len(records)
        hour = np.zeros((n, BINS), np.float32)
        weekend = np.full(n, np.nan, np.float32)
        cadence = np.full(n, np.nan, np.float32)
        count = np.zeros(n, np.float32)
        for i, rec in enumerate(records):
            ts = rec.login_times
            if not ts:
                continue
            hours = np.array([t.hour + t.minute / 60.0 for t in ts])
            hour[i] = np.sqrt(self._hour_density(hours))
            weekend[i] = sum(t.weekday() >= 5 for t in ts) / len(ts)
            count[i] = np.log1p(len(ts))
            if len(ts) >= 2:
                stamps = [t.timestamp() for t in ts]
                gaps = sorted(b - a for a, b in zip(stamps, stamps[1:]))
                mid = len(gaps) // 2
                median = gaps[mid] if len(gaps) % 2 else (gaps[mid - 1] + gaps[mid]) / 2
                cadence[i] = math.log1p(median / 86400.0)
        return {"hour": hour, "weekend": weekend, "cadence": cadence, "logins": count}

    def compare(self, a: Columns, b: Columns) -> dict[str, np.ndarray]:
        missing = (a["logins"] == 0) | (b["logins"] == 0)
        bc = np.einsum("ij,ij->i", a["hour"], b["hour"]).astype(np.float32)
        week = (1.0 - np.abs(a["weekend"] - b["weekend"])).astype(np.float32)
        cad = np.exp(-np.abs(a["cadence"] - b["cadence"])).astype(np.float32)
        # How much evidence the pair has: few logins make the hour overlap noisy (a feature for `learned`).
        evidence = np.minimum(a["logins"], b["logins"]).astype(np.float32)
        for arr in (bc, week, cad, evidence):
            arr[missing] = np.nan
        return {"beh_hour": bc, "beh_weekend": week, "beh_cadence": cad, "beh_evidence": evidence}

    def scores(self, feats: Mapping[str, np.ndarray], coef: Mapping[str, float]) -> dict[str, np.ndarray]:
        """Hour overlap (Bhattacharyya) with the weekend share; rescaled because two random people's
        smooth hour densities already overlap ~0.5."""
        hour = np.clip((feats["beh_hour"] - coef["behaviour.hour_floor"]) / coef["behaviour.hour_span"], 0.0, 1.0)
        behaviour = nanmean_weighted([(hour, coef["behaviour.hour"]),
                                      (feats["beh_weekend"], coef["behaviour.weekend"])])
        return {"behaviour": behaviour.astype(np.float32)}
