"""Term-frequency evidence: agreeing on a rare value says more than agreeing on a common one.

Two "John Smith"s in New York on Chrome/Windows are weak evidence of one person; two "Ferrándiz
Vallejo"s in Huesca on Brave/Linux are strong. Fellegi-Sunter record linkage (and Splink) adjust match
weights by how often a value occurs; we do the same, streaming: counts of hashed name tokens, canonical
cities and device combinations seen so far give each pair a frequency feature. The model learns how much
a match on a rare value is worth.

The feature is log(1 + the estimated *number of other records sharing the value*), not an inverse
frequency log(N / count) (issue 11): the chance that an agreeing namesake is somebody else grows with
how many others carry the name, and that count means the same at 10k and at 10M records, while N / count
drifts with the size of the index (a model trained at 10k then reads every value as rarer at 100k and
over-trusts name agreement: final-cluster F1 0.88 instead of 0.90 on the held-out 100k file). Below
`MIN_RECORDS` (the smallest file the model is trained on) the count is extrapolated to an index of that
size, count x MIN_RECORDS / N: in a 200-row file every value is "unique", and read as such the model
took two Andersons on the same device for one person (the seed CRM file). Counts are kept incrementally;
a count-min sketch could replace the exact counters when distinct values outgrow memory.

Counts are keyed by the same keyed hashes the signatures hold, so this table is as private as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from consumer.encoders.base import Columns, Rarity
from consumer.engine.keycounts import KeyCounts

__all__ = ["FrequencyTable", "MIN_RECORDS"]

#: The smallest training file of the shipped model (export/train_fusion.py): smaller indexes extrapolate.
MIN_RECORDS = 10_000


def _counts(counter: Mapping[int, int], keys: np.ndarray) -> np.ndarray:
    """The counter's count of every key, as float64 of the keys' shape, for counts that are not the table's
    own (`consumer.api.scoring` reads a population plus a pair through `.get`). Each distinct key is looked
    up once: a query's keys repeat on every one of its candidate rows and most slots are padding (0)."""
    uniq, inverse = np.unique(keys, return_inverse=True)
    found = np.fromiter((counter.get(k, 0) for k in uniq.tolist()), np.float64, len(uniq))
    return found[inverse].reshape(keys.shape)


class FrequencyTable:
    """One counter per declared rarity feature (`Contribution.rarity` of the pipeline's encoders)."""

    def __init__(self, rarities: Sequence[Rarity]) -> None:
        self.records = 0
        self._rarities = list(rarities)
        #: Vectorised hash tables (a dict lookup per key was most of a listing run's time). A reader may put
        #: other counts here (`consumer.api.scoring`: a population plus a pair, read through `.get`).
        self.counts: dict[str, Mapping[int, int]] = {r.feature: KeyCounts() for r in self._rarities}

    @property
    def rarities(self) -> list[Rarity]:
        """The rarity features this table counts (for a table over the same features)."""
        return list(self._rarities)

    def observe(self, cols: Columns) -> None:
        """Count a batch of encoded records (before their pairs are scored, so a batch sees itself)."""
        self.records += len(next(iter(cols.values()))) if cols else 0
        for r in self._rarities:
            self._own(r.feature).add(r.keys(cols))

    def forget(self, cols: Columns) -> None:
        """Un-count erased records (GDPR erasure): their values must stop weighing on anyone's score."""
        self.records = max(0, self.records - (len(next(iter(cols.values()))) if cols else 0))
        for r in self._rarities:
            self._own(r.feature).subtract(r.keys(cols))

    def _own(self, feature: str) -> KeyCounts:
        """The feature's own counts, to change (a table whose counts a reader replaced is read only)."""
        counts = self.counts[feature]
        if not isinstance(counts, KeyCounts):
            raise TypeError(f"the counts of {feature!r} are a read-only view")
        return counts

    def _count(self, feature: str, keys: np.ndarray) -> np.ndarray:
        """The population count of every key (float64, the keys' shape): vectorised from the table's own
        counts, else one `.get` per distinct key of whatever counts a reader put there."""
        counts = self.counts[feature]
        if isinstance(counts, KeyCounts):
            return counts.lookup(keys).astype(np.float64)
        return _counts(counts, keys)

    def _idf(self, feature: str, keys: np.ndarray) -> np.ndarray:
        """log(1 + estimated number of *other* records with the key; the record itself is already counted,
        `observe` runs before the batch's pairs are scored), extrapolated below MIN_RECORDS records."""
        counts = self._count(feature, keys)
        scale = max(1.0, MIN_RECORDS / max(self.records, 1))
        return np.log1p(np.maximum(counts * scale - 1.0, 0.0)).astype(np.float32)

    def _weights(self, feature: str, keys: np.ndarray) -> np.ndarray:
        """Inverse document frequency of each key, log((N + 1) / (count + 1)) with N at least MIN_RECORDS
        (a small population reads every key as rare, as `_idf` extrapolates); 0 for padding."""
        counts = self._count(feature, keys)
        n = max(self.records, MIN_RECORDS)
        scale = n / max(self.records, 1)
        w = np.log((n + 1.0) / (counts * scale + 1.0))
        return np.where(keys != 0, np.maximum(w, 0.0), 0.0)

    @property
    def pairwise(self) -> list[Rarity]:
        """The pairwise rarities (overlaps weighted by rarity), computed per pair by `pair_features`."""
        return [r for r in self._rarities if r.pairwise]

    def _rarer(self, a: Columns, b: Columns) -> dict[str, np.ndarray]:
        """The rarer-value rarities (`Rarity.rarer`) of aligned pairs: log of the count of the less common
        of the two values (at least 1: a value being scored was counted); NaN where a side has no value."""
        out: dict[str, np.ndarray] = {}
        for r in self._rarities:
            if not r.rarer:
                continue
            ka, kb = r.keys(a), r.keys(b)
            counts = self._count(r.feature, np.concatenate([ka, kb]))
            rarer = np.maximum(np.minimum(counts[:len(ka)], counts[len(ka):]), 1.0)
            out[r.feature] = np.where((ka != 0) & (kb != 0), np.log(rarer), np.nan).astype(np.float32)
        return out

    def _norms(self, feature: str, ka: np.ndarray, kb: np.ndarray,
               records: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
        """Each pair's sums of its two sides' squared key weights. With `records` (each distinct record's
        index, and each pair side's position among them), a record's weights are looked up and summed once:
        a query's keys repeat on every one of its ~32 candidate pairs and a popular candidate on many
        queries' (4,300 distinct records for 16,400 pair sides a batch on the CD file). The same values either
        way: a key's weight depends on the key alone, and a record's sum is the same reduction of the same row."""
        if records is None:
            w2 = self._weights(feature, np.concatenate([ka, kb], axis=1)) ** 2  # one lookup of both sides' keys
            return w2[:, :ka.shape[1]].sum(axis=1), w2[:, ka.shape[1]:].sum(axis=1)
        first, inverse = records
        n2 = (self._weights(feature, np.concatenate([ka, kb])[first]) ** 2).sum(axis=1)[inverse]
        return n2[:len(ka)], n2[len(ka):]

    def pair_features(self, a: Columns, b: Columns,
                      rows: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Pairwise rarities of aligned pairs (a[i], b[i]) (and the rarer-value ones, `Rarity.rarer`): the
        IDF-weighted overlap of their key sets, in [0, 1]: the shared keys' squared weights over the
        geometric mean of the smaller set's and the cosine's norms. `rows`: the store rows `a` and `b` were
        gathered from (equal rows, equal keys), to look each record's keys up once; the result is the same
        without."""
        out = self._rarer(a, b)
        records = None
        if rows is not None and self.pairwise:
            _, first, inverse = np.unique(np.concatenate(rows), return_index=True, return_inverse=True)
            records = first, inverse.ravel()
        for r in self.pairwise:
            ka, kb = r.keys(a), r.keys(b)
            keys = np.concatenate([ka, kb], axis=1)
            na2, nb2 = self._norms(r.feature, ka, kb, records)
            # Between the cosine and containment (shared / the smaller set): a seller that prefixes the
            # maker or appends "(pc)" adds words the other title lacks, which a cosine punishes and a pure
            # containment ignores (a one-word title would then be "contained" in half the file).
            den = np.sqrt(np.minimum(na2, nb2) * np.sqrt(na2 * nb2))
            # cosine of IDF vectors: shared keys weigh w^2 (the same key has the same weight on both sides).
            # A record's keys are distinct, so a key the pair shares is one equal neighbour once the pair's
            # keys are sorted: O(K log K) a pair instead of comparing every key with every key (K^2, with the
            # 32 description keys beside the 24 title keys).
            ordered = np.sort(keys, axis=1)
            shared = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] != 0)
            at = np.nonzero(shared)[0]
            num = np.bincount(at, weights=self._weights(r.feature, ordered[:, 1:][shared]) ** 2,
                              minlength=len(keys)) if len(at) else np.zeros(len(keys))
            with np.errstate(invalid="ignore", divide="ignore"):
                out[r.feature] = np.where(den > 0, np.minimum(num / den, 1.0), np.nan).astype(np.float32)
        for r in self.pairwise:
            if r.only_if is not None and r.otherwise in out:
                out[r.feature] = np.where(np.asarray(r.only_if(a, b), bool), out[r.feature], out[r.otherwise])
        return out

    def pair_rarity(self, a: Columns, b: Columns,
                    rows: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Every rarity feature of aligned pairs (a[i], b[i]): the first record's commonness and the
        pairwise overlaps. For callers that score arbitrary pairs (not one query against candidates).
        `rows`: as for `pair_features`."""
        return {**self.features(a, a), **self.pair_features(a, b, rows)}

    def features(self, a: Columns, b: Columns) -> dict[str, np.ndarray]:
        """Commonness of the values the pair's first record carries (for several keys per record, e.g. name
        tokens, the mean over its non-zero keys); NaN where absent. Pairwise rarities are not here: they
        need both records (`pair_features`), nor the rarer-value ones (`Rarity.rarer`)."""
        out: dict[str, np.ndarray] = {}
        for r in self._rarities:
            if r.pairwise or r.rarer:
                continue
            keys = r.keys(a)
            if keys.ndim == 1:
                out[r.feature] = np.where(keys != 0, self._idf(r.feature, keys), np.nan).astype(np.float32)
                continue
            valid = keys != 0
            idf = np.where(valid, self._idf(r.feature, keys), 0.0)
            n = valid.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[r.feature] = np.where(n > 0, idf.sum(axis=1) / n, np.nan).astype(np.float32)
        return out
