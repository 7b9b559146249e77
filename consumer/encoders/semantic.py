"""The text modality's transformer part: MiniLM embeddings of name tokens and the city, cached.

A record's semantic vector is `normalise(0.75 * normalise(mean(token vectors)) + 0.25 * city vector)`,
where every distinct folded name token and canonical city is embedded once by the ONNX MiniLM encoder
(`text.py`) and kept in a bounded cache. Why not embed the whole "name, city" string per record:

- cost: on 2 CPU cores the int8 transformer does ~2,000 short strings/s, which alone would use the
  whole 1,000 records/s budget; names and cities repeat (Zipf), so after a few thousand records most
  tokens are cached and the transformer runs on a small fraction of records;
- quality: measured on generated CRM data, the token-level vector gives the same or better pairwise F1
  than the whole-string vector (README), and it is order-free by construction ("Smith, John").

Embeddings are computed in sorted order of the missing strings of a batch, so the same input in the same
order gives the same vectors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from consumer.config import Settings
from consumer.encoders.base import Columns, Contribution, Feature, IndexVector, Score
from consumer.engine.normalize import city_canonical, name_tokens
from consumer.engine.records import Record

__all__ = ["SemanticEncoder"]

NAME_WEIGHT, CITY_WEIGHT = 0.75, 0.25


class SemanticEncoder:
    #: Stage name "encode_text" (metrics and benchmarks know it by that name).
    name = "text"

    def __init__(self, text_encoder: Any, cache_size: int = 200_000):
        self.text = text_encoder
        self.dim: int = text_encoder.dim
        self._cache: dict[str, np.ndarray] = {}
        self._cache_size = cache_size
        self.calls = 0  # strings sent to the transformer (for benchmarks)

    @classmethod
    def from_settings(cls, settings: Settings, artifacts: Mapping[str, Any]) -> SemanticEncoder:
        return cls(artifacts["text_encoder"])

    @property
    def contribution(self) -> Contribution:
        return Contribution(
            roles=("name", "city"), columns=("text",), features=(Feature("text_cos"),),
            # Rescaled cosine: a part of the "text" score, not reported on its own.
            scores=(Score("semantic", report=False, part_of="text"),),
            index=(IndexVector("text", self.dim, 0.5),))

    def _fill(self, strings: set[str]) -> None:
        missing = sorted(s for s in strings if s not in self._cache)
        if not missing:
            return
        if len(self._cache) + len(missing) > self._cache_size:
            # Drop the oldest half (dicts keep insertion order): bounded memory, still deterministic.
            for key in list(self._cache)[: len(self._cache) // 2]:
                del self._cache[key]
        vecs = self.text.encode(missing).astype(np.float16)
        self._cache.update(zip(missing, vecs))
        self.calls += len(missing)

    def encode(self, records: Sequence[Record]) -> Columns:
        tokens = [name_tokens(r.name) for r in records]
        cities = [city_canonical(r.city) for r in records]
        self._fill({t for ts in tokens for t in ts} | {c for c in cities if c})
        out = np.zeros((len(records), self.dim), np.float32)
        for i, (ts, city) in enumerate(zip(tokens, cities)):
            if ts:
                mean = np.mean([self._cache[t] for t in ts], axis=0, dtype=np.float32)
                out[i] = NAME_WEIGHT * mean / max(float(np.linalg.norm(mean)), 1e-9)
            if city:
                out[i] += CITY_WEIGHT * self._cache[city].astype(np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return {"text": out / np.where(norms > 0, norms, 1.0)}

    def compare(self, a: Columns, b: Columns) -> dict[str, np.ndarray]:
        cos = np.einsum("ij,ij->i", a["text"], b["text"]).astype(np.float32)
        return {"text_cos": np.clip(cos, -1.0, 1.0)}

    def scores(self, feats: Mapping[str, np.ndarray], coef: Mapping[str, float]) -> dict[str, np.ndarray]:
        return {"semantic": np.clip((feats["text_cos"] - coef["semantic.floor"]) / coef["semantic.span"],
                                    0.0, 1.0)}
