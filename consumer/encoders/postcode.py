"""Postcode: the worked example of a plug-in modality (docs/extending.md), one module and a profile entry.

Two records with the same postcode live in the same few streets; the same district (the first three
characters of the folded code, "3053" -> "305", "SW1A 1AA" -> "sw1") is weaker evidence. A common
postcode is weak evidence and a rare one strong, so the encoder also declares a term-frequency feature.

Like every encoder it stores keyed hashes only, never the postcode itself, and everything else follows
from its `contribution`: the comparator adds its features, the frequency table counts its keys, the
training run constrains `postcode` to be monotone, rule fusion weights its score (`postcode.weight`, or
`fusion.weights.postcode`), and decisions and events report it.

Enable it in a profile:

    [profile]
    roles = { postcode = "postcode" }
    encoders = ["text", "names", "consumer.encoders.postcode:PostcodeEncoder"]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from consumer.config import Settings
from consumer.encoders.base import Columns, Contribution, Feature, KeyedHasher, Rarity, Score
from consumer.engine.normalize import fold
from consumer.engine.records import Record

__all__ = ["PostcodeEncoder"]

DISTRICT_CHARS = 3


class PostcodeEncoder:
    name = "postcode"

    def __init__(self, hash_key: str, role: str = "postcode"):
        self._hash = KeyedHasher(hash_key)
        self._role = role

    @classmethod
    def from_settings(cls, settings: Settings, artifacts: Mapping[str, Any]) -> PostcodeEncoder:
        return cls(settings.encoders.hash_key)

    @property
    def contribution(self) -> Contribution:
        return Contribution(
            roles=(self._role,), columns=("postcode",),
            features=(Feature("postcode"),),
            scores=(Score("postcode"),),  # a top-level modality of its own
            rarity=(Rarity("postcode_rarity", lambda cols: cols["postcode"][:, 0]),),
            # Rule fusion: weight of the score, and the credit for the same district only.
            coefficients={"postcode.weight": 0.2, "postcode.district": 0.5})

    def encode(self, records: Sequence[Record]) -> Columns:
        out = np.zeros((len(records), 2), np.uint32)  # [full code, district]; 0 = absent
        for i, rec in enumerate(records):
            code = fold(rec.role(self._role)).replace(" ", "")
            if code:
                out[i] = (self._hash("pc:" + code), self._hash("pd:" + code[:DISTRICT_CHARS]))
        return {"postcode": out}

    def compare(self, a: Columns, b: Columns) -> dict[str, np.ndarray]:
        x, y = a["postcode"], b["postcode"]
        # Feature: 1 same code, 0.5 same district, 0 else; NaN when a side has none.
        sim = np.where(x[:, 0] == y[:, 0], 1.0, np.where(x[:, 1] == y[:, 1], 0.5, 0.0)).astype(np.float32)
        sim[(x[:, 0] == 0) | (y[:, 0] == 0)] = np.nan
        return {"postcode": sim}

    def scores(self, feats: Mapping[str, np.ndarray], coef: Mapping[str, float]) -> dict[str, np.ndarray]:
        f = feats["postcode"]
        # Rescale the district credit by the configured coefficient (0.5 by default: the feature itself).
        return {"postcode": np.where(f == 0.5, coef["postcode.district"], f).astype(np.float32)}
