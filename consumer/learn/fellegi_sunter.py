"""Fellegi-Sunter match weights fitted without labels (expectation maximisation, as Splink does).

Why: a new user arrives with their own person file and no labels, and a model trained on someone else's
data (the shipped CRM model) neither fits their columns nor their error rates. The Fellegi-Sunter model
needs no labels: each comparison (given name, surname, street, postcode, ...) is cut into levels (exact,
one typo, related, different, null), and two probabilities per level are estimated from the file itself:

- u = P(level | two different people), from random record pairs (almost all are non-matches), and kept
  fixed;
- m = P(level | the same person) and lambda, the probability that two records drawn at random from the
  file are the same person, by EM over the candidate pairs the blocking produces (the only pairs where
  matches are common enough to learn from; the pairs it never proposes are non-matches for the fit).

Why u stays at its random-pair value and lambda is over *all* pairs (Splink's model), not over the
candidate pairs: candidate non-matches were chosen for agreeing on something (the name index proposes
namesakes), so among them the comparisons are far from independent (two candidates share a given name
or a surname, rarely both). EM with u re-estimated there explains that pattern instead of the matches:
on RLdata10000 (given name, surname, date of birth) its "match" class became "same given name, other
surname" (lambda 0.37 of the candidate pairs, a 427-record cluster, pairwise F1 0.003). Over all pairs
the comparisons are close to independent among non-matches, which is what the model assumes.

A pair's match weight is log2(lambda / (1 - lambda)) plus, per comparison, log2(m / u) of its level (0
for a null level: a missing value is no evidence); its probability is the logistic of that. Agreeing on a
rare value says more than on a common one: for comparisons with a term-frequency feature the exact level's
u is replaced by the value's share of the records (Splink's term-frequency adjustment). One edit apart, the
rarer of the two values tells a typo (held once) from two names (Schmitt / Schmidt, each held by dozens):
`consumer.learn.fs_fit.fit_near_count`.

The fit is checked before it is used (`consumer/learn/fs_fit.py`: a plausible number of matches, agreement is
evidence for a match), re-seeded from a deterministic rule when it fails, and replaced by stated default
weights when that fails too; `info["fit"]` says which.

Pure: arrays in, arrays out; the adapter that runs the engine for candidate and random pairs is
`consumer/learn/unsupervised.py`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from consumer.engine.frequencies import MIN_RECORDS as FREQ_SCALE

__all__ = ["Comparison", "FellegiSunterModel", "Population", "levels_of", "estimate_u", "default_m",
           "pattern_counts", "match_mass", "log_bf", "run_em", "fit_reciprocal", "reciprocal_best", "all_agree",
           "joint_excess"]

#: Smoothing of level counts (pseudo-pairs per level), so an unseen level never has probability 0.
SMOOTH = 0.5
#: Term-frequency adjustments are bounded (bits): a value seen once at the start of a stream is not proof.
TF_CLIP = 4.0
#: Bounds of lambda (the probability that two random records match) during EM: never exactly 0 or 1.
LAMBDA_RANGE = (1e-12, 0.5)
#: Share of candidate pairs a comparison must be filled on to take part in a reciprocal fit.
MIN_PRESENT = 0.5
#: How far a reciprocal fit shrinks m toward u (toward "no evidence"): the training pairs are a pseudo-labelled
#: sample, and the most alike pairs of the file (each other's best), so a true pair whose titles were
#: rewritten or whose shops price apart is missing from them by selection, not because such pairs are not
#: matches (Amazon-Google: a price level 0.6-0.9 weighed -4.3 bits, like prices nothing alike). A level that
#: is a declared conflict (`Feature.conflict`: a code or variant clash) is what the encoder calls two
#: products; it keeps the light shrink, so a conflict stays a strong no. Chosen by leaving one file out over
#: 0.05 / 0.2 / 0.25 / 0.3 / 0.4 (docs/benchmarks.md, tenth round).
SIMILARITY_SHRINK, CONFLICT_SHRINK = 0.3, 0.05


@dataclass(frozen=True)
class Comparison:
    """A feature used as a comparison: `levels` are descending cut points (level i: value >= levels[i];
    the last level: below all; NaN: null), `tf` the rarity feature adjusting the exact level, if any,
    `tf_near` the rarer-value count adjusting the second level (`FellegiSunterModel.near_count`)."""

    feature: str
    levels: tuple[float, ...]
    tf: str | None = None
    tf_near: str | None = None

    @property
    def n_levels(self) -> int:
        return len(self.levels) + 1

    def labels(self) -> list[str]:
        return [f">= {c:g}" if c < 1 else "exact" for c in self.levels] + ["else"]


class Population(Protocol):
    """What the term-frequency adjustment reads at prediction time: how many records the rarity counts
    were taken over (a pipeline's `FrequencyTable`)."""

    records: int


def levels_of(values: np.ndarray, comp: Comparison) -> np.ndarray:
    """Level index per pair (0 = best), -1 where the value is NaN (null level)."""
    out = np.full(len(values), len(comp.levels), np.int8)
    for i in reversed(range(len(comp.levels))):
        out[values >= comp.levels[i] - 1e-6] = i
    out[np.isnan(values)] = -1
    return out


def gamma(x: np.ndarray, comps: Sequence[Comparison]) -> np.ndarray:
    """Level indices [P, K] of pairs' comparison values [P, K] (in comparison order)."""
    return np.stack([levels_of(x[:, k], c) for k, c in enumerate(comps)], axis=1) if len(x) else \
        np.zeros((0, len(comps)), np.int8)


def level_probs(g: np.ndarray, weights: np.ndarray, n_levels: int) -> np.ndarray:
    """Weighted level distribution of one comparison's level column (nulls left out), smoothed."""
    present = g >= 0
    counts = np.bincount(g[present], weights=weights[present], minlength=n_levels)[:n_levels] + SMOOTH
    return counts / counts.sum()


def estimate_u(random_x: np.ndarray, comps: Sequence[Comparison]) -> list[np.ndarray]:
    """u per comparison level from random record pairs ([R, K] features in comparison order)."""
    g = gamma(random_x, comps)
    ones = np.ones(len(g))
    return [level_probs(g[:, k], ones, c.n_levels) for k, c in enumerate(comps)]


def default_m(n_levels: int) -> np.ndarray:
    """The stated default m of a comparison with `n_levels` levels: 0.80 for the top level, 0.05 for the
    last ("else"), the rest shared by the levels between (0.95 / 0.05 for two levels). What a match looks
    like in a clerically kept file; the EM's starting point and the weights of the last-resort fallback."""
    if n_levels <= 2:
        return np.array([0.95, 0.05][:n_levels]) / sum([0.95, 0.05][:n_levels])
    middle = [0.15 / (n_levels - 2)] * (n_levels - 2)
    return np.array([0.80, *middle, 0.05])


def pattern_counts(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct level patterns of [P, K] level indices and how many pairs have each: EM over a few
    hundred patterns instead of hundreds of thousands of pairs gives the same fit, far faster."""
    if len(g) == 0:
        return g, np.zeros(0)
    # One integer per pattern (levels + 1 in a mixed radix, null = 0): a 1-D unique is ~10x faster than
    # np.unique(axis=0) on hundreds of thousands of rows.
    radix = int(g.max()) + 2
    if radix ** g.shape[1] >= 2 ** 62:
        patterns, counts = np.unique(g, axis=0, return_counts=True)
        return patterns, counts.astype(np.float64)
    codes = np.zeros(len(g), np.int64)
    for j in range(g.shape[1]):
        codes = codes * radix + (g[:, j].astype(np.int64) + 1)
    uniq, first, counts = np.unique(codes, return_index=True, return_counts=True)
    return g[first], counts.astype(np.float64)


def log_bf(patterns: np.ndarray, m: Sequence[np.ndarray], u: Sequence[np.ndarray],
            cols: Sequence[int] | None = None) -> np.ndarray:
    """Natural-log Bayes factor of each pattern (null levels add 0), over `cols` only when given."""
    out = np.zeros(len(patterns))
    for j in range(patterns.shape[1]) if cols is None else cols:
        lv = patterns[:, j]
        out += np.where(lv >= 0, np.log(m[j] / u[j])[np.maximum(lv, 0)], 0.0)
    return out


def all_agree(g: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """Pairs whose every stated comparison of `idx` is at its exact level (0), two stated at least: the pattern
    a `consumer.learn.joint` group is capped at."""
    lv = g[:, list(idx)]
    return ((lv <= 0).all(axis=1)) & ((lv >= 0).sum(axis=1) >= 2)


def joint_excess(g: np.ndarray, m: Sequence[np.ndarray], u: Sequence[np.ndarray], idx: Sequence[int],
                 cap: float) -> np.ndarray:
    """Bits by which each pair's comparisons `idx` sum above `cap` where every stated one agrees (else 0)."""
    sel = all_agree(g, idx)
    out = np.zeros(len(g))
    if sel.any():
        out[sel] = np.maximum(log_bf(g[sel], m, u, idx) / np.log(2.0) - cap, 0.0)
    return out


def match_mass(patterns: np.ndarray, counts: np.ndarray, m: Sequence[np.ndarray], u: Sequence[np.ndarray],
               lam: float) -> np.ndarray:
    """Expected number of matches per pattern (its count times its posterior match probability)."""
    w = np.log(lam / (1 - lam)) + log_bf(patterns, m, u)
    return counts / (1.0 + np.exp(-np.clip(w, -60, 60)))


def run_em(patterns: np.ndarray, counts: np.ndarray, u: Sequence[np.ndarray], m0: Sequence[np.ndarray],
           lam0: float, pairs_total: float, *, fix_lam: bool = False, max_iter: int = 500,
           tol: float = 1e-6) -> tuple[list[np.ndarray], float, float, int, bool]:
    """EM for m (and lambda, unless `fix_lam`) over candidate-pair patterns with u fixed; lambda is matches
    over *all* `pairs_total` record pairs (pairs the blocking never proposes count as non-matches).
    Returns (m, lambda, claimed: the expected number of matches among the candidate pairs, iterations,
    converged)."""
    m = [np.asarray(x, np.float64) for x in m0]
    lam = float(np.clip(lam0, *LAMBDA_RANGE))
    n_levels = [len(x) for x in u]
    change, iterations, claimed = np.inf, 0, 0.0
    while iterations < max_iter:
        iterations += 1
        p = match_mass(patterns, counts, m, u, lam)
        claimed = float(p.sum())
        new_lam = lam if fix_lam else float(np.clip(claimed / pairs_total, *LAMBDA_RANGE))
        new_m = [level_probs(patterns[:, j], p, n_levels[j]) for j in range(len(u))]
        change = max(abs(np.log(new_lam / lam)), *(float(np.abs(a - b).max()) for a, b in zip(new_m, m)))
        m, lam = new_m, new_lam
        if change < tol:
            break
    return m, lam, claimed, iterations, bool(change < tol)


@dataclass
class FellegiSunterModel:
    """Fitted parameters; `predict_proba` takes features in `inputs` order (comparisons, then tf features),
    so it can stand in for a classifier behind `consumer.engine.fusion.LearnedModel`.

    `lam` is the probability that two random records of the file are the same person (Splink's
    "probability two random records match"), the prior of every pair the blocking proposes."""

    comparisons: tuple[Comparison, ...]
    m: list[np.ndarray]
    u: list[np.ndarray]
    lam: float
    #: The level shares of random pairs, matches included (`u` is their non-matches' share, `fs_fit`): what a
    #: new file's random pairs are compared with (`drift_notes`).
    u_random: list[np.ndarray] = field(default_factory=list)
    #: Share of candidate pairs per level (reported).
    share: list[np.ndarray] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    #: Records of the file the model was fitted to: the scale of the rarity counts when no running
    #: population is bound (a service that loaded the model file).
    records: int = 0
    #: Per comparison with a `tf_near` feature: the typical count of the rarer value among the likely
    #: matches at its second level (one edit apart, `fit_near_count`); a pair there loses the bits by which
    #: its rarer value is more common than that. Empty: no adjustment (a model fitted before it existed).
    near_count: dict[str, float] = field(default_factory=dict)
    #: Parts of one thing that agree together among non-matches (an address): group -> (its comparisons, the
    #: bits their sum is capped at where every stated part agrees), read from the file (`consumer.learn.joint`).
    joint: dict[str, tuple[tuple[str, ...], float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.population: Population | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["population"] = None  # a pipeline's live table is never part of the model file
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("records", 0)  # model files written before the fields existed
        state.setdefault("near_count", {})
        state.setdefault("joint", {})
        state.setdefault("population", None)
        self.__dict__.update(state)

    def bind(self, population: Population | None) -> None:
        """Read the number of records the rarity counts cover from `population` (the running pipeline's
        frequency table) instead of the fitted file's size, so a stream or file larger than the fit does
        not make every value look more common than it is."""
        self.population = population

    @property
    def inputs(self) -> tuple[str, ...]:
        tfs = [c.tf for c in self.comparisons if c.tf]
        near = [c.tf_near for c in self.comparisons if c.tf_near]
        return tuple([c.feature for c in self.comparisons] + tfs + near)

    def near_columns(self) -> list[tuple[int, int]]:
        """(comparison index, column in `inputs` order) of each comparison's `tf_near` feature."""
        first = len(self.comparisons) + sum(1 for c in self.comparisons if c.tf)
        return [(j, first + i) for i, j in enumerate(j for j, c in enumerate(self.comparisons) if c.tf_near)]

    def _scale(self) -> float:
        """Records the rarity counts are taken over: the running count, else the fitted file's, never
        below the frequency table's extrapolation scale (smaller indexes are extrapolated to it)."""
        n = self.population.records if self.population is not None else self.records
        return float(max(n, FREQ_SCALE))

    def match_weight(self, x: np.ndarray) -> np.ndarray:
        """log2 Bayes factor plus prior, per pair."""
        k = len(self.comparisons)
        g = gamma(x[:, :k], self.comparisons)
        w = np.full(len(x), np.log2(self.lam / (1 - self.lam)))
        tf_col = k
        scale = self._scale()
        for j, c in enumerate(self.comparisons):
            bf = np.log2(self.m[j] / self.u[j])
            lv = g[:, j]
            w += np.where(lv >= 0, bf[np.maximum(lv, 0)], 0.0)
            if c.tf:
                # rarity = log1p(estimated number of *other* records with the value, at `scale` records):
                # the value's share of the records is (others + 1) / scale; it replaces the exact level's u.
                rarity = x[:, tf_col].astype(np.float64)
                tf_col += 1
                with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                    share = (np.expm1(rarity) + 1.0) / scale
                    adj = np.clip(np.log2(self.u[j][0] / share), -TF_CLIP, TF_CLIP)
                w += np.where((lv == 0) & (rarity >= 0) & np.isfinite(adj), adj, 0.0)
        for j, col in self.near_columns():
            typical = self.near_count.get(self.comparisons[j].feature)
            if typical:  # log2(typical count / this pair's count of its rarer value), second level only
                near = np.log2(typical) - x[:, col].astype(np.float64) / np.log(2.0)
                w += np.where((g[:, j] == 1) & np.isfinite(near), np.clip(near, -TF_CLIP, TF_CLIP), 0.0)
        names = [c.feature for c in self.comparisons]
        for parts, cap in self.joint.values():
            w -= joint_excess(g, self.m, self.u, [names.index(f) for f in parts], cap)
        return w

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp2(-np.clip(self.match_weight(x), -60, 60)))
        return np.stack([1 - p, p], axis=1)

    def explain(self) -> list[dict[str, Any]]:
        """One row per comparison level: m, u, match weight (log2 m/u), share of candidate pairs."""
        rows = [{"comparison": "(prior)", "level": "lambda", "m": None, "u": None,
                 "weight": round(float(np.log2(self.lam / (1 - self.lam))), 3), "share": None}]
        for j, c in enumerate(self.comparisons):
            for i, label in enumerate(c.labels()):
                rows.append({"comparison": c.feature + (" (tf)" if c.tf and i == 0 else ""), "level": label,
                             "m": round(float(self.m[j][i]), 5), "u": round(float(self.u[j][i]), 5),
                             "weight": round(float(np.log2(self.m[j][i] / self.u[j][i])), 3),
                             "share": round(float(self.share[j][i]), 4) if self.share else None})
        return rows


def reciprocal_best(weight: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Mask of pairs that are each side's best-scoring pair (ties: the first such pair): a record's best pair
    is where it first appears among the pairs' records taken best first (a stable sort)."""
    order = np.argsort(-np.asarray(weight), kind="stable")
    pairs = np.stack([np.asarray(left, np.int64), np.asarray(right, np.int64)], axis=1)
    pairs = pairs - pairs.min(initial=0)  # record numbers from 0: a table's indices
    recs = pairs[order].ravel()
    first = np.full(recs.max(initial=0) + 1, len(recs), np.int64)  # each record's first position in `recs`
    np.minimum.at(first, recs, np.arange(len(recs)))
    best = np.repeat(order, 2)[first[pairs]]  # [pair, side]: that side's best pair
    return (best == np.arange(len(weight))[:, None]).all(axis=1)


def _shrunk(m: np.ndarray, u: np.ndarray, shrink: float, veto: bool) -> np.ndarray:
    """`m` moved `shrink` of the way toward `u`, a veto's last level only `CONFLICT_SHRINK`; renormalised."""
    k = np.full(len(m), shrink)
    if veto:
        k[-1] = min(shrink, CONFLICT_SHRINK)
    out = m * (1 - k) + k * u
    return out / out.sum()


def fit_reciprocal(cand_x: np.ndarray, left: np.ndarray, right: np.ndarray, comps: Sequence[Comparison], *,
                   rounds: int = 3, shrink: float = SIMILARITY_SHRINK, first: np.ndarray | None = None,
                   vetoes: Collection[str] = ()) -> FellegiSunterModel:
    """Fellegi-Sunter weights by self-training on reciprocal best pairs, for files where plain EM finds
    the wrong two classes.

    Why: on product files the candidate pairs hold far more *siblings* (the same maker's other models,
    the same title in another colour) than duplicates, and EM's two latent classes become "same product
    family" and "unrelated" (Abt-Buy: lambda 0.035, a code conflict left as weak evidence). A listing's
    duplicate, when it has one, is almost always its best candidate, and the best candidate of that one in
    turn; a sibling rarely is both. So m is estimated from pairs that are each other's best (by the
    current weights: first by the summed level ranks, then by the model itself, `rounds` times), u from
    every other candidate pair (hard non-matches, not random ones), lambda as the share of reciprocal
    pairs with positive evidence. `left`/`right`: the records of each candidate pair. Comparisons filled
    on under `MIN_PRESENT` of the pairs are left out (`info["left_out"]`). `first`: another first ordering
    (higher is better) instead of the summed level ranks. `shrink`: of m toward u on every level but the last
    of the comparisons in `vetoes` (a declared conflict: `CONFLICT_SHRINK`)."""
    names = [c.feature for c in comps]
    if len(cand_x) < 20:
        raise ValueError(f"too few candidate pairs to fit on ({len(cand_x)})")
    # A comparison most pairs cannot make (a brand column one shop fills and the other leaves empty) would
    # make "both filled" look like a match: the reciprocal pairs drift to pairs within the shop that has it.
    present = np.isnan(cand_x).mean(axis=0) <= 1 - MIN_PRESENT
    if not present.any():
        raise ValueError("no comparison is filled on enough candidate pairs to fit on")
    comps = tuple(c for c, keep in zip(comps, present) if keep)
    cand_x = cand_x[:, present]
    g = gamma(cand_x, comps)
    # first ordering: fewer level steps from the best level is better; a null level counts as halfway
    steps = np.where(g >= 0, g, (np.array([c.n_levels for c in comps]) - 1) / 2.0).sum(axis=1)
    positive = reciprocal_best(-steps if first is None else first, left, right)
    model: FellegiSunterModel | None = None
    for _ in range(max(1, rounds)):
        if positive.sum() < 5 or (~positive).sum() < 5:
            raise ValueError("too few reciprocal best pairs to fit on")
        u = [level_probs(g[:, j], (~positive).astype(np.float64), c.n_levels) for j, c in enumerate(comps)]
        # m shrunk toward u (toward "no evidence"), a declared conflict's level less (`SIMILARITY_SHRINK`,
        # `CONFLICT_SHRINK`): a level the pairs happen to lack must not become a veto (Amazon-Google's prices)
        m = [_shrunk(level_probs(g[:, j], positive.astype(np.float64), c.n_levels), u[j], shrink, c.feature in vetoes)
             for j, c in enumerate(comps)]
        model = FellegiSunterModel(comps, m, u, float(np.clip(positive.mean(), *LAMBDA_RANGE)))
        w = model.match_weight(cand_x)
        nxt = reciprocal_best(w, left, right) & (w > 0)
        if np.array_equal(nxt, positive):
            break
        positive = nxt
    assert model is not None
    model.share = [level_probs(g[:, j], np.ones(len(g)), c.n_levels) for j, c in enumerate(comps)]
    model.u_random = [p.copy() for p in model.u]
    model.info = {"method": "reciprocal-best self-training", "iterations": rounds, "converged": True,
                  "candidate_pairs": int(len(cand_x)), "reciprocal_pairs": int(positive.sum()),
                  "left_out": [n for n in names if n not in {c.feature for c in comps}],
                  "lambda": round(model.lam, 6)}
    return model
