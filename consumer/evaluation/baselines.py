"""The two reference methods `dedup eval` compares against, implemented as the CRM paper describes them.

- `string_baseline`: SequenceMatcher ratio of "name city" >= 0.85 over all pairs (paper, section X.A).
  All pairs of 10k records is 50M SequenceMatcher calls (hours), so a rapidfuzz Indel-ratio prefilter runs
  first. It is exact, not an approximation: the Indel ratio is 2*LCS/(|a|+|b|) and SequenceMatcher's
  matched characters never exceed the LCS, so a pair below 0.85 on Indel is below 0.85 on SequenceMatcher.
- `paper_multimodal`: the paper's pipeline (section IX.B): transformer text vectors reduced by PCA,
  behaviour vectors from login hour-of-day/day-of-week/frequency, one-hot device vectors, and
  `0.4*t + 0.35*b + 0.25*d > 0.75` on cosine similarities over all pairs. We use our MiniLM export in
  place of DistilBERT (no other weights are available offline); everything else follows the paper,
  including its mistakes (raw strings, no typo or nickname handling, weights fixed by hand).
"""

from __future__ import annotations

from collections.abc import Sequence
from difflib import SequenceMatcher

import numpy as np

from consumer.engine.records import Record

__all__ = ["string_baseline", "paper_multimodal"]


def string_baseline(records: Sequence[Record], threshold: float = 0.85, workers: int = 2) -> np.ndarray:
    """Predicted duplicate pairs as an [n, 2] array of record positions (i < j)."""
    from rapidfuzz import process
    from rapidfuzz.distance import Indel

    texts = [f"{r.name} {r.city}" for r in records]
    out: list[tuple[int, int]] = []
    block = 2000
    for start in range(0, len(texts), block):
        chunk = texts[start: start + block]
        sims = process.cdist(chunk, texts, scorer=Indel.normalized_similarity, score_cutoff=threshold,
                             dtype=np.float32, workers=workers)
        for i, j in zip(*np.nonzero(sims)):
            a, b = start + int(i), int(j)
            if b <= a:
                continue
            if SequenceMatcher(None, texts[a], texts[b]).ratio() >= threshold:
                out.append((a, b))
    return np.array(out, np.int64).reshape(-1, 2)


def _l2(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def paper_vectors(records: Sequence[Record], text_encoder: object, pca_dim: int = 64
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import OneHotEncoder

    text = text_encoder.encode([f"{r.name} {r.city}" for r in records])  # type: ignore[attr-defined]
    dim = min(pca_dim, text.shape[1], len(records))
    text = _l2(PCA(n_components=dim, random_state=0).fit_transform(text))
    beh = np.zeros((len(records), 24 + 7 + 1), np.float32)
    for i, r in enumerate(records):
        for t in r.login_times:
            beh[i, t.hour] += 1
            beh[i, 24 + t.weekday()] += 1
        beh[i, 31] = len(r.login_times)
    beh = _l2(beh)
    dev = OneHotEncoder(handle_unknown="ignore").fit_transform(
        [[r.browser, r.os] for r in records]).toarray().astype(np.float32)
    return text, beh, _l2(dev)


def paper_multimodal(records: Sequence[Record], text_encoder: object, threshold: float = 0.75
                     ) -> np.ndarray:
    """Predicted pairs ([n, 2] positions, i < j). Kept as arrays: the paper's rule flags millions of pairs
    at 10k records, too many for a Python set."""
    text, beh, dev = paper_vectors(records, text_encoder)
    out: list[np.ndarray] = []
    block = 1000
    for start in range(0, len(records), block):
        stop = min(start + block, len(records))
        total = 0.4 * (text[start:stop] @ text.T) + 0.35 * (beh[start:stop] @ beh.T) \
            + 0.25 * (dev[start:stop] @ dev.T)
        i, j = np.nonzero(total > threshold)
        i = i + start
        keep = j > i
        out.append(np.stack([i[keep], j[keep]], axis=1))
    return np.concatenate(out).astype(np.int64) if out else np.zeros((0, 2), np.int64)
