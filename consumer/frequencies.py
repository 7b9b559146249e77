"""Term-frequency evidence: agreeing on a rare value says more than agreeing on a common one.

Two "John Smith"s in New York on Chrome/Windows are weak evidence of one person; two "Ferrándiz
Vallejo"s in Huesca on Brave/Linux are strong. Fellegi-Sunter record linkage (and Splink) adjust match
weights by how often a value occurs; we do the same, streaming: counts of hashed name tokens, canonical
cities and device combinations seen so far give each pair an inverse-frequency feature. The model learns
how much a match on a rare value is worth.

Counts are keyed by the same keyed hashes the signatures hold, so this table is as private as they are.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from consumer.encoders.base import Columns

__all__ = ["FrequencyTable"]


class FrequencyTable:
    def __init__(self) -> None:
        self.records = 0
        self.tokens: Counter[int] = Counter()
        self.cities: Counter[int] = Counter()
        self.devices: Counter[int] = Counter()

    @staticmethod
    def _device_keys(cols: Columns) -> np.ndarray:
        d = cols["device"].astype(np.uint64)
        return (d[:, 0] << np.uint64(32)) | d[:, 1]

    def observe(self, cols: Columns) -> None:
        """Count a batch of encoded records (before their pairs are scored, so a batch sees itself)."""
        self.records += len(cols["city_key"])
        toks = cols["tok_keys"][:, :, 0]
        self.tokens.update(toks[toks != 0].tolist())
        cities = cols["city_key"]
        self.cities.update(cities[cities != 0].tolist())
        dev = self._device_keys(cols)
        self.devices.update(dev[dev != 0].tolist())

    def _idf(self, counter: Counter[int], keys: np.ndarray) -> np.ndarray:
        flat = keys.reshape(-1)
        counts = np.fromiter((counter.get(int(k), 0) for k in flat), np.float64, len(flat)).reshape(keys.shape)
        return np.log1p(self.records / (1.0 + counts)).astype(np.float32)

    def features(self, a: Columns, b: Columns) -> dict[str, np.ndarray]:
        """Rarity of the values the pair's first record carries: its name tokens (mean over tokens),
        its city, and its device combination; NaN where absent."""
        toks = a["tok_keys"][:, :, 0]
        valid = toks != 0
        idf = np.where(valid, self._idf(self.tokens, toks), 0.0)
        n = valid.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            name = np.where(n > 0, idf.sum(axis=1) / n, np.nan).astype(np.float32)
        city = np.where(a["city_key"] != 0, self._idf(self.cities, a["city_key"]), np.nan).astype(np.float32)
        dev_keys = self._device_keys(a)
        device = np.where(dev_keys != 0, self._idf(self.devices, dev_keys), np.nan).astype(np.float32)
        return {"name_rarity": name, "city_rarity": city, "device_rarity": device}
