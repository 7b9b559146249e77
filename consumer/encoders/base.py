"""The one interface every modality encoder implements.

An encoder turns records into *columns* (numpy arrays whose first axis is the record), and compares
pair-aligned columns: row i of `a` with row i of `b`, for a whole micro-batch of pairs in one call.
Columns hold vectors and keyed hashes only, never raw values: they are what the state store persists and
what the index is rebuilt from, so the privacy rule (no names or cities at rest) holds by construction.

Comparing a micro-batch of pairs at once (not one record at a time) is what makes the Python overhead
disappear: every comparison is a handful of numpy operations over thousands of pairs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

import numpy as np

from consumer.engine.records import Record

__all__ = ["Columns", "Encoder", "KeyedHasher", "Contribution", "Feature", "IndexVector", "Rarity", "Score",
           "Support", "SupportRules", "normed_counts", "text_batch"]

Columns = dict[str, np.ndarray]


@dataclass(frozen=True)
class Feature:
    """One comparison feature an encoder's `compare` returns (a column of the fusion input).

    `monotone`: +1 when more similarity can only mean "more likely the same entity" (the learned model is
    constrained that way), 0 when the feature is evidence *strength*, not similarity (no direction).

    `levels`: cut points (descending) that make the feature a Fellegi-Sunter *comparison* for fitting
    without labels (`consumer/learn/fellegi_sunter.py`): level i holds values >= levels[i], the last level the
    rest, NaN is the null level (no evidence either way). Features without levels are not used by it, so
    an encoder declares levels only on features that are not near-copies of another comparison (the
    model assumes comparisons independent given match status). `tf`: the rarity feature
    (`Contribution.rarity`) whose value frequency adjusts the exact level's weight (a rare surname agreeing
    says more than "smith").

    `conflict`: a value at or below it is hard evidence that the two are different things whatever the
    score says (every attribute both listings state differs, two different model codes): the clustering's
    partner re-check never keeps two groups together across such a pair (`consumer.engine.clustering`).
    None: the feature never says so. `decisive`: its conflict also keeps a record out of a cluster it
    scored a match with (a member it conflicts with): another colour, edition or pack count is another
    product whatever the rest of the pair scores, and a score fitted to the file may not even read it (a
    comparison filled on too few pairs is left out of the fit). Not for codes or attributes in general,
    which shops write differently for one product (Abt-Buy: 190 true pairs conflict on them; vetoing their
    joins cost 0.062 F1)."""

    name: str
    monotone: int = 1
    levels: tuple[float, ...] = ()
    tf: str | None = None
    conflict: float | None = None
    decisive: bool = False
    #: The rarer-value rarity (`Rarity.rarer`) that adjusts the second level's weight (one edit apart):
    #: two common names one edit apart are two names, a name and its typo one (`consumer.learn.fellegi_sunter`).
    tf_near: str | None = None
    #: Parts of one thing that agree together among non-matches though they fail apart among matches (the
    #: parts of an address, shared by a household): features naming the same group have their summed
    #: Fellegi-Sunter weight capped where all agree, at what the file says that is worth (`consumer.learn.joint`).
    joint: str | None = None


@dataclass(frozen=True)
class IndexVector:
    """A dense, L2-normalised column the encoder adds to the composite HNSW vector, with its weight
    (the inner product of composites is the weighted sum of per-column cosines)."""

    column: str
    size: int
    weight: float


@dataclass(frozen=True)
class Rarity:
    """A term-frequency feature: `keys(cols)` gives each record's hashed value(s) (uint, 0 = absent;
    [n] or [n, t], a 2-D row's rarity is the mean over its non-zero keys). The streaming frequency
    table counts them and gives each pair the inverse frequency of its first record's value(s)."""

    feature: str
    keys: Callable[[Columns], np.ndarray]
    #: (comparison feature, threshold): the rarity counts only for pairs whose values agree (that feature
    #: >= threshold), as Fellegi-Sunter term-frequency adjustments do; elsewhere it is -1. Why: how often
    #: *my* city occurs says nothing about a pair whose cities differ. Off for the shipped model (trained
    #: without it); a retrained model may turn it on per rarity (issue 11).
    when_agree: tuple[str, float] | None = None
    #: A *pairwise* rarity: instead of the first record's commonness, the feature is the overlap of the
    #: two records' key sets weighted by how rare each key is in the population (IDF-weighted,
    #: in [0, 1]; NaN where a side has no key). Why: agreeing on "sony" says little, agreeing on
    #: "pslx350h" says nearly everything, and only the population counts know which is which.
    pairwise: bool = False
    #: Fellegi-Sunter levels for a pairwise rarity (it is then a comparison, as `Feature.levels`).
    levels: tuple[float, ...] = ()
    #: Instead of the first record's commonness: log of how many records so far hold the *rarer* of the
    #: pair's two values (itself included; one key per record; NaN where a side has none), not
    #: extrapolated. Why: a typo makes a value held once, so two names one edit apart of which one is held
    #: once are most likely one name mistyped, while two names one edit apart that many records hold
    #: (Schmitt / Schmidt, Andrea / Andreas) are two names (`Feature.tf_near`). A count, not a share: a
    #: typo is held once at 1,000 records as at 1,000,000, and early in a stream nothing looks common.
    rarer: bool = False
    #: A pairwise rarity that applies only to the pairs `only_if` (a mask over aligned pairs) holds for;
    #: the other pairs take the value of the pairwise rarity named `otherwise`. Why: a title's overlap
    #: without the brand's words (`core_idf`) counts an agreeing brand once, where the brand comparison
    #: reads the agreement; where the brands differ or a side states none, the titles' brand words stay
    #: evidence. `read_by`: the comparison that reads what this rarity leaves out; a fit without it (a
    #: brand column filled on too few candidate pairs) reads `otherwise` instead.
    only_if: Callable[[Columns, Columns], np.ndarray] | None = None
    otherwise: str | None = None
    read_by: str | None = None


@dataclass(frozen=True)
class Support:
    """Evidence of one thing that no model trained or fitted elsewhere may outvote: when every feature of
    `at_least` is at or above its value, the pair's fused score is at least `floor` (a match at every
    shipped operating point). The mirror of `Feature.conflict`. Why: a model fitted to a file learns from
    the pairs it can find, and where shops rewrite titles past recognition (other languages, orders, tag
    lines) it learns "near-identical titles" and scores the rest near zero, while two listings that share a
    model code and agree on every attribute both state, a variant among them, name one product. The floor is
    raised to the fuser's match threshold where that is higher (rule fusion: 0.75)."""

    name: str
    at_least: tuple[tuple[str, float], ...]
    floor: float = 0.5


class SupportRules:
    """The encoders' `Support` rules whose features a comparator has, applied to fused scores; each floor
    at least `match` (the fuser's match threshold), so a supported pair is a match."""

    def __init__(self, encoders: Sequence[Encoder], features: Sequence[str], match: float = 0.0):
        names = list(features)
        self._rules = [(np.array([names.index(f) for f, _ in sp.at_least]),
                        np.array([v for _, v in sp.at_least], np.float32), np.float32(max(sp.floor, match)))
                       for enc in encoders for sp in enc.contribution.support
                       if all(f in names for f, _ in sp.at_least)]

    def _each(self, feats: np.ndarray) -> Iterator[tuple[np.ndarray, np.float32]]:
        """(pairs the rule holds for, its floor) per rule."""
        for cols, values, floor in self._rules:
            with np.errstate(invalid="ignore"):  # NaN (a side lacks it) is no support
                held = (feats[:, cols] >= values).all(axis=1)
            yield held, floor

    def held(self, feats: np.ndarray) -> np.ndarray:
        """Per pair (row of `feats`): whether any rule holds."""
        out = np.zeros(len(feats), bool)
        for held, _ in self._each(feats):
            out |= held
        return out

    def apply(self, feats: np.ndarray, fused: np.ndarray) -> np.ndarray:
        """`fused` raised to each rule's floor on the pairs (rows of `feats`) that meet it."""
        for held, floor in self._each(feats):
            fused = np.where(held, np.maximum(fused, floor), fused).astype(np.float32)
        return fused


@dataclass(frozen=True)
class Score:
    """A per-modality score in [0, 1] (NaN = absent) an encoder derives from its features.

    `report`: shown in decisions and events (`scores`). `part_of`: the composite it feeds (e.g. "text",
    weighted by `fusion.parts[name]`), else it is a top-level rule modality weighted by
    `fusion.weights[name]`. Its formula's coefficients are `fusion.coefficients["<name>.<coef>"]`."""

    name: str
    report: bool = True
    part_of: str | None = None


@dataclass(frozen=True)
class Contribution:
    """Everything an encoder adds to the engine; comparison, blocking, frequencies, fusion, training,
    metrics and the event schema are all derived from the encoders' contributions, so a new modality is
    one module (see docs/extending.md)."""

    #: Input roles read from `Record.role()` (e.g. "name", "city", "login_times", "postcode").
    roles: tuple[str, ...]
    #: Columns `encode` returns (persisted per record; the privacy rule applies: no raw values).
    columns: tuple[str, ...]
    #: Features `compare` returns, in order.
    features: tuple[Feature, ...] = ()
    #: Per-modality scores `scores` returns, in order.
    scores: tuple[Score, ...] = ()
    #: Dense columns for the composite candidate-index vector.
    index: tuple[IndexVector, ...] = ()
    #: Columns used only by the index: never gathered for comparing pairs.
    index_only: tuple[str, ...] = ()
    #: Exact blocking keys (`consumer.engine.keys`): each a tuple of this encoder's keyed-hash columns
    #: (uint, 0 = missing); earlier records sharing every part of one become candidates beside the index.
    keys: tuple[tuple[str, ...], ...] = ()
    #: Term-frequency (rarity) features.
    rarity: tuple[Rarity, ...] = ()
    #: Conjunctions of features that make a pair a match whatever the model says (`Support`).
    support: tuple[Support, ...] = ()
    #: Default score-formula coefficients ("<score>.<coef>" -> value), overridable in `fusion.coefficients`.
    coefficients: Mapping[str, float] = field(default_factory=dict)
    #: Stage name for timers and metrics (default "encode_<encoder name>").
    stage: str = ""


class Encoder(Protocol):
    """A modality: records -> columns; (query columns, candidate columns) -> named similarities."""

    name: str

    @property
    def contribution(self) -> Contribution:
        """What this encoder adds (features, scores, index vectors, rarity, stage name)."""
        ...

    def encode(self, records: Sequence[Record]) -> Columns:
        """Columns for `records`, first axis aligned with the input order."""
        ...

    def compare(self, a: Columns, b: Columns) -> dict[str, np.ndarray]:
        """Similarities of pair-aligned rows (a[i] vs b[i]); float32 [P], NaN where a side lacks the
        modality."""
        ...

    def scores(self, feats: Mapping[str, np.ndarray], coef: Mapping[str, float]) -> dict[str, np.ndarray]:
        """Per-modality scores (`contribution.scores`) from pair features (every encoder's, by name) and
        the resolved coefficients."""
        ...


def nanmean_weighted(parts: list[tuple[np.ndarray, float]]) -> np.ndarray:
    """Weighted mean over the parts that are present (not NaN); NaN when none is."""
    num = np.zeros(parts[0][0].shape, np.float64)
    den = np.zeros(parts[0][0].shape, np.float64)
    for values, weight in parts:
        present = ~np.isnan(values)
        num += np.where(present, values * weight, 0.0)
        den += np.where(present, weight, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


class KeyedHasher:
    """32-bit keyed hashes (BLAKE2b with a deployment key) of name/city fragments.

    Keyed, so a stored signature cannot be reversed with a dictionary of common names without the key;
    never 0, so 0 can mean "padding" in fixed-width columns.
    """

    def __init__(self, key: str):
        self._key = hashlib.blake2b(key.encode("utf-8"), digest_size=32).digest()
        # The keyed state before any data: each hash copies it (the same digest as a keyed one-shot hash,
        # ~30% cheaper than setting the key up again; tests/test_encoder_parts.py).
        self._keyed = hashlib.blake2b(digest_size=4, key=self._key)
        # Fragments (trigrams, tokens) repeat endlessly across records: cache their hashes. `get` is the
        # cache itself: an encoder's loop over a record's grams calls it directly, without the Python frame
        # of `__call__` (2.3M calls per 50,000 person names, the frame about half of each call).
        self.get = lru_cache(maxsize=1 << 19)(self._hash)
        #: The same hash, not cached: for strings of one value only (its single-deletion variants), whose
        #: results the caller caches with the value. They were 63% of the cache's entries after 100,000
        #: CRM records (135k of 214k, ~19 MB) and were never asked for again.
        self.once = self._hash

    def __call__(self, text: str) -> int:
        return self.get(text)

    def _hash(self, text: str) -> int:
        state = self._keyed.copy()
        state.update(text.encode("utf-8"))
        return int.from_bytes(state.digest(), "little") or 1


def normed_counts(n: int, owner: np.ndarray, slots: np.ndarray, dim: int) -> np.ndarray:
    """[n, dim] L2-normed counts of hashed slots per row (`slots[i]` counted for row `owner[i]`; zeros for a
    row with none): the character-gram vectors of names and addresses, built for a whole batch at once. The
    counts are small integers, so every norm is exact whatever the summation order: the same values as
    normalising row by row."""
    v = np.bincount(owner * dim + slots, minlength=n * dim).reshape(n, dim).astype(np.float32)
    norm = np.sqrt((v * v).sum(axis=1))
    return np.divide(v, norm[:, None], out=v, where=norm[:, None] > 0)


def text_batch(texts: Sequence[str], batch_size: int) -> list[str]:
    """The argument checks every text encoder (transformer or static) applies, so both fail alike: a
    single string passed where a sequence is meant would otherwise be embedded character by character."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(texts, str):
        raise TypeError("encode() takes a sequence of strings, not a single string")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__}, expected str")
    return texts
