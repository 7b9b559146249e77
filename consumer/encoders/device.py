"""Device: browser and operating system, with partial credit.

People switch browsers more often than devices, so the same OS with another browser still counts for
something, and iOS/macOS (one vendor, often one person's phone and laptop) count a little. Values are
canonicalised first ("Google Chrome 120", "chrome" -> chrome; "Mac OS X", "MacOS" -> macos).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from consumer.config import Settings
from consumer.encoders.base import Columns, Contribution, Feature, KeyedHasher, Rarity, Score
from consumer.engine.normalize import browser_canonical, os_canonical, os_family
from consumer.engine.records import Record

__all__ = ["DeviceEncoder", "device_similarity"]

SAME_BOTH = 1.0
SAME_OS = 0.6
SAME_BROWSER_FAMILY_OS = 0.45
SAME_BROWSER = 0.3
SAME_FAMILY = 0.2


def device_similarity(b1: np.ndarray, o1: np.ndarray, f1: np.ndarray, b2: np.ndarray, o2: np.ndarray,
                      f2: np.ndarray) -> np.ndarray:
    """Partial-credit similarity of hashed (browser, os, os-family) triples; NaN when a side has none."""
    same_b = (b1 == b2) & (b1 != 0)
    same_o = (o1 == o2) & (o1 != 0)
    same_f = (f1 == f2) & (f1 != 0)
    sim = np.select(
        [same_b & same_o, same_o, same_b & same_f, same_b, same_f],
        [SAME_BOTH, SAME_OS, SAME_BROWSER_FAMILY_OS, SAME_BROWSER, SAME_FAMILY],
        default=0.0,
    ).astype(np.float32)
    # With only one of the two fields known on a side, score what can be compared.
    only_b = ((o1 == 0) | (o2 == 0)) & (b1 != 0) & (b2 != 0)
    sim = np.where(only_b, same_b.astype(np.float32) * SAME_OS, sim)
    sim[((b1 == 0) & (o1 == 0)) | ((b2 == 0) & (o2 == 0))] = np.nan
    return sim


def device_keys(cols: Columns) -> np.ndarray:
    """One 64-bit key per (browser, os) combination, for term frequencies (0 = no device)."""
    d = cols["device"].astype(np.uint64)
    return (d[:, 0] << np.uint64(32)) | d[:, 1]


class DeviceEncoder:
    name = "device"

    def __init__(self, hash_key: str):
        self._hash = KeyedHasher(hash_key)

    @classmethod
    def from_settings(cls, settings: Settings, artifacts: Mapping[str, Any]) -> DeviceEncoder:
        return cls(settings.encoders.hash_key)

    @property
    def contribution(self) -> Contribution:
        return Contribution(roles=("browser", "os"), columns=("device",), features=(Feature("device"),),
                            scores=(Score("device"),),
                            rarity=(Rarity("device_rarity", device_keys),))

    def encode(self, records: Sequence[Record]) -> Columns:
        n = len(records)
        out = np.zeros((n, 3), np.uint32)
        for i, rec in enumerate(records):
            b = browser_canonical(rec.browser) if rec.browser else ""
            o = os_canonical(rec.os) if rec.os else ""
            out[i, 0] = self._hash("b:" + b) if b else 0
            out[i, 1] = self._hash("o:" + o) if o else 0
            out[i, 2] = self._hash("f:" + os_family(o)) if o else 0
        return {"device": out}

    def compare(self, a: Columns, b: Columns) -> dict[str, np.ndarray]:
        x, y = a["device"], b["device"]
        return {"device": device_similarity(x[:, 0], x[:, 1], x[:, 2], y[:, 0], y[:, 1], y[:, 2])}

    def scores(self, feats: Mapping[str, np.ndarray], coef: Mapping[str, float]) -> dict[str, np.ndarray]:
        return {"device": feats["device"].astype(np.float32)}
